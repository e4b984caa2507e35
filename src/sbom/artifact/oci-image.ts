/**
 * Container images as stored on disk: an OCI image layout (`oci-layout`, `index.json`, `blobs/`;
 * a directory or a tar of one) and a `docker save` archive (`manifest.json` and layer tars). This
 * module reads the index and manifests, checks every blob against its digest, and lists each
 * image's layers in order; the cataloguer walks the layers and applies their whiteouts.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { GatehouseError } from '../../common/errors.ts';
import { ByteStream, FileRange } from './byte-stream.ts';

/** The files of an image layout, by their path inside it (`index.json`, `blobs/sha256/…`). */
export interface ImageStore {
  /** The file at `path` as a range, or undefined when there is none. */
  get(path: string): Promise<FileRange | undefined>;
  /** Let go of open files. */
  close(): Promise<void>;
}

/** A store over an image layout directory; files are opened without following symlinks. */
export function directoryImageStore(dir: string, onRead: (n: number) => void): ImageStore {
  const handles: FileHandle[] = [];
  return {
    async get(path) {
      if (path.split('/').some((s) => s === '..' || s === '') || path.startsWith('/')) return undefined;
      let fh: FileHandle;
      try {
        fh = await open(join(dir, path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      } catch {
        return undefined;
      }
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        return undefined;
      }
      handles.push(fh);
      return new FileRange(fh, 0, st.size, onRead);
    },
    async close() {
      await Promise.all(handles.splice(0).map((h) => h.close()));
    },
  };
}

/** A store over a tar holding an image layout: regular files by name, as ranges of the tar. */
export function tarImageStore(
  files: ReadonlyMap<string, { offset: number; size: number }>,
  tar: FileRange,
): ImageStore {
  return {
    async get(path) {
      const f = files.get(path);
      return f === undefined ? undefined : tar.sub(f.offset, f.size);
    },
    async close() {},
  };
}

/** Which image format a set of root names suggests. */
export function imageFormatOf(rootNames: ReadonlySet<string>): 'oci' | 'docker' | undefined {
  if (rootNames.has('oci-layout') && rootNames.has('index.json')) return 'oci';
  if (rootNames.has('manifest.json')) return 'docker';
  return undefined;
}

/**
 * Whether a layout with these root names really is an image: an OCI layout always; a
 * `manifest.json` only when it is a docker save manifest (a browser extension has one too).
 */
export async function detectImage(
  store: ImageStore,
  format: 'oci' | 'docker',
  maxJsonBytes: number,
): Promise<'oci' | 'docker' | undefined> {
  if (format === 'oci') return 'oci';
  const r = await store.get('manifest.json');
  if (r === undefined || r.size > maxJsonBytes) return undefined;
  try {
    return dockerManifestSchema.safeParse(JSON.parse((await r.read(0, r.size)).toString('utf8'))).success
      ? 'docker'
      : undefined;
  } catch {
    return undefined;
  }
}

/** One layer of an image, in order (lowest first). */
export interface ImageLayer {
  /** The layer's path in the layout (`blobs/sha256/…` or `<id>/layer.tar`). */
  path: string;
  range: FileRange;
  /** The digest of the blob's bytes, or of its uncompressed tar (`diffId`), to check as it is read. */
  digest?: { of: 'blob' | 'uncompressed'; alg: 'sha256' | 'sha512'; hex: string };
}

/** One image of a layout: a name for it and its layers. */
export interface ImagePlan {
  ref: string;
  layers: ImageLayer[];
}

const DIGEST = /^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$/;
const descriptor = z.object({
  mediaType: z.string().max(256).optional(),
  digest: z.string().regex(DIGEST),
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
});
const indexSchema = z.object({ schemaVersion: z.literal(2), manifests: z.array(descriptor).max(4096) });
const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  config: descriptor,
  layers: z.array(descriptor).max(4096),
});
const dockerManifestSchema = z
  .array(
    z.object({
      Config: z.string().max(4096),
      RepoTags: z.array(z.string()).nullable().optional(),
      Layers: z.array(z.string().max(4096)).max(4096),
    }),
  )
  .min(1)
  .max(1024);
