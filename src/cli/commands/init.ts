import { initHome, resolveHome } from '../../home/home.ts';
import { commonOptions, parse } from '../args.ts';
import { fillPoolInBackground } from '../background-fill.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
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
      usage: usageOf('init'),
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
  // vTPMs are manufactured ahead of the first jobs, without anyone waiting for them.
  const filling = await fillPoolInBackground(home);
  out.document({ home, created, fillingVtpmPool: filling });
  if (created.length === 0) out.line(`gatehouse home ${home} is ready (nothing to create)`);
  else out.line(`gatehouse home ${home}: created ${created.join(', ')}`);
  if (filling) out.line('manufacturing vTPMs for the first jobs in the background');
  return EXIT.ok;
}
