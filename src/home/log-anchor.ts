/**
 * The log's anchor: its identity and its last signed checkpoint, kept in a file beside the
 * database. The database alone cannot tell a lost or rolled-back log from a new one; the anchor
 * can. A home whose database is missing, empty, shorter than the anchor, or whose tree at the
 * anchored size has another root (a fork, a rewrite, a zeroed page) refuses to open, naming the file
 * and the recovery, rather than start a fresh log under the same key.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import { GatehouseError } from '../common/errors.ts';
import type { TransparencyLog } from '../tlog/transparency-log.ts';

/** What the anchor file holds. */
export interface LogAnchorRecord {
  version: 1;
  origin: string;
  /** Hex SHA-256 of the log key's SPKI. */
  logId: string;
  treeSize: number;
  /** Hex root hash of the tree of `treeSize` entries. */
  rootHash: string;
  /** The signed checkpoint of that tree (a C2SP signed note). */
  checkpoint: string;
  updatedAt: string;
}

/** How to recover a home whose database does not match its anchor. */
const RECOVERY =
  'restore the home from a backup (`gatehouse restore DIR`), or start a new log with `gatehouse init --new-log`, which rotates the log key';

function damaged(message: string, where: string): GatehouseError {
  return new GatehouseError('STORE_DAMAGED', `${message}: ${RECOVERY}`, { where });
}

/** Read an anchor file; undefined when there is none. @throws GatehouseError STORE_DAMAGED */
export async function readLogAnchor(path: string): Promise<LogAnchorRecord | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    const a = JSON.parse(await readFile(path, 'utf8')) as LogAnchorRecord;
    if (a.version !== 1 || !Number.isSafeInteger(a.treeSize) || typeof a.rootHash !== 'string')
      throw new Error('malformed');
    return a;
  } catch (cause) {
    throw new GatehouseError(
      'STORE_DAMAGED',
      `the log anchor is unreadable (${String(cause)}): ${RECOVERY}`,
      {
        where: path,
      },
    );
  }
}

/**
 * Refuse a database file that is missing or empty while the anchor records entries: opening it
 * would create a fresh, empty log under the same key.
 * @throws GatehouseError STORE_DAMAGED
 */
export async function checkDatabaseFile(database: string, anchorPath: string): Promise<void> {
  const anchor = await readLogAnchor(anchorPath);
  if (anchor === undefined || anchor.treeSize === 0) return;
  const size = existsSync(database) ? statSync(database).size : -1;
  if (size <= 0)
    throw damaged(
      `the database is ${size < 0 ? 'missing' : 'empty'} but the log anchor ${anchorPath} records ${anchor.treeSize} entries`,
      database,
    );
}

/** Keeps a home's log anchor: checks the log against it, and moves it forward as the log grows. */
export class LogAnchor {
  readonly #path: string;
  #log: TransparencyLog | undefined;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(path: string) {
    this.#path = path;
  }

  /**
   * Check the log against the anchor: the same log (key), at least as many entries, and the same
   * root at the anchored size. A home without an anchor gets one.
   * @throws GatehouseError STORE_DAMAGED
   */
  async verify(log: TransparencyLog): Promise<void> {
    this.#log = log;
    const anchor = await readLogAnchor(this.#path);
    if (anchor === undefined) return this.flush();
    const size = await log.size();
    if (anchor.logId !== log.logId)
      throw damaged(
        `the log key is not the one the log anchor names (${anchor.logId.slice(0, 16)}…)`,
        this.#path,
      );
    if (size < anchor.treeSize)
      throw damaged(
        `the log has ${size} entries but its anchor records ${anchor.treeSize}: entries were lost`,
        this.#path,
      );
    let root: string;
    try {
      root = Buffer.from((await log.rootHash(anchor.treeSize)).rootHash).toString('hex');
    } catch (cause) {
      throw new GatehouseError(
        'STORE_DAMAGED',
        `the log's tree cannot be read (${String(cause)}): ${RECOVERY}`,
        {
          where: this.#path,
          cause,
        },
      );
    }
    if (root !== anchor.rootHash)
      throw damaged(
        `the log's tree of ${anchor.treeSize} entries has root ${root.slice(0, 16)}…, its anchor ${anchor.rootHash.slice(0, 16)}…: the log was rewritten`,
        this.#path,
      );
  }

  /** Move the anchor forward soon (appends come in bursts; the anchor may lag the database). */
  schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush().catch((e: unknown) =>
        process.stderr.write(`gatehouse: cannot update the log anchor: ${String(e)}\n`),
      );
    }, 200);
    this.#timer.unref();
  }

  /** Write the anchor for the log as it is now (atomically, synced). */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const log = this.#log;
    if (log === undefined) return Promise.resolve();
    this.#writing = this.#writing.then(() => this.#write(log));
    return this.#writing;
  }

  async #write(log: TransparencyLog): Promise<void> {
    const { treeSize, rootHash } = await log.rootHash();
    // Instances sharing one database (and perhaps one home) each move the anchor: it only moves
    // forward, never back to a smaller tree another writer has passed.
    const held = await readLogAnchor(this.#path).catch(() => undefined);
    if (held !== undefined && held.logId === log.logId && held.treeSize > treeSize) return;
    const record: LogAnchorRecord = {
      version: 1,
      origin: log.origin,
      logId: log.logId,
      treeSize,
      rootHash: Buffer.from(rootHash).toString('hex'),
      checkpoint: await log.checkpoint(treeSize),
      updatedAt: new Date().toISOString(),
    };
    const tmp = `${this.#path}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.#path);
  }
}
