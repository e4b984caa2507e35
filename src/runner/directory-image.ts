import { execFile } from 'node:child_process';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { type BaseImage, fileSha256, pool } from './image.ts';
import type { ImageRef } from './runner.ts';

const execFileAsync = promisify(execFile);

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * One manifest row, by relative path: a directory `[path, 'd', mode]`, a regular file
 * `[path, 'f', mode, size, sha256]`, a symlink `[path, 'l', mode, target]`, anything else
 * `[path, 'o', mode]` (never produced by an import, so it always shows up as a difference).
 */
export type ManifestRow =
  | [path: string, type: 'd', mode: number]
  | [path: string, type: 'f', mode: number, size: number, sha256: string]
  | [path: string, type: 'l', mode: number, target: string]
  | [path: string, type: 'o', mode: number];

type FileCache = Record<
  string,
  [ino: string, size: string, mtimeNs: string, ctimeNs: string, sha256: string]
>;

/** What {@link measureTree} finds: the manifest, its digest, and totals. */
export interface TreeMeasurement {
  readonly digest: string;
  readonly manifest: ManifestRow[];
  readonly files: number;
  readonly bytes: number;
}

/** The directory of an image with this digest under `imagesDir`. */
export function imageDir(imagesDir: string, digest: string): string {
  return join(imagesDir, `sha256-${digest}`);
}

/**
 * Measure a directory tree: the canonical manifest of every entry below `root` (sorted walk,
 * relative paths) and its SHA-256. With `cacheFile`, a file whose inode, size, mtime and ctime
 * match the cache is not hashed again; the cache is rewritten only when it changed.
 */
export async function measureTree(root: string, cacheFile?: string): Promise<TreeMeasurement> {
  let cache: FileCache = {};
  if (cacheFile !== undefined) {
    try {
      cache = JSON.parse(await readFile(cacheFile, 'utf8')) as FileCache;
    } catch {
      // no cache yet: everything is hashed
    }
  }
  const next: FileCache = {};
  const manifest: ManifestRow[] = [];
  const toHash: { rel: string; row: ManifestRow & { 4: string }; id: FileCache[string] }[] = [];
  let bytes = 0;
  // The walk is synchronous: thousands of lstat calls through the thread pool cost several times
  // more than the calls themselves, and a verified image is walked at every provision.
  const walk = (rel: string): void => {
    const names = readdirSync(join(root, rel)).sort();
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const s = lstatSync(join(root, path), { bigint: true });
      const mode = Number(s.mode & 0o7777n);
      if (s.isSymbolicLink()) manifest.push([path, 'l', mode, readlinkSync(join(root, path))]);
      else if (s.isDirectory()) {
        manifest.push([path, 'd', mode]);
        walk(path);
      } else if (s.isFile()) {
        const row: ManifestRow & { 4: string } = [path, 'f', mode, Number(s.size), ''];
        manifest.push(row);
        bytes += Number(s.size);
        toHash.push({
          rel: path,
          row,
          id: [String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs), ''],
        });
      } else manifest.push([path, 'o', mode]);
    }
  };
  walk('');
  let changed = Object.keys(cache).length !== toHash.length;
  await pool(toHash, 8, async ({ rel, row, id }) => {
    const old = cache[rel];
    let sha: string;
    if (old !== undefined && old[0] === id[0] && old[1] === id[1] && old[2] === id[2] && old[3] === id[3])
      sha = old[4];
    else {
      sha = await fileSha256(join(root, rel));
      changed = true;
    }
    row[4] = sha;
    next[rel] = [id[0], id[1], id[2], id[3], sha];
  });
  if (cacheFile !== undefined && changed) {
    const tmp = `${cacheFile}.tmp-${process.pid}-${Date.now()}`;
    await writeFile(tmp, JSON.stringify(next), { mode: 0o600 });
    await rename(tmp, cacheFile);
  }
  return { digest: sha256Hex(canonicalJson(manifest)), manifest, files: toHash.length, bytes };
}

