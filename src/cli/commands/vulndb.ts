import { openHome, resolveHome } from '../../server/home.ts';
import { importOsv } from '../../vuln/import.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { makeOutput } from '../output.ts';

const USAGE = 'gatehouse vulndb import PATH... [--home DIR] [--json]';

export async function vulndbCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions }, { min: 2, max: 10_000, usage: USAGE });
  const [sub, ...paths] = positionals;
  if (sub !== 'import') throw new UsageError(`unknown vulndb command '${sub ?? ''}'\nusage: ${USAGE}`);
  const out = makeOutput(values.json === true);
  const home = await openHome(resolveHome(values.home));
  try {
    const t0 = performance.now();
    const r = await importOsv(paths, home.store);
    const seconds = (performance.now() - t0) / 1000;
    out.document({ ...r, seconds });
    out.line(
      `imported ${r.read} OSV records in ${seconds.toFixed(2)} s: ${r.added} added, ${r.updated} updated, ${r.unchanged} unchanged, ${r.withdrawn} withdrawn`,
    );
    return EXIT.ok;
  } finally {
    await home.close();
  }
}
