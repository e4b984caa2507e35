import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { ArtifactRegistry, Attachment, Placement, PlacementRequest } from './registry.ts';

/** Media types from the OCI image specification 1.1. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** The artifactType gatehouse gives a build's output. */
export const ARTIFACT_TYPE = 'application/vnd.gatehouse.artifact.v1';

const EMPTY_CONFIG = new TextEncoder().encode('{}');
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const PROJECT_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

interface OciIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

/**
 * The embedded registry: one OCI image layout per project and area under `root`
 * (`root/promoted/<project>`, `root/quarantine/<project>`). Attachments are OCI 1.1 referrers:
 * manifests whose `subject` names the artifact manifest. Writes are atomic (temporary file, then
 * rename), so a crash never leaves a half-written blob or index.
 */
export class OciLayoutRegistry implements ArtifactRegistry {
  readonly #root: string;

  constructor(options: { root: string }) {
    this.#root = options.root;
  }

  promote(request: PlacementRequest): Promise<Placement> {
    return this.#place('promoted', request);
  }

  quarantine(request: PlacementRequest): Promise<Placement> {
    return this.#place('quarantine', request);
  }

  /** The layout folder of a project's area. */
  layoutDir(area: 'promoted' | 'quarantine', project: string): string {
    return join(this.#root, area, project);
  }

  async #place(area: 'promoted' | 'quarantine', request: PlacementRequest): Promise<Placement> {
    if (!PROJECT_RE.test(request.project)) {
      throw new GatehouseError(
        'BAD_INPUT',
        `project name '${request.project}' is not a valid repository name`,
      );
    }
    if (!TAG_RE.test(request.tag))
      throw new GatehouseError('BAD_INPUT', `tag '${request.tag}' is not a valid OCI tag`);
    const dir = this.layoutDir(area, request.project);
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeIfAbsent(join(dir, 'oci-layout'), new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}'));

    const config = await this.#blob(dir, EMPTY_CONFIG, OCI_EMPTY);
    const layers: Descriptor[] = [];
    for (const f of request.files) {
      const d = await this.#blob(dir, f.bytes, 'application/octet-stream');
      if (d.digest !== `sha256:${f.sha256}`) {
        throw new GatehouseError(
          'BAD_INPUT',
          `artifact ${f.name} does not match its digest sha256:${f.sha256}`,
        );
      }
      layers.push({ ...d, annotations: { 'org.opencontainers.image.title': f.name } });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: ARTIFACT_TYPE,
      config,
      layers,
      annotations: { 'org.opencontainers.image.created': new Date().toISOString(), ...request.annotations },
    };
    const manifestDesc = await this.#blob(dir, jsonBytes(manifest), OCI_MANIFEST);
    const referrers: Descriptor[] = [];
    for (const a of request.attachments) referrers.push(await this.#referrer(dir, manifestDesc, a));

    await this.#updateIndex(dir, [
      {
        ...manifestDesc,
        artifactType: ARTIFACT_TYPE,
        annotations: { 'org.opencontainers.image.ref.name': request.tag },
      },
      ...referrers,
    ]);
    return {
      area,
      reference: `${dir}:${request.tag}@${manifestDesc.digest}`,
      manifestDigest: manifestDesc.digest,
      referrers: referrers.map((r) => ({ artifactType: r.artifactType ?? '', digest: r.digest })),
    };
  }

  async #referrer(dir: string, subject: Descriptor, a: Attachment): Promise<Descriptor> {
    const config = await this.#blob(dir, EMPTY_CONFIG, OCI_EMPTY);
    const layer = await this.#blob(dir, a.bytes, a.mediaType);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: a.artifactType,
      config,
      layers: [layer],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      ...(a.annotations === undefined ? {} : { annotations: a.annotations }),
    };
    const d = await this.#blob(dir, jsonBytes(manifest), OCI_MANIFEST);
    return { ...d, artifactType: a.artifactType };
  }

  async #blob(dir: string, bytes: Uint8Array, mediaType: string): Promise<Descriptor> {
    const hex = sha256Hex(bytes);
    await writeIfAbsent(join(dir, 'blobs', 'sha256', hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.byteLength };
  }

  async #updateIndex(dir: string, add: Descriptor[]): Promise<void> {
    const path = join(dir, 'index.json');
    let index: OciIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
    try {
      index = JSON.parse(await readFile(path, 'utf8')) as OciIndex;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new GatehouseError('STORE_ERROR', `cannot read the OCI index ${path}`, { cause: e });
      }
    }
    const tag = add[0]?.annotations?.['org.opencontainers.image.ref.name'];
    // A tag names one manifest: an older manifest with the same tag loses the tag but stays reachable.
    const kept = index.manifests.map((m) =>
      m.annotations?.['org.opencontainers.image.ref.name'] === tag ? withoutTag(m) : m,
    );
    const known = new Set(kept.map((m) => m.digest));
    index.manifests = [...kept, ...add.filter((d) => !known.has(d.digest))];
    await atomicWrite(path, jsonBytes(index));
  }
}

function withoutTag(d: Descriptor): Descriptor {
  const { annotations, ...rest } = d;
  const { 'org.opencontainers.image.ref.name': _, ...others } = annotations ?? {};
  return Object.keys(others).length === 0 ? rest : { ...rest, annotations: others };
}

function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

async function writeIfAbsent(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await stat(path);
  } catch {
    await atomicWrite(path, bytes);
  }
}

async function atomicWrite(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, bytes, { mode: 0o644 });
  await rename(tmp, path);
}

/** Read an OCI image layout's index, e.g. to list what was promoted. */
export async function readLayoutIndex(dir: string): Promise<OciIndex> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as OciIndex;
}
