/**
 * Backup and restore of a home: the database copied consistently while the home stays in use, the
 * log anchor of exactly that copy, the sealed keys and the rest of the home, and a manifest of
 * every file's digest. A restored home opens, and its log audits against checkpoints taken before
 * the backup.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { TransparencyLog } from '../tlog/transparency-log.ts';
import { type Config, loadConfig } from './config.ts';
import { LogAnchor } from './log-anchor.ts';

/** The manifest a backup carries. */
export interface BackupManifest {
  version: 1;
  createdAt: string;
  /** The log as the backup holds it. */
  log: { treeSize: number; rootHash: string; logId: string };
  /** Every file of the backup but the manifest, by its path relative to the backup. */
  files: { path: string; sha256: string; size: number }[];
}

/** What a backup leaves out: rebuilt or transient, never state (the database is copied apart). */
const SKIP = new Set(['staging', 'vtpm-pool']);
const MANIFEST = 'manifest.json';

async function digestFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(root, p)));
    else if (e.isFile()) out.push(relative(root, p));
  }
  return out.sort();
}

/**
 * Back up the home at `root` into `dir` (which must not exist or be empty). The database is copied
 * as one consistent snapshot while the home stays in use; the log anchor written is that of the
 * snapshot, so the copy opens as it is.
 * @throws GatehouseError BAD_INPUT (the target is not empty), STORE_ERROR
 */
export async function backupHome(
  root: string,
  dir: string,
  openLogOf: (store: SqliteStore) => Promise<TransparencyLog>,
): Promise<BackupManifest> {
  const target = resolve(dir);
  if (existsSync(target) && (await readdir(target)).length > 0)
    throw new GatehouseError('BAD_INPUT', 'the backup directory is not empty', { where: target });
  const config = loadConfig(join(root, 'config.json'));
  const database = databaseOf(root, config);
  await mkdir(target, { recursive: true, mode: 0o700 });
  await copyHomeFiles(root, target, database);
  const live = SqliteStore.open(database);
  const copy = join(target, relative(root, database));
  try {
    await mkdir(dirname(copy), { recursive: true });
    await live.backupTo(copy);
  } finally {
    await live.close();
  }
  const log = await anchorCopy(copy, join(target, 'log-anchor.json'), openLogOf);
  const files = await Promise.all(
    (await listFiles(target)).map(async (path) => ({
      path,
      sha256: await digestFile(join(target, path)),
      size: (await stat(join(target, path))).size,
    })),
  );
  const manifest: BackupManifest = { version: 1, createdAt: new Date().toISOString(), log, files };
  await writeFile(join(target, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  return manifest;
}

/** Copy the home's files into the backup, leaving out the live database and transient folders. */
async function copyHomeFiles(root: string, target: string, database: string): Promise<void> {
  for (const e of await readdir(root, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const from = join(root, e.name);
    if (from === database || from.startsWith(`${database}-`) || e.name === 'log-anchor.json') continue;
    await cp(from, join(target, e.name), {
      recursive: true,
      preserveTimestamps: true,
      verbatimSymlinks: true,
    });
  }
}

/** Write the anchor of the database copy (its own size and root), signed by the log key. */
async function anchorCopy(
  copy: string,
  anchorPath: string,
  openLogOf: (store: SqliteStore) => Promise<TransparencyLog>,
): Promise<BackupManifest['log']> {
  const store = SqliteStore.open(copy);
  try {
    const log = await openLogOf(store);
    const anchor = new LogAnchor(anchorPath);
    await anchor.verify(log);
    await anchor.flush();
    const { treeSize, rootHash } = await log.rootHash();
    return { treeSize, rootHash: Buffer.from(rootHash).toString('hex'), logId: log.logId };
  } finally {
    await store.close();
  }
}

function databaseOf(root: string, config: Config): string {
  if (config.store.kind !== 'sqlite')
    throw new GatehouseError('BAD_CONFIG', 'only an embedded (SQLite) store is backed up by gatehouse', {
      where: 'config.json store.kind',
    });
  return resolve(root, config.store.path);
}

/**
 * Restore a backup into the home at `root`, after checking every file against the manifest. A home
 * that holds a database is only replaced when `replace` is given (its files are removed first).
 * @throws GatehouseError BAD_INPUT (no manifest, a file changed or missing), CONFLICT (the home is
 *   in use and `replace` was not given)
 */
export async function restoreHome(
  dir: string,
  root: string,
  options: { replace?: boolean } = {},
): Promise<BackupManifest> {
  const source = resolve(dir);
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(await readFile(join(source, MANIFEST), 'utf8')) as BackupManifest;
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', 'not a gatehouse backup: no readable manifest.json', {
      where: source,
      cause,
    });
  }
  for (const f of manifest.files) {
    const path = join(source, f.path);
    if (f.path.split(sep).includes('..') || !existsSync(path) || (await digestFile(path)) !== f.sha256)
      throw new GatehouseError('BAD_INPUT', `the backup's file ${f.path} is missing or changed`, {
        where: source,
      });
  }
  if (existsSync(join(root, 'config.json'))) {
    if (options.replace !== true)
      throw new GatehouseError(
        'CONFLICT',
        'the home exists: restore into it with --replace (its files are replaced)',
        {
          where: root,
        },
      );
    for (const e of await readdir(root)) await rm(join(root, e), { recursive: true, force: true });
  }
  await mkdir(root, { recursive: true, mode: 0o700 });
  for (const f of manifest.files) {
    await mkdir(dirname(join(root, f.path)), { recursive: true, mode: 0o700 });
    await cp(join(source, f.path), join(root, f.path), { preserveTimestamps: true });
  }
  return manifest;
}
