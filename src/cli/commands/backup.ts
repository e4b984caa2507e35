import { resolve } from 'node:path';
import { restoreHome } from '../../home/backup.ts';
import { backupHomeTo, resolveHome } from '../../home/home.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, makeOutput } from '../output.ts';

const BACKUP_USAGE = usageOf('backup');
const RESTORE_USAGE = usageOf('restore');

/**
 * `gatehouse backup DIR`: a consistent copy of the home while it stays in use (database snapshot,
 * its log anchor, the sealed keys, the rest) with a manifest of digests.
 */
export async function backupCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions }, { min: 1, max: 1, usage: BACKUP_USAGE });
  const [dir] = positionals;
  if (dir === undefined) throw new UsageError(`usage: ${BACKUP_USAGE}`);
  const out = makeOutput(values.json === true);
  const manifest = await backupHomeTo(resolveHome(values.home), resolve(dir));
  out.document(manifest);
  out.line(
    `backed up ${manifest.files.length} files to ${bold(resolve(dir))}; the log at ${manifest.log.treeSize} entries, root ${manifest.log.rootHash.slice(0, 16)}…`,
  );
  return EXIT.ok;
}

/**
 * `gatehouse restore DIR`: put a backup back into a home, every file checked against the
 * manifest; a home in use is replaced only with `--replace`.
 */
export async function restoreCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, replace: { type: 'boolean' } },
    { min: 1, max: 1, usage: RESTORE_USAGE },
  );
  const [dir] = positionals;
  if (dir === undefined) throw new UsageError(`usage: ${RESTORE_USAGE}`);
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  const manifest = await restoreHome(resolve(dir), root, { replace: values.replace === true });
  out.document(manifest);
  out.line(
    `restored ${manifest.files.length} files into ${bold(root)}; the log at ${manifest.log.treeSize} entries (backup of ${manifest.createdAt})`,
  );
  return EXIT.ok;
}
