import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { ImageRef } from './runner.ts';

/** A runner's root file-system image, verified against its content digest before each use. */
export interface BaseImage {
  /**
   * Return the image's verified digest.
   * @throws GatehouseError IMAGE_UNVERIFIED when it cannot be measured or differs from a pinned digest
   */
  verify(): Promise<ImageRef>;
  /**
   * The host directory holding the image's root file system, when it is not the host's own root:
   * the sandbox binds its usr/ (and its /bin, /lib… links or directories) instead of the host's.
   */
  readonly root?: string;
}

/** The host system directories the default image is made of (what the sandbox binds read-only). */
export const HOST_SYSTEM_PATHS = ['/usr', '/etc/alternatives', '/etc/ld.so.cache'] as const;

/** Files whose change means the package manager changed the system: part of the cheap cache key. */
const PACKAGE_DB = ['/var/lib/dpkg/status'];

/** Options for {@link HostSystemImage}. */
export interface HostSystemImageOptions {
  /** Directories and files that make up the image; default {@link HOST_SYSTEM_PATHS}. */
  readonly paths?: readonly string[];
  /** Where verified digests and per-file digests are cached (0700, root's). */
  readonly cacheDir: string;
  /** A full re-verification happens at least this often, seconds (default 3600). */
  readonly reverifySeconds?: number;
  /** When set, the image must have exactly this digest. */
  readonly pinnedDigest?: string;
}

interface Summary {
  key: string;
  digest: string;
  verifiedAt: number;
}

type FileCache = Record<
  string,
  [ino: string, size: string, mtimeNs: string, ctimeNs: string, sha256: string]
>;

/** SHA-256 of a file's content, hex, streamed. */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Run `fn` over `items` with at most `n` in flight. */
export async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

/**
 * The default base image: the host's read-only system directories, measured to a content digest
 * (SHA-256 over the canonical manifest of every entry's path, type, mode, size and content digest
 * or link target).
 *
 * Measuring /usr takes tens of seconds, so it is cached twice: per file, keyed by inode, size,
 * mtime and ctime (a changed file is rehashed, an unchanged one is not), and as a whole, keyed by
 * the identity and timestamps of the image roots and the package database. A job whose cheap key
 * matches a verification younger than `reverifySeconds` uses the cached digest; anything else runs
 * a full verification first. The sandbox itself cannot change the image (it is bound read-only);
 * what the key cannot see is root editing a file in place on the host, which the next full
 * verification catches.
 */
export class HostSystemImage implements BaseImage {
  readonly #paths: readonly string[];
  readonly #cacheDir: string;
  readonly #reverifyMs: number;
  readonly #pinned: string | undefined;
  #memo: Summary | undefined;
  #inflight: Promise<Summary> | undefined;

  constructor(options: HostSystemImageOptions) {
    this.#paths = [...(options.paths ?? HOST_SYSTEM_PATHS)].sort();
    this.#cacheDir = options.cacheDir;
    this.#reverifyMs = (options.reverifySeconds ?? 3600) * 1000;
    this.#pinned = options.pinnedDigest;
  }