/** The first difference between a stored manifest and what is on disk, for the refusal message. */
function firstDifference(expected: readonly ManifestRow[], actual: readonly ManifestRow[]): string {
  const want = new Map(expected.map((r) => [r[0], canonicalJson(r)]));
  const have = new Map(actual.map((r) => [r[0], canonicalJson(r)]));
  for (const [path, row] of have) {
    const w = want.get(path);
    if (w === undefined) return `${path} was added`;
    if (w !== row) return `${path} was changed`;
  }
  for (const path of want.keys()) if (!have.has(path)) return `${path} was removed`;
  return 'the manifest differs';
}

/**
 * A content-addressed image directory, `<imagesDir>/sha256-<digest>/` with the root file system
 * in `rootfs/`, its canonical manifest in `manifest.json` (whose SHA-256 is the digest) and a
 * per-file cache. Each verify() walks the tree, rehashes only files whose inode, size, mtime or
 * ctime changed, and refuses with IMAGE_UNVERIFIED on any difference: a changed, added or
 * removed entry, or a mode change.
 */
export class DirectoryImage implements BaseImage {
  readonly root: string;
  readonly #dir: string;
  readonly #digest: string;
  #inflight: Promise<ImageRef> | undefined;

  /** @throws GatehouseError BAD_INPUT when the digest is not `sha256:<64 hex>` or 64 hex */
  constructor(options: { readonly imagesDir: string; readonly digest: string }) {
    const hex = options.digest.startsWith('sha256:') ? options.digest.slice(7) : options.digest;
    if (!HEX64.test(hex)) {
      throw new GatehouseError(
        'BAD_INPUT',
        `image digest '${options.digest.slice(0, 80)}' is not sha256:<64 hex>`,
      );
    }
    this.#digest = hex;
    this.#dir = imageDir(options.imagesDir, hex);
    this.root = join(this.#dir, 'rootfs');
  }

  async verify(): Promise<ImageRef> {
    // Concurrent provisions share one walk.
    this.#inflight ??= this.#verify().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #verify(): Promise<ImageRef> {
    let m: TreeMeasurement;
    try {
      m = await measureTree(this.root, join(this.#dir, 'files.json'));
    } catch (e) {
      throw new GatehouseError(
        'IMAGE_UNVERIFIED',
        `cannot measure image sha256:${this.#digest} at ${this.root}: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
    if (m.digest !== this.#digest) {
      let why = 'its manifest is not stored';
      try {
        const text = await readFile(join(this.#dir, 'manifest.json'), 'utf8');
        // Only a manifest that itself matches the digest may explain the difference.
        if (sha256Hex(text) === this.#digest)
          why = firstDifference(JSON.parse(text) as ManifestRow[], m.manifest);
      } catch {
        // no usable manifest: the generic reason stands
      }
      throw new GatehouseError(
        'IMAGE_UNVERIFIED',
        `image sha256:${this.#digest} no longer matches its digest (${why}; it measures sha256:${m.digest})`,
      );
    }
    return { kind: 'directory', digest: this.#digest };
  }
}

/** What an import stored. */
export interface ImportedImage {
  readonly digest: string;
  readonly path: string;
  readonly files: number;
  readonly bytes: number;
  /** Device nodes, sockets and FIFOs, which are not part of an image (the sandbox makes its own /dev). */
  readonly skipped: number;
}

/** Copy a tree without following symlinks; special files are counted and left out. */
async function copyTree(from: string, to: string): Promise<number> {
  let skipped = 0;
  const dirModes: [string, number][] = [];
  const walk = async (src: string, dest: string): Promise<void> => {
    for (const name of (await readdir(src)).sort()) {
      const s = join(src, name);
      const d = join(dest, name);
      const st = await lstat(s);
      if (st.isSymbolicLink()) await symlink(await readlink(s), d);
      else if (st.isDirectory()) {
        await mkdir(d, { mode: 0o700 });
        dirModes.push([d, st.mode & 0o7777]);
        await walk(s, d);
      } else if (st.isFile()) {
        await copyFile(s, d);
        await chmod(d, st.mode & 0o7777);
      } else skipped++;
    }
  };
  await walk(from, to);
  // Modes last, deepest first, so that a read-only directory could still be filled.
  for (const [d, mode] of dirModes.reverse()) await chmod(d, mode);
  return skipped;
}

/**
 * Import a root file system directory: copy it under `imagesDir`, measure it, and store it by its
 * digest. Importing the same content again keeps the stored image (after verifying it; a stored
 * image that no longer verifies is replaced).
 * @throws GatehouseError BAD_INPUT when `source` is not a readable directory
 */
export async function importImage(
  source: string,
  imagesDir: string,
  meta: Record<string, string> = {},
): Promise<ImportedImage> {
  const st = await lstat(source).catch((e: unknown) => {
    throw new GatehouseError('BAD_INPUT', 'cannot read the image source directory', {
      where: source,
      cause: e,
    });
  });
  if (!st.isDirectory())
    throw new GatehouseError('BAD_INPUT', 'the image source is not a directory', { where: source });
  await mkdir(imagesDir, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(join(imagesDir, '.import-'));
  try {
    const rootfs = join(tmp, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    let skipped: number;
    try {
      skipped = await copyTree(source, rootfs);
    } catch (e) {
      throw new GatehouseError(
        'BAD_INPUT',
        `cannot copy the image source: ${e instanceof Error ? e.message : String(e)}`,
        { where: source, cause: e },
      );
    }
    const m = await measureTree(rootfs, join(tmp, 'files.json'));
    await writeFile(join(tmp, 'manifest.json'), canonicalJson(m.manifest), { mode: 0o600 });
    await writeFile(
      join(tmp, 'image.json'),
      `${JSON.stringify({ digest: `sha256:${m.digest}`, files: m.files, bytes: m.bytes, importedAt: new Date().toISOString(), ...meta }, null, 2)}\n`,
      { mode: 0o600 },
    );
    const dest = imageDir(imagesDir, m.digest);
    const existing = await lstat(dest).then(
      () => true,
      () => false,
    );
    if (existing) {
      const intact = await new DirectoryImage({ imagesDir, digest: m.digest }).verify().then(
        () => true,
        () => false,
      );
      if (intact) return { digest: m.digest, path: dest, files: m.files, bytes: m.bytes, skipped };
      await rm(dest, { recursive: true, force: true });
    }
    await rename(tmp, dest);
    return { digest: m.digest, path: dest, files: m.files, bytes: m.bytes, skipped };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** One stored image, as `gatehouse image list` shows it (read from its image.json, not verified). */
export interface StoredImage {
  readonly digest: string;
  readonly files: number;
  readonly bytes: number;
  readonly importedAt: string;
  readonly source?: string;
}

/** The images stored under `imagesDir`, sorted by import time. */
export async function listImages(imagesDir: string): Promise<StoredImage[]> {
  let names: string[];
  try {
    names = await readdir(imagesDir);
  } catch {
    return [];
  }
  const out: StoredImage[] = [];
  for (const name of names) {
    const hex = /^sha256-([0-9a-f]{64})$/.exec(name)?.[1];
    if (hex === undefined) continue;
    try {
      const meta = JSON.parse(
        await readFile(join(imagesDir, name, 'image.json'), 'utf8'),
      ) as Partial<StoredImage>;
      out.push({
        digest: `sha256:${hex}`,
        files: Number(meta.files ?? 0),
        bytes: Number(meta.bytes ?? 0),
        importedAt: String(meta.importedAt ?? ''),
        ...(typeof meta.source === 'string' ? { source: meta.source } : {}),
      });
    } catch {
      out.push({ digest: `sha256:${hex}`, files: 0, bytes: 0, importedAt: '' });
    }
  }
  return out.sort((a, b) => (a.importedAt < b.importedAt ? -1 : a.importedAt > b.importedAt ? 1 : 0));
}

/** The first Debian archive (not security) and its first suite in apt's sources, deb822 or one-line. */
export function mirrorFromAptSources(
  texts: readonly string[],
): { mirror: string; suite: string } | undefined {
  const candidates: { uri: string; suite: string }[] = [];
  for (const text of texts) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) =>
        new RegExp(`^${name}:[ \\t]*(.+)$`, 'im')
          .exec(stanza.replace(/^#.*$/gm, ''))?.[1]
          ?.trim()
          .split(/\s+/) ?? [];
      if (field('Types').includes('deb') && !/^Enabled:\s*no\s*$/im.test(stanza)) {
        for (const uri of field('URIs')) candidates.push({ uri, suite: field('Suites')[0] ?? '' });
      }
    }
    for (const line of text.split('\n')) {
      // deb [options] URI SUITE COMPONENTS…
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m !== null) candidates.push({ uri: m[1] as string, suite: m[2] as string });
    }
  }
  const pick = candidates.find(
    (c) => /^https?:\/\//.test(c.uri) && !/security/.test(c.uri) && /^[a-z][a-z0-9-]*$/.test(c.suite),
  );
  return pick === undefined ? undefined : { mirror: pick.uri, suite: pick.suite.replace(/-.*$/, '') };
}

/** {@link mirrorFromAptSources} over this machine's /etc/apt/sources.list and sources.list.d. */
export async function aptDefaultMirror(): Promise<{ mirror: string; suite: string } | undefined> {
  const texts: string[] = [];
  const read = async (p: string) => {
    try {
      texts.push(await readFile(p, 'utf8'));
    } catch {
      // absent
    }
  };
  await read('/etc/apt/sources.list');
  try {
    for (const name of (await readdir('/etc/apt/sources.list.d')).sort()) {
      if (name.endsWith('.sources') || name.endsWith('.list'))
        await read(join('/etc/apt/sources.list.d', name));
    }
  } catch {
    // no sources.list.d
  }
  return mirrorFromAptSources(texts);
}

/** Options for {@link buildImage}. */
export interface BuildImageOptions {
  readonly imagesDir: string;
  readonly suite: string;
  readonly mirror: string;
  readonly include?: readonly string[];
  /** Progress lines (the debootstrap steps are not echoed). */
  readonly log?: (line: string) => void;
}

/**
 * Build a minimal Debian root file system with `debootstrap --variant=minbase` into a temporary
 * directory next to the images, then import it. Installs debootstrap with apt-get when missing.
 * @throws GatehouseError BAD_INPUT for a bad suite, mirror or package name; INTERNAL when
 *   debootstrap fails
 */
export async function buildImage(options: BuildImageOptions): Promise<ImportedImage> {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(options.suite))
    throw new GatehouseError('BAD_INPUT', `suite '${options.suite.slice(0, 40)}' is not a Debian suite name`);
  if (!/^https?:\/\/[^\s'"]+$/.test(options.mirror))
    throw new GatehouseError('BAD_INPUT', `mirror '${options.mirror.slice(0, 80)}' is not an http(s) URL`);
  for (const p of options.include ?? []) {
    if (!/^[a-z0-9][a-z0-9+.-]{0,63}$/.test(p))
      throw new GatehouseError('BAD_INPUT', `package name '${p.slice(0, 40)}' is not a Debian package name`);
  }
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', DEBIAN_FRONTEND: 'noninteractive' };
  const have = await execFileAsync('debootstrap', ['--version'], { env }).then(
    () => true,
    () => false,
  );
  if (!have) {
    options.log?.('installing debootstrap with apt-get');
    await execFileAsync('apt-get', ['install', '-y', '--no-install-recommends', 'debootstrap'], {
      env,
      maxBuffer: 64 * 1024 ** 2,
    }).catch((e: unknown) => {
      throw new GatehouseError('INTERNAL', 'debootstrap is not installed and apt-get could not install it', {
        cause: e,
      });
    });
  }
  await mkdir(options.imagesDir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(options.imagesDir, '.build-'));
  try {
    const target = join(work, 'rootfs');
    const args = ['--variant=minbase'];
    if ((options.include ?? []).length > 0) args.push(`--include=${(options.include ?? []).join(',')}`);
    args.push(options.suite, target, options.mirror);
    options.log?.(`debootstrap ${args.join(' ')}`);
    await execFileAsync('debootstrap', args, { env, maxBuffer: 256 * 1024 ** 2 }).catch((e: unknown) => {
      const tail = String((e as { stderr?: string }).stderr ?? '').slice(-400);
      throw new GatehouseError('INTERNAL', `debootstrap failed: ${tail || String(e)}`, { cause: e });
    });
    // The build's apt lists and package cache are not part of the image.
    await rm(join(target, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true });
    await mkdir(join(target, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true });
    return await importImage(target, options.imagesDir, {
      source: `debootstrap --variant=minbase ${options.suite} ${options.mirror}${(options.include ?? []).length > 0 ? ` +${(options.include ?? []).join(',')}` : ''}`,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
