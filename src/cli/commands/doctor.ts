import { runDoctor } from '../../home/doctor.ts';
import { resolveHome } from '../../home/home.ts';
import { commonOptions, parse } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, green, makeOutput, red, yellow } from '../output.ts';

const USAGE = usageOf('doctor');

/** `gatehouse doctor`: check the host and the home, and say what to do about each problem. */
export async function doctorCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...commonOptions }, { min: 0, max: 0, usage: USAGE });
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  const checks = await runDoctor(root);
  const failed = checks.filter((c) => c.status === 'fail').length;
  const warned = checks.filter((c) => c.status === 'warn').length;
  out.document({ home: root, ok: failed === 0, checks });
  out.line(`${bold('gatehouse doctor')} ${root}`);
  for (const c of checks) {
    const mark = c.status === 'ok' ? green('✓') : c.status === 'warn' ? yellow('!') : red('✗');
    out.line(`  ${mark} ${c.name.padEnd(17)} ${c.detail}`);
    for (const f of c.fix ?? []) out.line(`      ${f}`);
  }
  out.line(
    failed === 0
      ? green(`no problems${warned === 0 ? '' : ` (${warned} warning${warned === 1 ? '' : 's'})`}`)
      : red(
          `${failed} problem${failed === 1 ? '' : 's'}${warned === 0 ? '' : `, ${warned} warning${warned === 1 ? '' : 's'}`}`,
        ),
  );
  return failed === 0 ? EXIT.ok : EXIT.error;
}