  async verify(): Promise<ImageRef> {
    const key = await this.#cheapKey();
    const fresh = (s: Summary | undefined): s is Summary =>
      s !== undefined && s.key === key && Date.now() - s.verifiedAt < this.#reverifyMs;
    if (!fresh(this.#memo)) {
      const stored = await this.#readSummary();
      if (fresh(stored)) this.#memo = stored;
      else {
        this.#inflight ??= this.#measure(key).finally(() => {
          this.#inflight = undefined;
        });
        this.#memo = await this.#inflight;
      }
    }
    const digest = this.#memo.digest;
    if (this.#pinned !== undefined && digest !== this.#pinned) {
      throw new GatehouseError(
        'IMAGE_UNVERIFIED',
        `the host-system image measures sha256:${digest}, not the pinned sha256:${this.#pinned}`,
      );
    }
    return { kind: 'host-system', digest };
  }

  /** Force a full verification now (e.g. at `gatehouse init`), returning the digest. */
  async remeasure(): Promise<ImageRef> {
    this.#memo = await this.#measure(await this.#cheapKey());
    return { kind: 'host-system', digest: this.#memo.digest };
  }

  async #cheapKey(): Promise<string> {
    const parts: string[] = [];
    for (const p of [...this.#paths, ...PACKAGE_DB]) {
      try {
        const s = await lstat(p, { bigint: true });
        parts.push(`${p}:${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`);
      } catch {
        parts.push(`${p}:absent`);
      }
    }
    return sha256Hex(parts.join('\n'));
  }

  async #readSummary(): Promise<Summary | undefined> {
    try {
      const v = JSON.parse(await readFile(join(this.#cacheDir, 'host-system.json'), 'utf8')) as Summary;
      return typeof v.key === 'string' && /^[0-9a-f]{64}$/.test(v.digest) && typeof v.verifiedAt === 'number'
        ? v
        : undefined;
    } catch {
      return undefined;
    }
  }

  async #measure(key: string): Promise<Summary> {
    await mkdir(this.#cacheDir, { recursive: true, mode: 0o700 });
    const filesPath = join(this.#cacheDir, 'host-system.files.json');
    let cache: FileCache = {};
    try {
      cache = JSON.parse(await readFile(filesPath, 'utf8')) as FileCache;
    } catch {
      // no cache yet: everything is hashed
    }
    const next: FileCache = {};
    const manifest: unknown[][] = [];
    const toHash: { path: string; row: unknown[]; id: FileCache[string] }[] = [];
    const walk = async (path: string): Promise<void> => {
      const s = await lstat(path, { bigint: true });
      const mode = Number(s.mode & 0o7777n);
      if (s.isSymbolicLink()) manifest.push([path, 'l', mode, await readlink(path)]);
      else if (s.isDirectory()) {
        manifest.push([path, 'd', mode]);
        const names = (await readdir(path)).sort();
        for (const name of names) await walk(join(path, name));
      } else if (s.isFile()) {
        const row: unknown[] = [path, 'f', mode, Number(s.size), ''];
        manifest.push(row);
        toHash.push({
          path,
          row,
          id: [String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs), ''],
        });
      } else manifest.push([path, 'o', mode]);
    };
    try {
      for (const p of this.#paths) {
        try {
          await stat(p);
        } catch {
          continue; // an absent optional path (e.g. no /etc/alternatives) is simply not in the image
        }
        await walk(p);
      }
      await pool(toHash, 8, async ({ path, row, id }) => {
        const old = cache[path];
        const sha =
          old !== undefined && old[0] === id[0] && old[1] === id[1] && old[2] === id[2] && old[3] === id[3]
            ? old[4]
            : await fileSha256(path);
        row[4] = sha;
        next[path] = [id[0], id[1], id[2], id[3], sha];
      });
    } catch (e) {
      throw new GatehouseError(
        'IMAGE_UNVERIFIED',
        `cannot measure the host-system image: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
    const summary: Summary = { key, digest: sha256Hex(canonicalJson(manifest)), verifiedAt: Date.now() };
    await recordImageDigest(this.#cacheDir, summary.digest, summary.verifiedAt);
    // Write-then-rename: a concurrent reader sees the old cache or the new one, never half of one.
    const tmp = `.tmp-${process.pid}-${Date.now()}`;
    await writeFile(join(this.#cacheDir, `files${tmp}`), JSON.stringify(next), { mode: 0o600 });
    await rename(join(this.#cacheDir, `files${tmp}`), filesPath);
    await writeFile(join(this.#cacheDir, `summary${tmp}`), JSON.stringify(summary), { mode: 0o600 });
    await rename(join(this.#cacheDir, `summary${tmp}`), join(this.#cacheDir, 'host-system.json'));
    await rm(join(this.#cacheDir, `files${tmp}`), { force: true });
    return summary;
  }
}

/** One digest the host-system image has measured to, from the first time it did. */
export interface ImageDigestChange {
  digest: string;
  /** When a full measurement first produced this digest (ms since the epoch). */
  firstMeasuredAt: number;
}

const HISTORY_FILE = 'host-system.history.json';
const HISTORY_LENGTH = 20;

/**
 * The digests the host-system image measured to, oldest first (the last 20 changes): what lets a
 * refusal say when the image changed. Empty when nothing was recorded.
 */
export async function hostImageHistory(cacheDir: string): Promise<ImageDigestChange[]> {
  try {
    const v = JSON.parse(await readFile(join(cacheDir, HISTORY_FILE), 'utf8')) as unknown;
    return Array.isArray(v)
      ? v.filter(
          (e): e is ImageDigestChange =>
            typeof e === 'object' &&
            e !== null &&
            /^[0-9a-f]{64}$/.test(String((e as ImageDigestChange).digest)) &&
            typeof (e as ImageDigestChange).firstMeasuredAt === 'number',
        )
      : [];
  } catch {
    return [];
  }
}

async function recordImageDigest(cacheDir: string, digest: string, at: number): Promise<void> {
  const history = await hostImageHistory(cacheDir);
  if (history.at(-1)?.digest === digest) return;
  const next = [...history, { digest, firstMeasuredAt: at }].slice(-HISTORY_LENGTH);
  const tmp = join(cacheDir, `history.tmp-${process.pid}-${Date.now()}`);
  await writeFile(tmp, JSON.stringify(next), { mode: 0o600 });
  await rename(tmp, join(cacheDir, HISTORY_FILE));
}

/** A default cache directory for verified images, shared by all homes on this machine. */
export function defaultImageCacheDir(): string {
  return process.getuid?.() === 0
    ? '/var/cache/gatehouse/images'
    : join(process.env.HOME ?? '/tmp', '.cache', 'gatehouse', 'images');
}
