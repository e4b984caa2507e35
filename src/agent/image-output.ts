/**
 * The image output of a build, assembled by the agent outside the sandbox once the build has
 * ended: the declared base verified against its pinned digest, the declared build files taken
 * from the workspace as one layer (never following a link out of what was declared), and the
 * image config from gatehouse.yaml. Nothing inside the sandbox builds or describes the image.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import {
  type AssembledImage,
  assembleImage,
  BASE_LAYER_TYPES,
  type BaseImageContent,
  type BaseRunConfig,
  imageArchiveName,
  imageConfigSchema,
  imageManifestSchema,
  type LayerFile,
  OCI_LAYER_GZIP,
  parseImageJson,
  writeImageArchive,
} from '../registry/image-assembly.ts';
import { gzipLayer, type TarEntry, writeLayerTar } from '../registry/layer-tar.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../registry/oci-format.ts';
import { DirectoryImage, imageDir } from '../runner/directory-image.ts';
import type { ImageBaseConfig, ImageOutputConfig } from '../runner/project-config.ts';
import type { CollectedOutput } from './outputs.ts';

/** At most this many entries in the build's layer. */
const MAX_ENTRIES = 100_000;
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** An image output as collected: the archive to upload, and what it holds. */
export interface CollectedImage {
  readonly output: CollectedOutput;
  readonly image: AssembledImage;
  readonly base: { readonly source: string; readonly manifestDigest?: string };
}

function rejected(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('OUTPUT_REJECTED', message, cause === undefined ? {} : { cause });
}

function unverified(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('IMAGE_UNVERIFIED', message, cause === undefined ? {} : { cause });
}

/**
 * Assemble a project's declared image from the workspace into `workDir` (a directory of the
 * agent's, outside the workspace), as `<name>.oci.tar`.
 * @throws GatehouseError IMAGE_UNVERIFIED when the base does not match its pin; OUTPUT_REJECTED
 *   for a declared file that is missing, special, or links out of what was declared; BAD_INPUT
 *   when the declared platform is not the base's
 */
export async function collectImage(input: {
  workspace: string;
  image: ImageOutputConfig;
  /** The runner host's image store (`gatehouse image import`). */
  imagesDir?: string;
  workDir: string;
}): Promise<CollectedImage> {
  const root = await realpath(input.workspace);
  const base = await loadBase(input.image.base, {
    root,
    workDir: input.workDir,
    imagesDir: input.imagesDir,
    platform: input.image.platform,
  });
  const entries = await buildEntries(root, input.image);
  const layer = await writeLayer(entries, join(input.workDir, 'build-layer')).catch((e: unknown) => {
    throw e instanceof GatehouseError && e.code === 'BAD_INPUT'
      ? rejected(`image layer: ${e.message}`, e)
      : e;
  });
  const i = input.image;
  const image = assembleImage({
    base,
    layers: [layer],
    settings: {
      platform: i.platform,
      ...(i.entrypoint === undefined ? {} : { entrypoint: i.entrypoint }),
      ...(i.cmd === undefined ? {} : { cmd: i.cmd }),
      ...(i.env === undefined ? {} : { env: i.env }),
      ...(i.user === undefined ? {} : { user: i.user }),
      ...(i.workdir === undefined ? {} : { workdir: i.workdir }),
      ...(i.labels === undefined ? {} : { labels: i.labels }),
    },
  });
  const name = imageArchiveName(i.name);
  const file = join(input.workDir, name);
  const archive = await writeImageArchive(image, i.name, file);
  return {
    output: { path: name, sha256: archive.sha256, size: archive.size, file },
    image,
    base: {
      source: base.source,
      ...(base.manifestDigest === undefined ? {} : { manifestDigest: base.manifestDigest }),
    },
  };
}

/** A layer of `entries`: the tar (its digest is the diff ID), then gzip-compressed deterministically. */
async function writeLayer(entries: readonly TarEntry[], base: string): Promise<LayerFile> {
  const tar = await writeLayerTar(entries, `${base}.tar`);
  const gz = await gzipLayer(`${base}.tar`, `${base}.tar.gz`);
  await rm(`${base}.tar`, { force: true });
  return {
    mediaType: OCI_LAYER_GZIP,
    digest: `sha256:${gz.sha256}`,
    size: gz.size,
    diffId: `sha256:${tar.sha256}`,
    path: `${base}.tar.gz`,
  };
}

