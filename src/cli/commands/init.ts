import { initHome, resolveHome } from '../../home/home.ts';
import { commonOptions, parse } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { makeOutput } from '../output.ts';

export async function initCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      ...commonOptions,
      'update-reference-values': { type: 'boolean' },
      'no-examples': { type: 'boolean' },
      'new-log': { type: 'boolean' },
    },
    {
      min: 0,
      max: 0,
      usage: 'gatehouse init [--home DIR] [--update-reference-values] [--no-examples] [--new-log] [--json]',
    },
  );
  const out = makeOutput(values.json === true);
  const home = resolveHome(values.home);
  const created = await initHome(home, {
    updateReferenceValues: values['update-reference-values'] === true,
    // The examples are registered as unverified directory projects, for the demo and first steps.
    examples: values['no-examples'] !== true,
    // A home whose database was lost is refused; --new-log starts another log under a new key.
    newLog: values['new-log'] === true,
  });
  out.document({ home, created });
  if (created.length === 0) out.line(`gatehouse home ${home} is ready (nothing to create)`);
  else out.line(`gatehouse home ${home}: created ${created.join(', ')}`);
  return EXIT.ok;
}