const configSchema = z.object({
  rootfs: z.object({ diff_ids: z.array(z.string().regex(DIGEST)) }).optional(),
});

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
const IMAGE_CONFIG_TYPES = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.container.image.v1+json',
]);

function bad(message: string, where: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', `image ${message}: ${where}`);
}

function parseDigest(d: string): { alg: 'sha256' | 'sha512'; hex: string } {
  const m = DIGEST.exec(d);
  return { alg: (m?.[1] ?? 'sha256') as 'sha256' | 'sha512', hex: m?.[2] ?? '' };
}

/** Read a small JSON file of the layout (bounded), checking its digest and size when given. */
async function readJson(
  store: ImageStore,
  path: string,
  maxBytes: number,
  where: string,
  expect?: z.infer<typeof descriptor>,
): Promise<unknown> {
  const r = await store.get(path);
  if (r === undefined) throw bad(`has no ${path}`, where);
  if (r.size > maxBytes) throw bad(`${path} is larger than ${maxBytes} bytes`, where);
  const bytes = await r.read(0, r.size);
  if (expect !== undefined) {
    const { alg, hex } = parseDigest(expect.digest);
    if (expect.size !== bytes.length)
      throw bad(`${path} is ${bytes.length} bytes, its descriptor says ${expect.size}`, where);
    if (createHash(alg).update(bytes).digest('hex') !== hex)
      throw bad(`${path} does not match its digest`, where);
  }
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', `image ${path} is not JSON: ${where}`, { cause });
  }
}

function blobPath(d: string): string {
  const { alg, hex } = parseDigest(d);
  return `blobs/${alg}/${hex}`;
}

/**
 * The images of a layout and their layers in order: for OCI, the index followed through nested
 * indexes to image manifests (each listed once); for docker save, manifest.json's images. Blobs
 * other than tar layers (signatures, attestations, SBOMs attached as artifacts) are left out.
 * @param notes called with a reason for each manifest or layer left out
 * @throws GatehouseError BAD_INPUT for a malformed layout, a missing blob or a digest mismatch
 */
export async function planImages(
  store: ImageStore,
  format: 'oci' | 'docker',
  maxJsonBytes: number,
  where: string,
  notes: (path: string, reason: string) => void,
): Promise<ImagePlan[]> {
  if (format === 'docker') return planDocker(store, maxJsonBytes, where);
  const layout = await readJson(store, 'oci-layout', maxJsonBytes, where);
  if (
    typeof layout !== 'object' ||
    layout === null ||
    typeof (layout as { imageLayoutVersion?: unknown }).imageLayoutVersion !== 'string'
  )
    throw bad('oci-layout has no imageLayoutVersion', where);
  const plans: ImagePlan[] = [];
  const seen = new Set<string>();
  const visit = async (
    path: string,
    expect: z.infer<typeof descriptor> | undefined,
    ref: string,
    depth: number,
  ): Promise<void> => {
    if (depth > 8) throw bad('indexes nest more than 8 deep', where);
    const raw = await readJson(store, path, maxJsonBytes, where, expect);
    const isIndex =
      (expect?.mediaType !== undefined && INDEX_TYPES.has(expect.mediaType)) ||
      (typeof raw === 'object' && raw !== null && 'manifests' in raw);
    if (isIndex) {
      const idx = indexSchema.safeParse(raw);
      if (!idx.success)
        throw bad(`${path} is not an image index (${idx.error.issues[0]?.message ?? ''})`, where);
      for (const m of idx.data.manifests) {
        if (seen.has(m.digest)) continue;
        seen.add(m.digest);
        const name = m.annotations?.['org.opencontainers.image.ref.name'] ?? m.digest;
        await visit(blobPath(m.digest), m, depth === 0 ? name : ref, depth + 1);
      }
      return;
    }
    const man = manifestSchema.safeParse(raw);
    if (!man.success)
      throw bad(`${path} is not an image manifest (${man.error.issues[0]?.message ?? ''})`, where);
    const configType = man.data.config.mediaType;
    if (configType !== undefined && !IMAGE_CONFIG_TYPES.has(configType)) {
      notes(path, `an artifact manifest (config ${configType.slice(0, 80)}), not an image`);
      return;
    }
    const layers: ImageLayer[] = [];
    for (const l of man.data.layers) {
      const lp = blobPath(l.digest);
      if (l.mediaType !== undefined && !/tar/.test(l.mediaType)) {
        notes(lp, `a blob of type ${l.mediaType.slice(0, 80)}, not a layer`);
        continue;
      }
      const range = await store.get(lp);
      if (range === undefined) {
        // Foreign (non-distributable) layers are fetched from elsewhere at pull time.
        if (l.mediaType !== undefined && /foreign|nondistributable/.test(l.mediaType)) {
          notes(lp, 'a non-distributable layer that the layout does not hold');
          continue;
        }
        throw bad(`layer ${l.digest} is missing`, where);
      }
      if (range.size !== l.size)
        throw bad(`layer ${l.digest} is ${range.size} bytes, its descriptor says ${l.size}`, where);
      layers.push({ path: lp, range, digest: { of: 'blob', ...parseDigest(l.digest) } });
    }
    plans.push({ ref, layers });
  };
  await visit('index.json', undefined, 'index.json', 0);
  return plans;
}

