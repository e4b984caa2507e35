/**
 * Container images assembled by gatehouse itself, outside any sandbox and without a daemon: a
 * verified base image's layers, then the build's files as one layer gatehouse wrote, under an
 * image config gatehouse computed from the project's declared settings. The same inputs give the
 * same manifest digest: layers are tars with sorted entries and mtime 0, gzip-compressed by a
 * pinned pure-JavaScript compressor (src/registry/layer-tar.ts); the config and manifest are JSON
 * with a fixed key order and the epoch as their creation time.
 *
 * The result travels as one file, an OCI image layout in a tar (`<name>.oci.tar`), which the gate
 * receives, digests, catalogues and opens again with {@link openImageArchive} before it signs and
 * promotes the manifest inside.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline as streamPipeline, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { byteSource, checkLayerEntries, readTar, writeLayerTar } from './layer-tar.ts';
import { type Descriptor, OCI_IMAGE_CONFIG, OCI_INDEX, OCI_MANIFEST } from './oci-format.ts';
import { digestOf, isDigest } from './oci-names.ts';

/** An uncompressed OCI layer (read from bases; gatehouse writes gzip layers). */
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/** The layer media types a base image may use (zstd is not read: its diff IDs cannot be checked here). */
export const BASE_LAYER_TYPES: ReadonlySet<string> = new Set([
  OCI_LAYER_TAR,
  OCI_LAYER_GZIP,
  DOCKER_LAYER_GZIP,
]);

/** The creation time of every image gatehouse assembles: fixed, so that it never changes a digest. */
export const IMAGE_CREATED = '1970-01-01T00:00:00Z';
/** The annotation naming the image's base, by the OCI image specification. */
export const BASE_DIGEST_ANNOTATION = 'org.opencontainers.image.base.digest';
/** gatehouse's annotation saying where the base came from: `scratch`, `store:sha256:…` or `oci-layout:sha256:…`. */
export const BASE_SOURCE_ANNOTATION = 'dev.gatehouse.image.base';

