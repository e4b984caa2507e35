import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { exists, fileMismatch, placeVerified, writeVerified } from './blob-file.ts';
import {
  ARTIFACT_TYPE,
  attachmentLayer,
  describePlaced,
  isFileBlob,
  noArtifact,
  noAttachmentContent,
  PROJECT_RE,
  planPlacement,
  planReferrer,
  readArtifactFiles,
} from './manifests.ts';
import {
  type Descriptor,
  type ImageIndex,
  imageIndex,
  jsonBytes,
  parseImageManifest,
  referrerDescriptor,
} from './oci-format.ts';
import { COSIGN_KINDS, cosignTag, digestOf, isDigest } from './oci-names.ts';
import {
  type Area,
  type ArtifactFile,
  type ArtifactRegistry,
  type Attachment,
  type PlacedArtifact,
  type Placement,
  type PlacementRequest,
  PlacingRegistry,
} from './registry.ts';

const REF_NAME = 'org.opencontainers.image.ref.name';

/**
 * The embedded registry: one OCI image layout per project and area under `root`
 * (`root/promoted/<project>`, `root/quarantine/<project>`). Attachments are OCI 1.1 referrers
 * (manifests whose `subject` names the artifact manifest), listed in `index.json` with their
 * artifactType since a layout has no referrers API, and signed attestations are also tagged the
 * cosign way. Writes are atomic (temporary file, then rename), so a crash never leaves a
 * half-written blob or index.
 */
export class OciLayoutRegistry extends PlacingRegistry implements ArtifactRegistry {
  readonly #root: string;
  /**
   * The index updates of each layout folder, one after another: an update reads, changes and
   * writes `index.json`, and two at once would lose one's manifests. Blobs, written under their
   * digests, need no turn, so promotions of different jobs overlap everywhere else.
   */
  readonly #indexTurns = new Map<string, Promise<unknown>>();

  constructor(options: { root: string }) {
    super();
    this.#root = options.root;
  }

