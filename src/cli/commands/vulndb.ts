import { basename } from 'node:path';
import { resolveHome } from '../../home/home.ts';
import { importOsv } from '../../vuln/import.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { withHome } from '../home-access.ts';
import { readTextFile } from '../input-files.ts';
import { makeOutput } from '../output.ts';

const USAGE = usageOf('vulndb');

/**
 * `gatehouse vulndb import`: import OSV records. Malformed records are refused and named (file and
 * zip member, with the reason) while the rest is imported; any refusal makes the exit code 1.
 * After an import that changed the database, promoted artifacts are evaluated again.
 */
export async function vulndbCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions }, { min: 2, max: 10_000, usage: USAGE });
  const [sub, ...paths] = positionals;
  if (sub !== 'import' && sub !== 'vex')
    throw new UsageError(`unknown vulndb command '${sub ?? ''}'\nusage: ${USAGE}`);
  const out = makeOutput(values.json === true);
  return withHome(resolveHome(values.home), async (home) => {
    if (sub === 'vex') {
      // Each document is checked before it is kept; a bad one stops the command before it is stored.
      const kept: { file: string; statements: number }[] = [];
      for (const f of paths) {
        const text = await readTextFile(f, 'VEX document', 'NOT_FOUND');
        kept.push({ file: f, statements: await home.policies.addVex(text, basename(f)) });
      }
      out.document({ vex: kept });
      for (const k of kept) out.line(`kept VEX ${k.file}: ${k.statements} statements`);
      return EXIT.ok;
    }
    const t0 = performance.now();
    const r = await importOsv(paths, home.store);
    const seconds = (performance.now() - t0) / 1000;
    const importedAt = Date.now();
    const changed = r.added + r.updated > 0;
    const reevaluation = changed ? await home.reevaluate({ importedAt }) : undefined;
    out.document({ ...r, seconds, ...(reevaluation === undefined ? {} : { reevaluation }) });
    out.line(
      `imported ${r.read} OSV records in ${seconds.toFixed(2)} s: ${r.added} added, ${r.updated} updated, ${r.unchanged} unchanged, ${r.withdrawn} withdrawn, ${r.refused.length} refused`,
    );
    if (reevaluation !== undefined)
      out.line(
        `re-evaluated ${reevaluation.evaluated} promoted artifacts: ${reevaluation.flagged.length} newly affected${reevaluation.flagged.length > 0 ? ` (${reevaluation.flagged.map((f) => f.project).join(', ')})` : ''}`,
      );
    const [first] = r.refused;
    if (first === undefined) return EXIT.ok;
    // One line on stderr, naming the first refused record; --json lists them all.
    const more = r.refused.length > 1 ? ` (and ${r.refused.length - 1} more)` : '';
    process.stderr.write(`gatehouse vulndb: refused ${first.where}: ${first.reason}${more}\n`);
    return EXIT.error;
  });
}