/** The files of one `image.files` entry, and the parent directories of every `to`. */
async function buildEntries(root: string, image: ImageOutputConfig): Promise<TarEntry[]> {
  const { uid, gid } = image.owner;
  const entries = new Map<string, TarEntry>();
  const add = (e: TarEntry, from: string): void => {
    const old = entries.get(e.path);
    if (old !== undefined) {
      if (old.type === 'dir' && e.type === 'dir') return;
      throw rejected(`image path /${e.path} is given twice (again by image.files '${from}')`);
    }
    if (entries.size >= MAX_ENTRIES)
      throw rejected(`the image layer would hold more than ${MAX_ENTRIES} entries`);
    entries.set(e.path, e);
  };
  const dir = (path: string): TarEntry => ({ path, type: 'dir', mode: 0o755, uid, gid });
  for (const f of image.files) {
    const full = join(root, f.from);
    const st = await lstat(full).catch((e: unknown) => {
      throw rejected(`image.files '${f.from}' was not produced by the build`, e);
    });
    if (st.isSymbolicLink())
      throw rejected(`image.files '${f.from}' is a symlink; list what it points to instead`);
    // A symlinked parent directory would make the real file live elsewhere, perhaps outside the workspace.
    const real = await realpath(full).catch((e: unknown) => {
      throw rejected(`image.files '${f.from}' cannot be resolved`, e);
    });
    if (real !== full || !real.startsWith(root + sep))
      throw rejected(
        `image.files '${f.from}' resolves outside the workspace (through a symlinked directory)`,
      );
    const to = f.to.replace(/^\/+/, '');
    // Parents of the destination, e.g. app/ for /app/server.js.
    const parts = to === '' ? [] : to.split('/');
    for (let n = 1; n < parts.length; n++) add(dir(parts.slice(0, n).join('/')), f.from);
    if (st.isFile()) {
      if (to === '') throw rejected(`image.files '${f.from}' is a file and cannot be placed at /`);
      add(fileEntry(to, full, st, uid, gid, f.from), f.from);
    } else if (st.isDirectory()) {
      if (to !== '') add(dir(to), f.from);
      await walk(full, '', to, f.from, uid, gid, add);
    } else throw rejected(`image.files '${f.from}' is not a regular file or directory`);
  }
  return [...entries.values()];
}

function fileEntry(
  to: string,
  full: string,
  st: { mode: number; size: number; ino: number },
  uid: number,
  gid: number,
  from: string,
): TarEntry {
  // Modes are normalised (executable or not): the build's umask never changes a digest, and a
  // build cannot hand the image a setuid file.
  if ((st.mode & 0o6000) !== 0) throw rejected(`image file '${from}' is setuid or setgid`);
  return {
    path: to,
    type: 'file',
    mode: (st.mode & 0o111) !== 0 ? 0o755 : 0o644,
    uid,
    gid,
    content: { file: full, size: st.size, ino: st.ino },
  };
}

/**
 * Walk a declared directory. A symlink is kept only when it is relative and stays inside the
 * declared directory, so that it means in the image what it meant in the build output; anything
 * else would point the image (or the layer writer) at something that was never declared.
 */
async function walk(
  base: string,
  rel: string,
  to: string,
  from: string,
  uid: number,
  gid: number,
  add: (e: TarEntry, from: string) => void,
): Promise<void> {
  const here = rel === '' ? base : join(base, rel);
  for (const name of (await readdir(here)).sort()) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const full = join(base, r);
    const dest = to === '' ? r : `${to}/${r}`;
    const shown = `${from}/${r}`;
    const st = await lstat(full);
    if (st.isSymbolicLink()) {
      const target = await readlink(full);
      if (target.startsWith('/'))
        throw rejected(
          `symlink '${shown}' -> '${target.slice(0, 200)}' escapes the build output: only relative links inside '${from}' are kept`,
        );
      const resolved = posix.normalize(posix.join(posix.dirname(r), target));
      if (resolved === '..' || resolved.startsWith('../'))
        throw rejected(
          `symlink '${shown}' -> '${target.slice(0, 200)}' escapes the build output: it leaves '${from}'`,
        );
      add({ path: dest, type: 'symlink', mode: 0o777, uid, gid, target }, from);
    } else if (st.isDirectory()) {
      add({ path: dest, type: 'dir', mode: 0o755, uid, gid }, from);
      await walk(base, r, to, from, uid, gid, add);
    } else if (st.isFile()) add(fileEntry(dest, full, st, uid, gid, shown), from);
    else throw rejected(`image file '${shown}' is a device node, socket or FIFO`);
  }
}

