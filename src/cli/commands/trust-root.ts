import { writeFile } from 'node:fs/promises';
import { resolveHome } from '../../home/home.ts';
import { commonOptions, parse } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { withHome } from '../home-access.ts';

export async function trustRootCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    { ...commonOptions, output: { type: 'string', short: 'o' } },
    { min: 0, max: 0, usage: usageOf('trust-root') },
  );
  const text = `${JSON.stringify(await withHome(resolveHome(values.home), (home) => home.trustedRoot()), null, 2)}\n`;
  if (values.output === undefined) process.stdout.write(text);
  else await writeFile(values.output, text);
  return EXIT.ok;
}