async function planDocker(store: ImageStore, maxJsonBytes: number, where: string): Promise<ImagePlan[]> {
  const parsed = dockerManifestSchema.safeParse(await readJson(store, 'manifest.json', maxJsonBytes, where));
  if (!parsed.success)
    throw bad(
      `manifest.json is not a docker save manifest (${parsed.error.issues[0]?.message ?? ''})`,
      where,
    );
  const plans: ImagePlan[] = [];
  for (const img of parsed.data) {
    const clean = (p: string) => p.replace(/^\.\//, '');
    let diffIds: string[] = [];
    const config = configSchema.safeParse(await readJson(store, clean(img.Config), maxJsonBytes, where));
    if (config.success) diffIds = config.data.rootfs?.diff_ids ?? [];
    const layers: ImageLayer[] = [];
    for (const [i, l] of img.Layers.entries()) {
      const path = clean(l);
      const range = await store.get(path);
      if (range === undefined) throw bad(`layer ${path} is missing`, where);
      const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(path);
      const diff = diffIds[i];
      const digest: ImageLayer['digest'] =
        m !== null
          ? { of: 'blob', alg: m[1] as 'sha256', hex: m[2] ?? '' }
          : diff !== undefined
            ? { of: 'uncompressed', ...parseDigest(diff) }
            : undefined;
      layers.push({ path, range, ...(digest === undefined ? {} : { digest }) });
    }
    plans.push({ ref: img.RepoTags?.[0] ?? clean(img.Config), layers });
  }
  return plans;
}

/**
 * A stream that hashes what passes through and, at its end, checks the digest. It never seeks:
 * every byte must be read for the check to mean anything.
 * @throws GatehouseError BAD_INPUT at the end when the bytes do not match
 */
export function verifyingStream(
  s: ByteStream,
  digest: { alg: 'sha256' | 'sha512'; hex: string },
  what: string,
  where: string,
): ByteStream {
  const h = createHash(digest.alg);
  let done = false;
  return new ByteStream({
    async pull(max) {
      const c = await s.next(max);
      if (c === undefined) {
        if (!done && h.digest('hex') !== digest.hex)
          throw bad(`${what} does not match its digest ${digest.alg}:${digest.hex.slice(0, 16)}…`, where);
        done = true;
        return undefined;
      }
      h.update(c);
      return c;
    },
    close: () => s.close(),
  });
}

/**
 * Check a range against a digest by reading it once (for an uncompressed layer, so that the walk
 * over it may then seek).
 * @throws GatehouseError BAD_INPUT when the bytes do not match
 */
export async function verifyRange(
  r: FileRange,
  digest: { alg: 'sha256' | 'sha512'; hex: string },
  what: string,
  where: string,
): Promise<void> {
  const h = createHash(digest.alg);
  for await (const c of r.stream().chunks()) h.update(c);
  if (h.digest('hex') !== digest.hex)
    throw bad(`${what} does not match its digest ${digest.alg}:${digest.hex.slice(0, 16)}…`, where);
}
