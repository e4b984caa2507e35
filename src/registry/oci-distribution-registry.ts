import { GatehouseError } from '../common/errors.ts';
import {
  attachmentLayer,
  describePlaced,
  isFileBlob,
  noArtifact,
  planPlacement,
  planReferrer,
  readArtifactFiles,
} from './manifests.ts';
import type { OciDistributionClient } from './oci-client.ts';
import { OCI_MANIFEST } from './oci-format.ts';
import { COSIGN_KINDS, cosignTag } from './oci-names.ts';
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

export interface OciDistributionRegistryOptions {
  client: OciDistributionClient;
  /** Repository prefix of promoted artifacts: `<prefix>/<project>`. */
  repositoryPrefix: string;
  /** Repository prefix of quarantined artifacts; never the same as `repositoryPrefix`. */
  quarantinePrefix: string;
}

/** At most this much is read back for an attachment (bundles and SBOMs are far smaller). */
const MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024;
/** At most this much is read back for one artifact file (a triage release re-reads them). */
const MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024;

/**
 * A registry adapter for any OCI distribution registry: blobs first, then the artifact manifest
 * under its tag, then each attachment as an OCI 1.1 referrer (with the `sha256-<hex>` fallback
 * index when the registry has no referrers API) and the signed ones under cosign's
 * `sha256-<hex>.sig` / `.att` tags. Promoted and quarantined artifacts go to different
 * repositories, so that a pull policy on the promoted prefix never sees a quarantined one.
 */
export class OciDistributionRegistry extends PlacingRegistry implements ArtifactRegistry {
  readonly #client: OciDistributionClient;
  readonly #prefix: Record<Area, string>;

  constructor(options: OciDistributionRegistryOptions) {
    super();
    const clean = (p: string): string => p.replace(/^\/+|\/+$/g, '');
    const promoted = clean(options.repositoryPrefix);
    const quarantine = clean(options.quarantinePrefix);
    if (
      promoted === quarantine ||
      promoted.startsWith(`${quarantine}/`) ||
      quarantine.startsWith(`${promoted}/`)
    ) {
      throw new GatehouseError('BAD_CONFIG', 'the quarantine prefix must be apart from the promoted prefix', {
        where: 'registry.quarantinePrefix',
      });
    }
    this.#client = options.client;
    this.#prefix = { promoted, quarantine };
  }

  /** The repository of a project's area, e.g. `gatehouse/promoted/hello-app`. */
  repository(area: Area, project: string): string {
    const prefix = this.#prefix[area];
    return prefix === '' ? project : `${prefix}/${project}`;
  }

  repositoryUri(area: Area, project: string): string {
    return `oci://${this.#client.host}/${this.repository(area, project)}`;
  }

  protected override async place(area: Area, request: PlacementRequest): Promise<Placement> {
    const plan = planPlacement(request);
    const repo = this.repository(area, request.project);
    const c = this.#client;
    const pushed = new Set<string>();
    for (const b of plan.blobs) {
      if (pushed.has(b.descriptor.digest)) continue;
      if (isFileBlob(b)) await c.pushBlobFile(repo, b.path, b.descriptor);
      else await c.pushBlob(repo, b.bytes, b.descriptor.mediaType);
      pushed.add(b.descriptor.digest);
    }
    const artifactDigest = plan.artifact.descriptor.digest;
    // By digest first, then the tag: the tag only ever names a complete manifest.
    await c.putManifest(repo, artifactDigest, plan.artifact.bytes, OCI_MANIFEST);
    const referrers: Placement['referrers'] = [];
    for (const r of plan.referrers) {
      const d = await c.pushReferrer(repo, artifactDigest, r.manifest.bytes, r.artifactType, r.annotations);
      referrers.push({ artifactType: r.artifactType, digest: d.digest });
    }
    for (const s of plan.cosign) await c.putManifest(repo, s.tag, s.manifest.bytes, OCI_MANIFEST);
    await c.putManifest(repo, request.tag, plan.artifact.bytes, OCI_MANIFEST);
    return {
      area,
      reference: `${c.host}/${repo}:${request.tag}@${artifactDigest}`,
      manifestDigest: artifactDigest,
      referrers,
      cosignTags: plan.cosign.map((s) => s.tag),
    };
  }

  async inspect(area: Area, project: string, reference: string): Promise<PlacedArtifact | undefined> {
    const repo = this.repository(area, project);
    const m = await this.#client.getManifest(repo, reference);
    if (m === undefined) return undefined;
    const { manifests } = await this.#client.referrers(repo, m.digest);
    const cosignTags: string[] = [];
    for (const kind of COSIGN_KINDS) {
      const tag = cosignTag(m.digest, kind);
      if ((await this.#client.manifestDigest(repo, tag)) !== undefined) cosignTags.push(tag);
    }
    return describePlaced(m.bytes, m.digest, manifests, cosignTags, `${repo}@${m.digest}`);
  }

  async attachment(area: Area, project: string, referrerDigest: string): Promise<Uint8Array> {
    const repo = this.repository(area, project);
    const m = await this.#client.getManifest(repo, referrerDigest);
    const layer = attachmentLayer(m?.bytes, referrerDigest, repo, `${repo}@${referrerDigest}`);
    return this.#client.getBlob(repo, layer.digest, MAX_ATTACHMENT_BYTES);
  }

  async files(area: Area, project: string, reference: string, dir: string): Promise<ArtifactFile[]> {
    const repo = this.repository(area, project);
    const m = await this.#client.getManifest(repo, reference);
    if (m === undefined) throw noArtifact(reference, area, repo);
    // The download is streamed to the file and refused if its bytes do not hash to the layer's digest.
    return readArtifactFiles(m.bytes, `${repo}@${m.digest}`, dir, (l, dest) =>
      this.#client.getBlobToFile(repo, l.digest, dest, MAX_FILE_BYTES),
    );
  }

  async attach(
    area: Area,
    project: string,
    manifestDigest: string,
    attachment: Attachment,
  ): Promise<{ artifactType: string; digest: string }> {
    const repo = this.repository(area, project);
    const m = await this.#client.getManifest(repo, manifestDigest);
    if (m === undefined || m.digest !== manifestDigest) throw noArtifact(manifestDigest, area, repo);
    const plan = planReferrer({ digest: m.digest, size: m.bytes.byteLength }, attachment);
    for (const b of plan.blobs) await this.#client.pushBlob(repo, b.bytes, b.descriptor.mediaType);
    const d = await this.#client.pushReferrer(
      repo,
      m.digest,
      plan.manifest.bytes,
      attachment.artifactType,
      attachment.annotations,
    );
    return { artifactType: attachment.artifactType, digest: d.digest };
  }
}