  /** The layout folder of a project's area. */
  layoutDir(area: Area, project: string): string {
    return join(this.#root, area, project);
  }

  repositoryUri(area: Area, project: string): string {
    return `oci-layout://${this.layoutDir(area, project)}`;
  }

  async inspect(area: Area, project: string, reference: string): Promise<PlacedArtifact | undefined> {
    if (!PROJECT_RE.test(project)) return undefined;
    const dir = this.layoutDir(area, project);
    let index: ImageIndex;
    try {
      index = await readLayoutIndex(dir);
    } catch {
      return undefined;
    }
    const target = index.manifests.find(
      (m) => m.digest === reference || m.annotations?.[REF_NAME] === reference,
    );
    if (target === undefined) return undefined;
    const bytes = await this.#readBlob(dir, target.digest);
    if (bytes === undefined) return undefined;
    const referrers: Descriptor[] = [];
    for (const m of index.manifests) {
      if (
        m.digest === target.digest ||
        m.artifactType === undefined ||
        m.annotations?.[REF_NAME] !== undefined
      )
        continue;
      const rb = await this.#readBlob(dir, m.digest);
      if (rb !== undefined && parseImageManifest(rb, m.digest).subject?.digest === target.digest)
        referrers.push(m);
    }
    const signed = COSIGN_KINDS.map((kind) => cosignTag(target.digest, kind));
    const cosignTags = index.manifests
      .map((m) => m.annotations?.[REF_NAME])
      .filter((t): t is string => t !== undefined && signed.includes(t));
    return describePlaced(bytes, target.digest, referrers, cosignTags, `${dir}@${target.digest}`);
  }

  async attachment(area: Area, project: string, referrerDigest: string): Promise<Uint8Array> {
    const dir = this.layoutDir(area, project);
    const bytes = await this.#readBlob(dir, referrerDigest);
    const layer = attachmentLayer(bytes, referrerDigest, dir, referrerDigest);
    const content = await this.#readBlob(dir, layer.digest);
    if (content === undefined) throw noAttachmentContent(referrerDigest, dir);
    return content;
  }

  async files(area: Area, project: string, reference: string, into: string): Promise<ArtifactFile[]> {
    const dir = this.layoutDir(area, project);
    const placed = await this.inspect(area, project, reference);
    const bytes = placed === undefined ? undefined : await this.#readBlob(dir, placed.manifestDigest);
    if (placed === undefined || bytes === undefined) throw noArtifact(reference, area, dir);
    return readArtifactFiles(bytes, placed.manifestDigest, into, async (l, dest) => {
      const blob = join(dir, 'blobs', 'sha256', l.digest.slice(7));
      if (!isDigest(l.digest) || !(await exists(blob)))
        throw new GatehouseError('NOT_FOUND', `file ${l.name} (${l.digest}) is missing`, { where: dir });
      // A layout on disk is not trusted more than a remote registry: the copy is checked.
      return writeVerified(blob, dest, l.digest);
    });
  }

  async attach(
    area: Area,
    project: string,
    manifestDigest: string,
    attachment: Attachment,
  ): Promise<{ artifactType: string; digest: string }> {
    const dir = this.layoutDir(area, project);
    const subject = PROJECT_RE.test(project) ? await this.#readBlob(dir, manifestDigest) : undefined;
    if (subject === undefined) throw noArtifact(manifestDigest, area, dir);
    const plan = planReferrer({ digest: manifestDigest, size: subject.byteLength }, attachment);
    for (const b of [...plan.blobs, plan.manifest])
      await writeIfAbsent(join(dir, 'blobs', 'sha256', b.descriptor.digest.slice(7)), b.bytes);
    await this.#updateIndex(dir, [
      referrerDescriptor(plan.manifest.descriptor, attachment.artifactType, attachment.annotations),
    ]);
    return { artifactType: attachment.artifactType, digest: plan.manifest.descriptor.digest };
  }

  async #readBlob(dir: string, digest: string): Promise<Uint8Array | undefined> {
    if (!isDigest(digest)) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(join(dir, 'blobs', 'sha256', digest.slice(7))));
    } catch {
      return undefined;
    }
    // A layout on disk is not trusted more than a remote registry: content must match its name.
    if (digestOf(bytes) !== digest) {
      throw new GatehouseError('REGISTRY_ERROR', `blob ${digest} does not match its digest`, { where: dir });
    }
    return bytes;
  }

  protected override async place(area: Area, request: PlacementRequest): Promise<Placement> {
    const plan = planPlacement(request);
    const dir = this.layoutDir(area, request.project);
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeIfAbsent(join(dir, 'oci-layout'), new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}'));
    for (const b of [
      ...plan.blobs,
      plan.artifact,
      ...plan.referrers.map((r) => r.manifest),
      ...plan.cosign.map((c) => c.manifest),
    ]) {
      const dest = join(dir, 'blobs', 'sha256', b.descriptor.digest.slice(7));
      if (!isFileBlob(b)) await writeIfAbsent(dest, b.bytes);
      else if (!(await exists(dest)))
        await placeVerified(b.path, dest, b.descriptor.digest, fileMismatch(b.path));
    }
    const referrers: Descriptor[] = plan.referrers.map((r) =>
      referrerDescriptor(r.manifest.descriptor, r.artifactType, r.annotations),
    );
    await this.#updateIndex(dir, [
      {
        ...plan.artifact.descriptor,
        // A runnable image is an image, not an artifact: no artifactType, as its manifest has none.
        ...(request.image === undefined ? { artifactType: ARTIFACT_TYPE } : {}),
        annotations: { [REF_NAME]: request.tag },
      },
      ...referrers,
      ...plan.cosign.map((c) => ({ ...c.manifest.descriptor, annotations: { [REF_NAME]: c.tag } })),
    ]);
    return {
      area,
      reference: `${dir}:${request.tag}@${plan.artifact.descriptor.digest}`,
      manifestDigest: plan.artifact.descriptor.digest,
      referrers: referrers.map((r) => ({ artifactType: r.artifactType ?? '', digest: r.digest })),
      cosignTags: plan.cosign.map((c) => c.tag),
    };
  }

  #updateIndex(dir: string, add: Descriptor[]): Promise<void> {
    const run = () => this.#rewriteIndex(dir, add);
    const next = (this.#indexTurns.get(dir) ?? Promise.resolve()).then(run, run);
    const settled = next.catch(() => undefined);
    this.#indexTurns.set(dir, settled);
    // The last in line removes the folder's queue, so that the map does not grow with projects.
    void settled.then(() => {
      if (this.#indexTurns.get(dir) === settled) this.#indexTurns.delete(dir);
    });
    return next;
  }

  async #rewriteIndex(dir: string, add: Descriptor[]): Promise<void> {
    const path = join(dir, 'index.json');
    let index: ImageIndex = imageIndex([]);
    try {
      index = JSON.parse(await readFile(path, 'utf8')) as ImageIndex;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new GatehouseError('STORE_ERROR', `cannot read the OCI index ${path}`, { cause: e });
      }
    }
    const tags = new Set(add.map((d) => d.annotations?.[REF_NAME]).filter((t) => t !== undefined));
    // A tag names one manifest: an older manifest with the same tag loses the tag but stays reachable.
    const kept = index.manifests.map((m) => {
      const t = m.annotations?.[REF_NAME];
      return t !== undefined && tags.has(t) ? withoutTag(m) : m;
    });
    const known = new Set(kept.map((m) => m.digest));
    const fresh = add.filter((d) => !known.has(d.digest));
    // A manifest already listed but newly tagged keeps its entry and gains the tag.
    const merged = kept.map((m) => {
      const tagged = add.find((d) => d.digest === m.digest && d.annotations?.[REF_NAME] !== undefined);
      return tagged === undefined || m.annotations?.[REF_NAME] !== undefined
        ? m
        : { ...m, annotations: { ...m.annotations, ...tagged.annotations } };
    });
    index.manifests = [...merged, ...fresh];
    await atomicWrite(path, jsonBytes(index));
  }
}

function withoutTag(d: Descriptor): Descriptor {
  const { annotations, ...rest } = d;
  const { [REF_NAME]: _, ...others } = annotations ?? {};
  return Object.keys(others).length === 0 ? rest : { ...rest, annotations: others };
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
export async function readLayoutIndex(dir: string): Promise<ImageIndex> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
}