/** The platform an image runs on, as the image config states it. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** What a project declares about how its image runs (gatehouse.yaml `image.config` and `platform`). */
export interface ImageSettings {
  readonly platform: Platform;
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly user?: string;
  readonly workdir?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** A layer blob on disk: its descriptor fields, its diff ID, and the file holding it. */
export interface LayerFile {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  /** SHA-256 of the uncompressed tar (`sha256:<hex>`); equal to `digest` for an uncompressed layer. */
  readonly diffId: string;
  readonly path: string;
}

/** The run settings a base image's config carries, which the project's settings refine. */
export interface BaseRunConfig {
  readonly Env?: readonly string[];
  readonly Entrypoint?: readonly string[] | null;
  readonly Cmd?: readonly string[] | null;
  readonly User?: string;
  readonly WorkingDir?: string;
  readonly Labels?: Readonly<Record<string, string>> | null;
}

/** A verified base image: its layers in order, its platform and run settings, and what it is. */
export interface BaseImageContent {
  /** `scratch`, `store:sha256:<hex>` (a gatehouse image-store digest) or `oci-layout:sha256:<manifest>`. */
  readonly source: string;
  /** The base manifest digest, for a base that is an OCI image. */
  readonly manifestDigest?: string;
  readonly layers: readonly LayerFile[];
  readonly platform?: Platform;
  readonly config?: BaseRunConfig;
}

/** A document in an image, as the exact bytes that are stored and the descriptor naming them. */
export interface ImageBlob {
  readonly descriptor: Descriptor;
  readonly bytes: Uint8Array;
}

/** An assembled image: what names it, its manifest and config as stored, and its layers. */
export interface AssembledImage {
  readonly manifestDigest: string;
  readonly manifest: ImageBlob;
  readonly config: ImageBlob;
  readonly layers: readonly LayerFile[];
  readonly platform: Platform;
}

function jsonBlob(value: unknown, mediaType: string): ImageBlob {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return { bytes, descriptor: { mediaType, digest: digestOf(bytes), size: bytes.byteLength } };
}

function samePlatform(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}

/** `os/arch[/variant]`, for messages and annotations. */
export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant === undefined ? '' : `/${p.variant}`}`;
}

/** The base's environment with the project's variables set over it, by name, in a stable order. */
function mergeEnv(base: readonly string[], env: Readonly<Record<string, string>>): string[] {
  const out = new Map<string, string>();
  for (const e of base) {
    const eq = e.indexOf('=');
    out.set(eq === -1 ? e : e.slice(0, eq), e);
  }
  for (const k of Object.keys(env).sort()) out.set(k, `${k}=${env[k] as string}`);
  return [...out.values()];
}

/**
 * Assemble an image from a verified base, the layers written from the build's files, and the
 * project's settings. Pure: the same arguments give the same bytes, hence the same digest.
 * The project's entrypoint replaces the base's and then clears the base's cmd (as image builders
 * do); env is merged by name; labels are merged, the project's winning.
 * @throws GatehouseError BAD_INPUT when the declared platform is not the base's
 */
export function assembleImage(input: {
  base: BaseImageContent;
  layers: readonly LayerFile[];
  settings: ImageSettings;
}): AssembledImage {
  const { base, settings } = input;
  if (base.platform !== undefined && !samePlatform(base.platform, settings.platform))
    throw new GatehouseError(
      'BAD_INPUT',
      `the image is declared for ${platformString(settings.platform)} but its base is for ${platformString(base.platform)}`,
    );
  const layers = [...base.layers, ...input.layers];
  const b = base.config ?? {};
  const entrypoint = settings.entrypoint ?? b.Entrypoint ?? undefined;
  const cmd = settings.cmd ?? (settings.entrypoint !== undefined ? undefined : (b.Cmd ?? undefined));
  const env = mergeEnv(b.Env ?? [], settings.env ?? {});
  const labels = { ...(b.Labels ?? {}), ...(settings.labels ?? {}) };
  const runConfig = {
    ...((settings.user ?? b.User) === undefined || (settings.user ?? b.User) === ''
      ? {}
      : { User: settings.user ?? b.User }),
    ...(env.length === 0 ? {} : { Env: env }),
    ...(entrypoint === undefined || entrypoint === null ? {} : { Entrypoint: [...entrypoint] }),
    ...(cmd === undefined || cmd === null ? {} : { Cmd: [...cmd] }),
    ...((settings.workdir ?? b.WorkingDir) === undefined || (settings.workdir ?? b.WorkingDir) === ''
      ? {}
      : { WorkingDir: settings.workdir ?? b.WorkingDir }),
    ...(Object.keys(labels).length === 0
      ? {}
      : {
          Labels: Object.fromEntries(
            Object.keys(labels)
              .sort()
              .map((k) => [k, labels[k] as string]),
          ),
        }),
  };
  const history = [
    ...base.layers.map(() => ({ created: IMAGE_CREATED, created_by: `gatehouse: base ${base.source}` })),
    ...input.layers.map(() => ({ created: IMAGE_CREATED, created_by: 'gatehouse: build files' })),
  ];
  const config = jsonBlob(
    {
      created: IMAGE_CREATED,
      architecture: settings.platform.architecture,
      os: settings.platform.os,
      ...(settings.platform.variant === undefined ? {} : { variant: settings.platform.variant }),
      config: runConfig,
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history,
    },
    OCI_IMAGE_CONFIG,
  );
  const manifest = jsonBlob(
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: config.descriptor,
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      annotations: {
        'org.opencontainers.image.created': IMAGE_CREATED,
        ...(base.manifestDigest === undefined ? {} : { [BASE_DIGEST_ANNOTATION]: base.manifestDigest }),
        [BASE_SOURCE_ANNOTATION]: base.source,
      },
    },
    OCI_MANIFEST,
  );
  return {
    manifestDigest: manifest.descriptor.digest,
    manifest,
    config,
    layers,
    platform: settings.platform,
  };
}

/** The name of the file an image travels in: `<name>.oci.tar`. */
export function imageArchiveName(name: string): string {
  return `${name}.oci.tar`;
}

/**
 * Write an assembled image as an OCI image layout in a tar at `out`: `oci-layout`, `index.json`
 * naming the manifest (with `org.opencontainers.image.ref.name` = `refName`) and every blob, in
 * the same deterministic tar format as the layers. `skopeo copy oci-archive:…` reads it.
 */
export async function writeImageArchive(
  image: AssembledImage,
  refName: string,
  out: string,
): Promise<{ sha256: string; size: number }> {
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      {
        ...image.manifest.descriptor,
        platform: {
          os: image.platform.os,
          architecture: image.platform.architecture,
          ...(image.platform.variant === undefined ? {} : { variant: image.platform.variant }),
        },
        annotations: { 'org.opencontainers.image.ref.name': refName },
      },
    ],
  };
  const file = (path: string, content: { bytes: Uint8Array } | { file: string; size: number }) => ({
    path,
    type: 'file' as const,
    mode: 0o644,
    uid: 0,
    gid: 0,
    content,
  });
  const dir = (path: string) => ({ path, type: 'dir' as const, mode: 0o755, uid: 0, gid: 0 });
  const blobs = new Map<string, { bytes: Uint8Array } | { file: string; size: number }>();
  blobs.set(image.manifest.descriptor.digest, { bytes: image.manifest.bytes });
  blobs.set(image.config.descriptor.digest, { bytes: image.config.bytes });
  for (const l of image.layers) blobs.set(l.digest, { file: l.path, size: l.size });
  return writeLayerTar(
    [
      file('oci-layout', { bytes: new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}') }),
      file('index.json', { bytes: new TextEncoder().encode(JSON.stringify(index)) }),
      dir('blobs'),
      dir('blobs/sha256'),
      ...[...blobs].map(([digest, content]) => file(`blobs/sha256/${digest.slice(7)}`, content)),
    ],
    out,
  );
}

const descriptorSchema = z.object({
  mediaType: z.string().max(256),
  digest: z.string().refine(isDigest, 'must be sha256:<64 hex>'),
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
});

const platformSchema = z.object({
  os: z.string().min(1).max(64),
  architecture: z.string().min(1).max(64),
  variant: z.string().min(1).max(64).optional(),
});

/** An image config as read back: platform, run settings and the diff IDs it promises. */
export const imageConfigSchema = z.object({
  architecture: z.string().max(64),
  os: z.string().max(64),
  variant: z.string().max(64).optional(),
  config: z
    .object({
      Env: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Cmd: z.array(z.string()).nullish(),
      User: z.string().optional(),
      WorkingDir: z.string().optional(),
      Labels: z.record(z.string(), z.string()).nullish(),
    })
    .optional(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(z.string().refine(isDigest)) }),
});

/** An image manifest as read back. */
export const imageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema).max(256),
  annotations: z.record(z.string(), z.string()).optional(),
});

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  manifests: z.array(descriptorSchema.extend({ platform: platformSchema.optional() })).max(64),
});

function refused(message: string, where: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'ARTIFACT_REFUSED',
    `${where}: ${message}`,
    cause === undefined ? { where } : { where, cause },
  );
}

/** Parse JSON bytes with a schema; `what` and `where` name them in the refusal. */
export function parseImageJson<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string, where: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw refused(`the ${what} is not JSON`, where, e);
  }
  const r = schema.safeParse(raw);
  if (!r.success)
    throw refused(
      `the ${what} is malformed: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`.trim(),
      where,
      r.error,
    );
  return r.data;
}

/** SHA-256 of a layer's uncompressed tar, and every entry checked, read as a stream from `path`. */
export async function layerDiffId(
  path: string,
  mediaType: string,
  where: string,
  options: { build?: boolean } = {},
): Promise<string> {
  const hash = createHash('sha256');
  const tee = new Transform({
    transform(chunk: Buffer, _e, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const raw = createReadStream(path, { highWaterMark: 1024 * 1024 });
  // pipeline, not pipe: a corrupt gzip stream must fail the read, not leave it waiting forever.
  const done = (): void => undefined;
  const source =
    mediaType === OCI_LAYER_TAR
      ? streamPipeline(raw, tee, done)
      : streamPipeline(raw, createGunzip(), tee, done);
  try {
    await checkLayerEntries(byteSource(source), where, options);
    // Whatever follows the end of the archive still counts in the diff ID.
    for await (const _ of source) {
      // drained
    }
  } catch (e) {
    raw.destroy();
    if (e instanceof GatehouseError) throw e;
    throw refused(`layer cannot be read: ${e instanceof Error ? e.message : String(e)}`, where, e);
  }
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Open an image archive the gate received: unpack its blobs into `dir`, each checked against its
 * name, and verify it as an image gatehouse assembled: one manifest, its config and layers all
 * present with the sizes and digests named, the config's diff IDs those of the layers, every
 * layer's entries inside the root, a real platform, and the last layer (the build's) an
 * uncompressed tar gatehouse wrote. The blobs it returns are files in `dir`, ready to promote.
 * @throws GatehouseError ARTIFACT_REFUSED naming what is wrong
 */
export async function openImageArchive(archive: string, dir: string, where: string): Promise<AssembledImage> {
  await mkdir(join(dir, 'blobs'), { recursive: true, mode: 0o700 });
  const small = new Map<string, Buffer>();
  const blobs = new Map<string, { path: string; size: number }>();
  const input = createReadStream(archive, { highWaterMark: 1024 * 1024 });
  try {
    const names = new Set<string>();
    await readTar(byteSource(input), where, async (e, content) => {
      const name = e.path.replace(/^\.\//, '');
      // One name, one entry: with two index.json, the cataloguer and the gate could read two images.
      const key = name.replace(/\/$/, '');
      if (names.has(key)) throw refused(`entry '${name.slice(0, 200)}' appears twice`, where);
      names.add(key);
      if (
        e.type === 'dir' &&
        (name === 'blobs/' || name === 'blobs/sha256/' || name === 'blobs' || name === 'blobs/sha256')
      )
        return;
      if (e.type !== 'file') throw refused(`entry '${name.slice(0, 200)}' is not a regular file`, where);
      if (name === 'oci-layout' || name === 'index.json') {
        if (e.size > 1024 * 1024) throw refused(`${name} is too large`, where);
        small.set(name, await content.all());
        return;
      }
      const hex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
      if (hex === undefined)
        throw refused(`entry '${name.slice(0, 200)}' is not part of an image layout`, where);
      if (blobs.has(hex)) throw refused(`blob sha256:${hex} appears twice`, where);
      // Blobs can be as large as the layers: written in pieces, never held whole.
      const path = join(dir, 'blobs', hex);
      const tmp = `${path}.part`;
      const hash = createHash('sha256');
      const out = createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
      let written = 0;
      try {
        await content.each(async (chunk) => {
          hash.update(chunk);
          written += chunk.length;
          if (!out.write(chunk)) await new Promise<void>((res) => out.once('drain', () => res()));
        });
      } finally {
        await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
      }
      if (written !== e.size || hash.digest('hex') !== hex) {
        await rm(tmp, { force: true });
        throw refused(`blob sha256:${hex} does not hash to its name`, where);
      }
      await rename(tmp, path);
      blobs.set(hex, { path, size: e.size });
    });
  } finally {
    input.destroy();
  }
  const layoutFile = small.get('oci-layout');
  if (layoutFile === undefined || !/"imageLayoutVersion"\s*:\s*"1\.0\.0"/.test(layoutFile.toString()))
    throw refused('it is not an OCI image layout (no oci-layout 1.0.0)', where);
  const indexBytes = small.get('index.json');
  if (indexBytes === undefined) throw refused('it has no index.json', where);
  const index = parseImageJson(indexSchema, indexBytes, 'image index', where);
  if (index.manifests.length !== 1 || index.manifests[0]?.mediaType !== OCI_MANIFEST)
    throw refused('its index must name exactly one OCI image manifest', where);
  const top = index.manifests[0];
  const blob = (d: { digest: string; size: number }, what: string): { path: string; size: number } => {
    const b = blobs.get(d.digest.slice(7));
    if (b === undefined) throw refused(`the ${what} ${d.digest} is missing`, where);
    if (b.size !== d.size) throw refused(`the ${what} ${d.digest} is ${b.size} bytes, not ${d.size}`, where);
    return b;
  };
  const read = async (d: { digest: string; size: number }, what: string): Promise<Uint8Array> => {
    const b = blob(d, what);
    if (b.size > 4 * 1024 * 1024) throw refused(`the ${what} is larger than 4 MiB`, where);
    const chunks: Buffer[] = [];
    for await (const c of createReadStream(b.path)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const manifestBytes = await read(top, 'manifest');
  const manifest = parseImageJson(imageManifestSchema, manifestBytes, 'image manifest', where);
  if (manifest.mediaType !== OCI_MANIFEST || manifest.config.mediaType !== OCI_IMAGE_CONFIG)
    throw refused('the manifest is not an OCI image manifest with an OCI image config', where);
  const configBytes = await read(manifest.config, 'config');
  const config = parseImageJson(imageConfigSchema, configBytes, 'image config', where);
  if (config.os === '' || config.architecture === '')
    throw refused('the image config names no platform (os and architecture)', where);
  if (config.rootfs.diff_ids.length !== manifest.layers.length)
    throw refused(
      `the config lists ${config.rootfs.diff_ids.length} diff IDs for ${manifest.layers.length} layers`,
      where,
    );
  const last = manifest.layers.length - 1;
  const layers: LayerFile[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    if (!BASE_LAYER_TYPES.has(l.mediaType))
      throw refused(`layer ${i} has the unsupported type ${l.mediaType}`, where);
    const b = blob(l, `layer ${i}`);
    // The last layer is always the build's, which gatehouse wrote: held to stricter rules.
    const build = i === last;
    const diffId = await layerDiffId(b.path, l.mediaType, `${where} layer ${i} (${l.digest})`, { build });
    if (diffId !== config.rootfs.diff_ids[i])
      throw refused(
        `layer ${i} unpacks to ${diffId}, but the config promises ${config.rootfs.diff_ids[i]}`,
        where,
      );
    layers.push({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId, path: b.path });
  }
  const configBlob = blob(manifest.config, 'config');
  const manifestBlob = blob(top, 'manifest');
  const st = await stat(manifestBlob.path);
  if (st.size !== top.size) throw refused('the manifest changed while it was read', where);
  return {
    manifestDigest: top.digest,
    manifest: {
      bytes: manifestBytes,
      descriptor: { mediaType: OCI_MANIFEST, digest: top.digest, size: top.size },
    },
    config: {
      bytes: configBytes,
      descriptor: { mediaType: OCI_IMAGE_CONFIG, digest: manifest.config.digest, size: configBlob.size },
    },
    layers,
    platform: {
      os: config.os,
      architecture: config.architecture,
      ...(config.variant === undefined ? {} : { variant: config.variant }),
    },
  };
}

/** Copy a file to `dest` as a stream. */
export async function copyBlob(from: string, dest: string): Promise<void> {
  await pipeline(createReadStream(from), createWriteStream(dest, { flags: 'wx', mode: 0o600 }));
}