async function loadBase(
  base: ImageBaseConfig,
  o: {
    root: string;
    workDir: string;
    imagesDir: string | undefined;
    platform: ImageOutputConfig['platform'];
  },
): Promise<BaseImageContent> {
  switch (base.kind) {
    case 'scratch':
      return { source: 'scratch', layers: [] };
    case 'store':
      return storeBase(base.digest, o.imagesDir, o.workDir);
    case 'oci-layout':
      return layoutBase(base.path, base.digest, o.root, o.workDir, o.platform);
  }
}

/**
 * A base from the image store: the stored root file system, verified against its digest, as one
 * uncompressed layer (owned by root, modes as stored, sorted, mtime 0).
 */
async function storeBase(
  digest: string,
  imagesDir: string | undefined,
  workDir: string,
): Promise<BaseImageContent> {
  if (imagesDir === undefined)
    throw unverified(`image base ${digest} is from the image store, and this runner host has none`);
  const stored = new DirectoryImage({ imagesDir, digest });
  try {
    await stored.verify();
  } catch (e) {
    throw unverified(
      `image base ${digest} from the image store does not verify: ${e instanceof Error ? e.message : String(e)}`,
      e,
    );
  }
  const rootfs = join(imageDir(imagesDir, digest.slice(7)), 'rootfs');
  const entries: TarEntry[] = [];
  const walkRoot = async (rel: string): Promise<void> => {
    for (const name of (await readdir(rel === '' ? rootfs : join(rootfs, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const full = join(rootfs, r);
      const st = await lstat(full);
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink())
        entries.push({ path: r, type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: await readlink(full) });
      else if (st.isDirectory()) {
        entries.push({ path: r, type: 'dir', mode, uid: 0, gid: 0 });
        await walkRoot(r);
      } else if (st.isFile())
        entries.push({
          path: r,
          type: 'file',
          mode,
          uid: 0,
          gid: 0,
          content: { file: full, size: st.size, ino: st.ino },
        });
    }
  };
  await walkRoot('');
  return { source: `store:${digest}`, layers: [await writeLayer(entries, join(workDir, 'base-layer'))] };
}

/** Copy a blob of a layout into `dest` while hashing it; refuse it unless it hashes to `digest`. */
async function copyVerified(
  src: string,
  dest: string,
  digest: string,
  where: string,
  maxBytes?: number,
): Promise<number> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(src, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (e) {
    throw unverified(`${where}: blob ${digest} is missing`, e);
  }
  const out = await open(dest, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unverified(`${where}: blob ${digest} is not a regular file`);
    if (maxBytes !== undefined && st.size > maxBytes)
      throw unverified(`${where}: blob ${digest} is too large`);
    const buf = Buffer.alloc(1024 * 1024);
    for (;;) {
      const r = await fh.read(buf, 0, buf.length, size);
      if (r.bytesRead === 0) break;
      hash.update(buf.subarray(0, r.bytesRead));
      await out.write(buf.subarray(0, r.bytesRead));
      size += r.bytesRead;
    }
  } finally {
    await fh.close();
    await out.close();
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== digest)
    throw unverified(`${where}: blob ${digest} hashes to ${got}: the base image was changed`);
  return size;
}

async function readVerified(dir: string, digest: string, where: string, workDir: string): Promise<Buffer> {
  const dest = join(workDir, `base-${digest.slice(7)}`);
  await copyVerified(join(dir, 'blobs', 'sha256', digest.slice(7)), dest, digest, where, MAX_JSON_BYTES);
  const fh = await open(dest, 'r');
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/**
 * A base from an OCI image layout in the source, pinned by its manifest digest (or by an index
 * digest, from which the manifest of the declared platform is picked at assembly): every blob is
 * copied out of the workspace and checked against its digest, so the build can neither change
 * the base nor swap it after the check.
 */
async function layoutBase(
  path: string,
  pin: string,
  root: string,
  workDir: string,
  platform: ImageOutputConfig['platform'],
): Promise<BaseImageContent> {
  const where = `image base layout '${path}'`;
  const dir = join(root, path);
  const real = await realpath(dir).catch((e: unknown) => {
    throw unverified(`${where} is not in the workspace`, e);
  });
  if (real !== dir || !(await lstat(dir)).isDirectory())
    throw unverified(`${where} must be a directory in the workspace, not reached through a symlink`);
  let manifestDigest = pin;
  let bytes = await readVerified(dir, pin, where, workDir).catch((e: unknown) => {
    throw e instanceof GatehouseError && /is missing/.test(e.message)
      ? unverified(`${where} has no blob with the pinned digest ${pin}`, e)
      : e;
  });
  const json = (b: Buffer): Record<string, unknown> => {
    try {
      return JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw unverified(`${where}: a pinned document is not JSON`, e);
    }
  };
  let mediaType = json(bytes).mediaType;
  if (mediaType === OCI_INDEX) {
    // An index pin: a multi-platform base, of which the declared platform's manifest is used.
    const index = json(bytes) as {
      manifests?: {
        mediaType?: string;
        digest?: string;
        platform?: { os?: string; architecture?: string; variant?: string };
      }[];
    };
    const first = index.manifests?.find(
      (m) =>
        m.mediaType === OCI_MANIFEST &&
        m.platform?.os === platform.os &&
        m.platform.architecture === platform.architecture &&
        (m.platform.variant ?? '') === (platform.variant ?? ''),
    );
    if (first?.digest === undefined || !/^sha256:[0-9a-f]{64}$/.test(first.digest))
      throw unverified(
        `${where}: the pinned index has no image manifest for ${platform.os}/${platform.architecture}${platform.variant === undefined ? '' : `/${platform.variant}`}`,
      );
    manifestDigest = first.digest;
    bytes = await readVerified(dir, manifestDigest, where, workDir);
    mediaType = json(bytes).mediaType;
  }
  if (mediaType !== OCI_MANIFEST)
    throw unverified(`${where}: ${manifestDigest} is not an OCI image manifest`);
  const manifest = parseImageJson(imageManifestSchema, bytes, 'base manifest', where);
  const config = parseImageJson(
    imageConfigSchema,
    await readVerified(dir, manifest.config.digest, where, workDir),
    'base config',
    where,
  );
  if (config.rootfs.diff_ids.length !== manifest.layers.length)
    throw unverified(
      `${where}: its config lists ${config.rootfs.diff_ids.length} diff IDs for ${manifest.layers.length} layers`,
    );
  const layers: LayerFile[] = [];
  for (const [n, l] of manifest.layers.entries()) {
    if (!BASE_LAYER_TYPES.has(l.mediaType))
      throw unverified(`${where}: layer ${n} has the unsupported type ${l.mediaType}`);
    const dest = join(workDir, `base-layer-${n}`);
    const size = await copyVerified(join(dir, 'blobs', 'sha256', l.digest.slice(7)), dest, l.digest, where);
    if (size !== l.size)
      throw unverified(`${where}: layer ${n} is ${size} bytes, the manifest says ${l.size}`);
    layers.push({
      mediaType: l.mediaType,
      digest: l.digest,
      size,
      diffId: config.rootfs.diff_ids[n] as string,
      path: dest,
    });
  }
  const c = config.config ?? {};
  const runConfig: BaseRunConfig = {
    ...(c.Env == null ? {} : { Env: c.Env }),
    ...(c.Entrypoint == null ? {} : { Entrypoint: c.Entrypoint }),
    ...(c.Cmd == null ? {} : { Cmd: c.Cmd }),
    ...(c.User === undefined ? {} : { User: c.User }),
    ...(c.WorkingDir === undefined ? {} : { WorkingDir: c.WorkingDir }),
    ...(c.Labels == null ? {} : { Labels: c.Labels }),
  };
  return {
    source: `oci-layout:${manifestDigest}`,
    manifestDigest,
    layers,
    platform: {
      os: config.os,
      architecture: config.architecture,
      ...(config.variant === undefined ? {} : { variant: config.variant }),
    },
    config: runConfig,
  };
}
