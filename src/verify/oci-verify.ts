import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import { OciDistributionClient } from '../registry/oci-client.ts';
import { type Descriptor, type ImageManifest, parseImageManifest } from '../registry/oci-format.ts';
import { cosignTag } from '../registry/oci-names.ts';
import type { RegistryCredentials } from '../registry/registry-auth.ts';
import { parseBundle } from '../signing/bundle.ts';
import { SLSA_PROVENANCE_V1 } from '../signing/intoto.ts';
import type { RevocationList } from '../signing/revocation-list.ts';
import { type ParsedTrustedRoot, parseTrustedRoot } from '../signing/trust-root.ts';
import { parseVsa, SLSA_VSA_V1 } from '../signing/vsa.ts';
import { type VerifiedArtifact, verifyArtifactBundle } from './verify.ts';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const SBOM_PREDICATES = ['https://cyclonedx.org/bom', 'https://spdx.dev/Document'];
/** Bundles are small; a larger layer is refused rather than read. */
const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;
/** A registry could list thousands of referrers; we read at most this many bundles. */
const MAX_BUNDLES = 32;

export type AttestationKind = 'provenance' | 'sbom' | 'vsa';

/** `HOST[:PORT]/REPO@sha256:HEX`, optionally with `oci://` in front and a tag before the digest. */
export interface OciReference {
  host: string;
  repository: string;
  digest: string;
  tag?: string;
}

const REF_RE =
  /^(?:oci:\/\/)?((?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?)\/([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?@(sha256:[0-9a-f]{64})$/;

/**
 * Parse an image reference pinned by digest. A reference by tag only is refused: a tag can move
 * between verification and pull.
 * @throws GatehouseError BAD_INPUT
 */
export function parseOciReference(ref: string): OciReference {
  const m = REF_RE.exec(ref);
  const host = m?.[1];
  const repository = m?.[2];
  const digest = m?.[4];
  if (host === undefined || repository === undefined || digest === undefined) {
    throw new GatehouseError(
      'BAD_INPUT',
      `'${ref.slice(0, 200)}' is not a registry reference pinned by digest (HOST/REPO@sha256:HEX)`,
    );
  }
  // Without a dot, a port or 'localhost' the first component is a Docker Hub namespace, not a host.
  if (!host.includes('.') && !host.includes(':') && host !== 'localhost') {
    throw new GatehouseError('BAD_INPUT', `'${ref.slice(0, 200)}' names no registry host`);
  }
  return { host, repository, digest, ...(m?.[3] === undefined ? {} : { tag: m[3] }) };
}

const durationRe = /^([0-9]+)(s|m|h|d)$/;
const UNIT = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** Parse `90s`, `15m`, `12h`, `30d` into seconds. */
export function parseDuration(text: string, where: string): number {
  const m = durationRe.exec(text);
  if (m === null)
    throw new GatehouseError('BAD_INPUT', `'${text}' is not a duration like 30d, 12h or 15m`, { where });
  return Number(m[1]) * UNIT[m[2] as keyof typeof UNIT];
}

const deployPolicySchema = z
  .object({
    /** Exact expected certificate identity (SAN URI). */
    identity: z.string().min(1).optional(),
    /** Expected Fulcio issuer extension. */
    issuer: z.string().min(1).optional(),
    /** Allowed projects: the identity must be `<identityBase>/projects/<project>` for one of them. */
    projects: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/))
      .min(1)
      .optional(),
    identityBase: z.url().optional(),
    require: z.array(z.enum(['provenance', 'sbom', 'vsa'])).default(['provenance', 'sbom', 'vsa']),
    /** Lowest SLSA Build level the VSA must state. */
    minBuildLevel: z.number().int().min(0).max(4).optional(),
    /** Oldest acceptable gate decision, e.g. `30d`. */
    maxAge: z.string().regex(durationRe).optional(),
    /** When set, the VSA must name one of these policy digests (hex SHA-256). */
    policyDigests: z
      .array(z.string().regex(/^[0-9a-f]{64}$/))
      .min(1)
      .optional(),
    /** Registries the webhook may contact, by `host[:port]`; `plainHttp` for loopback test registries. */
    registries: z.record(z.string(), z.object({ plainHttp: z.boolean().default(false) }).strict()).optional(),
  })
  .strict();

export type DeployPolicy = z.infer<typeof deployPolicySchema>;

/**
 * Parse a deploy policy document (YAML or JSON); `overrides` (from command-line flags) replace
 * its top-level fields. @throws GatehouseError BAD_POLICY
 */
export function parseDeployPolicy(
  text: string,
  where: string,
  overrides: Record<string, unknown> = {},
): DeployPolicy {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 0 });
  } catch (e) {
    throw new GatehouseError(
      'BAD_POLICY',
      `the deploy policy is not valid YAML: ${(e as Error).message.split('\n')[0]}`,
      {
        where,
        cause: e,
      },
    );
  }
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new GatehouseError('BAD_POLICY', 'the deploy policy is not a mapping', { where });
  }
  const r = deployPolicySchema.safeParse({ ...(raw as Record<string, unknown> | null), ...overrides });
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_POLICY',
      `${issue?.path.join('.') || 'policy'}: ${issue?.message ?? 'invalid'}`,
      { where },
    );
  }
  if (r.data.identity === undefined && r.data.projects === undefined) {
    throw new GatehouseError('BAD_POLICY', 'the deploy policy names neither an identity nor projects', {
      where,
    });
  }
  if (r.data.projects !== undefined && r.data.identityBase === undefined) {
    throw new GatehouseError('BAD_POLICY', 'projects need the identityBase their identities are under', {
      where,
    });
  }
  return r.data;
}

export interface VerifyOciOptions {
  reference: string;
  trustedRoot: unknown;
  policy: DeployPolicy;
  revocations: RevocationList;
  /** A client for the reference's registry; by default one is made from the reference. */
  client?: OciDistributionClient;
  credentials?: RegistryCredentials;
  /** Use plain HTTP to the registry (loopback test registries). */
  plainHttp?: boolean;
  now?: Date;
}

export interface VerifiedAttestation {
  kind: AttestationKind | 'other';
  predicateType: string;
  bundleDigest: string;
  logIndex: number;
  integratedTime: string;
  source: 'referrers' | 'cosign';
}

export interface VerifiedOciArtifact {
  reference: string;
  manifestDigest: string;
  identity: string;
  issuer: string | undefined;
  project: string | undefined;
  files: { name: string; sha256: string }[];
  attestations: VerifiedAttestation[];
  /** Where the bundles were found. */
  discovery: 'referrers-api' | 'referrers-tag' | 'cosign-tags';
  decision: { policyDigest: string; timeVerified: string; buildLevel: number } | undefined;
}

interface FoundBundle {
  bytes: Uint8Array;
  digest: string;
  source: 'referrers' | 'cosign';
}

function kindOf(predicateType: string): AttestationKind | 'other' {
  if (predicateType === SLSA_PROVENANCE_V1) return 'provenance';
  if (predicateType === SLSA_VSA_V1) return 'vsa';
  if (SBOM_PREDICATES.includes(predicateType)) return 'sbom';
  return 'other';
}

function fail(message: string, where: string): never {
  throw new GatehouseError('VERIFICATION_FAILED', message, { where });
}

/** The client for a reference: https unless asked for plain HTTP. */
export function clientFor(
  ref: OciReference,
  options: { plainHttp?: boolean; credentials?: RegistryCredentials },
): OciDistributionClient {
  return new OciDistributionClient({
    baseUrl: `${options.plainHttp === true ? 'http' : 'https'}://${ref.host}`,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    timeoutMs: 15_000,
  });
}

async function bundleLayers(
  client: OciDistributionClient,
  repo: string,
  manifestDigest: string,
  layers: (d: Uint8Array) => Descriptor[],
  source: 'referrers' | 'cosign',
  found: FoundBundle[],
): Promise<void> {
  const m = await client.getManifest(repo, manifestDigest);
  if (m === undefined) return;
  for (const layer of layers(m.bytes)) {
    if (found.length >= MAX_BUNDLES || found.some((f) => f.digest === layer.digest)) continue;
    if (layer.mediaType !== BUNDLE_MEDIA_TYPE || layer.size > MAX_BUNDLE_BYTES) continue;
    found.push({
      bytes: await client.getBlob(repo, layer.digest, MAX_BUNDLE_BYTES),
      digest: layer.digest,
      source,
    });
  }
}

/**
 * Verify an artifact in a registry against a deploy policy.
 * @throws GatehouseError BAD_INPUT (reference), ARTIFACT_REVOKED, NOT_FOUND, VERIFICATION_FAILED,
 *   REGISTRY_ERROR, REGISTRY_AUTH_FAILED, UNREACHABLE
 */
export async function verifyOciArtifact(options: VerifyOciOptions): Promise<VerifiedOciArtifact> {
  const ref = parseOciReference(options.reference);
  const where = `${ref.host}/${ref.repository}@${ref.digest}`;
  const checkRevoked = revocationCheck(options.revocations, where);
  checkRevoked(ref.digest);
  const client =
    options.client ??
    clientFor(ref, {
      ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    });
  const root: ParsedTrustedRoot = parseTrustedRoot(options.trustedRoot);
  const now = options.now ?? new Date();

  const manifest = await fetchArtifactManifest(client, ref, where);
  const files = manifest.layers.map((l) => ({
    name: l.annotations?.['org.opencontainers.image.title'] ?? '',
    sha256: l.digest.slice(7),
  }));
  for (const l of manifest.layers) checkRevoked(l.digest);

  const { found, discovery } = await discoverBundles(client, ref, where);
  const p = options.policy;
  const { verified, rejected } = verifyBundles(found, manifest, files, root, p);
  const why = rejected.length === 0 ? '' : ` (rejected: ${rejected.join('; ')})`;
  const byKind = (k: AttestationKind) => verified.filter((v) => v.att.kind === k);
  for (const k of p.require) {
    if (byKind(k).length === 0) fail(`no verified ${k} attestation${why}`, where);
  }
  const identities = new Set(verified.map((v) => v.result.identity));
  if (identities.size > 1)
    fail(`the attestations are signed by different identities: ${[...identities].join(', ')}`, where);
  const [first] = verified;
  if (first === undefined) fail(`no attestation verified${why}`, where);
  const identity = first.result.identity;
  const project = /\/projects\/([^/]+)$/.exec(identity)?.[1];
  checkProvenanceProject(byKind('provenance'), project, where);
  const decision = needsVsa(p)
    ? checkDecision(byKind('vsa'), byKind('provenance'), p, { now, why, where })
    : undefined;
  return {
    reference: `${ref.host}/${ref.repository}@${ref.digest}`,
    manifestDigest: ref.digest,
    identity,
    issuer: first.result.issuer,
    project,
    files,
    attestations: verified.map((v) => v.att),
    discovery,
    decision,
  };
}

/** A check that a digest is not on the revocation list. @throws GatehouseError ARTIFACT_REVOKED */
function revocationCheck(revocations: RevocationList, where: string): (digest: string) => void {
  const revoked = new Map(revocations.revoked.map((r) => [r.digest, r]));
  return (digest: string): void => {
    const r = revoked.get(digest);
    if (r !== undefined) {
      throw new GatehouseError('ARTIFACT_REVOKED', `${digest} was revoked on ${r.revokedAt}: ${r.reason}`, {
        where,
      });
    }
  };
}

/** The artifact's manifest, which must have files. @throws GatehouseError NOT_FOUND, VERIFICATION_FAILED */
async function fetchArtifactManifest(
  client: OciDistributionClient,
  ref: OciReference,
  where: string,
): Promise<ImageManifest> {
  const fetched = await client.getManifest(ref.repository, ref.digest);
  if (fetched === undefined)
    throw new GatehouseError('NOT_FOUND', 'the registry has no such manifest', { where });
  const manifest = parseImageManifest(fetched.bytes, where);
  if (manifest.layers.length === 0) fail('the artifact has no files', where);
  return manifest;
}

/**
 * Discovery: referrers first (API, or the spec's fallback tag), cosign tags when they give nothing.
 * @throws GatehouseError VERIFICATION_FAILED when neither gives a bundle
 */
async function discoverBundles(
  client: OciDistributionClient,
  ref: OciReference,
  where: string,
): Promise<{ found: FoundBundle[]; discovery: VerifiedOciArtifact['discovery'] }> {
  const found: FoundBundle[] = [];
  const referrers = await client.referrers(ref.repository, ref.digest);
  // Bounded: a hostile index may list thousands of referrers; we look at the first few bundles.
  for (const r of referrers.manifests
    .filter((m) => m.artifactType === BUNDLE_MEDIA_TYPE)
    .slice(0, MAX_BUNDLES)) {
    await bundleLayers(
      client,
      ref.repository,
      r.digest,
      (b) => {
        const m = parseImageManifest(b, `${where} referrer ${r.digest}`);
        // A referrer must point back at this manifest, whatever the index claimed.
        return m.subject?.digest === ref.digest ? m.layers : [];
      },
      'referrers',
      found,
    );
  }
  let discovery: VerifiedOciArtifact['discovery'] =
    referrers.source === 'api' ? 'referrers-api' : 'referrers-tag';
  if (found.length === 0) {
    discovery = 'cosign-tags';
    await cosignBundles(client, ref, where, found);
  }
  if (found.length === 0)
    fail('no signed attestations are attached (neither referrers nor cosign tags)', where);
  return { found, discovery };
}

/** The bundles under cosign's `sha256-<hex>.att` and `.sig` tags, added to `found`. */
async function cosignBundles(
  client: OciDistributionClient,
  ref: OciReference,
  where: string,
  found: FoundBundle[],
): Promise<void> {
  for (const kind of ['att', 'sig'] as const) {
    const tag = cosignTag(ref.digest, kind);
    const digest = await client.manifestDigest(ref.repository, tag);
    if (digest === undefined || !/^sha256:[0-9a-f]{64}$/.test(digest)) continue;
    await bundleLayers(
      client,
      ref.repository,
      digest,
      (b) => parseImageManifest(b, `${where} ${tag}`).layers,
      'cosign',
      found,
    );
  }
}

type Verified = { att: VerifiedAttestation; result: VerifiedArtifact };

/** Each bundle on its own: one that does not verify is set aside with its reason, never trusted. */
function verifyBundles(
  found: FoundBundle[],
  manifest: ImageManifest,
  files: { name: string; sha256: string }[],
  root: ParsedTrustedRoot,
  p: DeployPolicy,
): { verified: Verified[]; rejected: string[] } {
  const expectedIdentities =
    p.identity !== undefined
      ? [p.identity]
      : (p.projects ?? []).map((x) => `${(p.identityBase ?? '').replace(/\/+$/, '')}/projects/${x}`);
  const verified: Verified[] = [];
  const rejected: string[] = [];
  const firstFile = Buffer.from(manifest.layers[0]?.digest.slice(7) ?? '', 'hex');
  for (const f of found) {
    try {
      verified.push(verifyBundle(f, firstFile, files, root, p, expectedIdentities));
    } catch (e) {
      rejected.push(`${f.digest.slice(0, 19)}…: ${describeError(e)}`);
    }
  }
  return { verified, rejected };
}

/** Verify one bundle: its signature, its signer against the policy, every file a subject. */
function verifyBundle(
  f: FoundBundle,
  firstFile: Buffer,
  files: { name: string; sha256: string }[],
  root: ParsedTrustedRoot,
  p: DeployPolicy,
  expectedIdentities: string[],
): Verified {
  const bundle = parseBundle(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.bytes)), f.digest);
  const result = verifyArtifactBundle({
    artifactDigest: firstFile,
    bundle,
    trustedRoot: root,
    ...(p.issuer === undefined ? {} : { issuer: p.issuer }),
  });
  if (!expectedIdentities.includes(result.identity)) {
    throw new GatehouseError(
      'IDENTITY_MISMATCH',
      `signed by '${result.identity}', which the deploy policy does not allow`,
    );
  }
  // Every file of the artifact must be a subject, not just the first.
  const subjects = new Set(result.subjects.map((s) => s.digest.sha256));
  const missing = files.find((x) => !subjects.has(x.sha256));
  if (missing !== undefined)
    throw new GatehouseError('SUBJECT_MISMATCH', `file ${missing.name} is not a subject of the attestation`);
  return {
    result,
    att: {
      kind: kindOf(result.predicateType),
      predicateType: result.predicateType,
      bundleDigest: f.digest,
      logIndex: result.logIndex,
      integratedTime: result.integratedTime.toISOString(),
      source: f.source,
    },
  };
}

/** The provenance must name the same project as the identity. @throws GatehouseError VERIFICATION_FAILED */
function checkProvenanceProject(provenances: Verified[], project: string | undefined, where: string): void {
  for (const v of provenances) {
    const declared = (
      v.result.statement.predicate as { buildDefinition?: { externalParameters?: { project?: unknown } } }
    )?.buildDefinition?.externalParameters?.project;
    if (project !== undefined && declared !== project)
      fail(`the provenance names project '${String(declared)}', the identity '${project}'`, where);
  }
}

/** Whether the deploy policy needs the gate's verification summary. */
function needsVsa(p: DeployPolicy): boolean {
  return (
    p.require.includes('vsa') ||
    p.minBuildLevel !== undefined ||
    p.maxAge !== undefined ||
    p.policyDigests !== undefined
  );
}

/**
 * The gate's decision from its verification summary, checked against the deploy policy.
 * @throws GatehouseError VERIFICATION_FAILED
 */
function checkDecision(
  vsas: Verified[],
  provenances: Verified[],
  p: DeployPolicy,
  at: { now: Date; why: string; where: string },
): NonNullable<VerifiedOciArtifact['decision']> {
  const { why, where } = at;
  const v = vsas[0];
  if (v === undefined)
    fail(`the deploy policy needs the gate's verification summary, and none verified${why}`, where);
  const vsa = parseVsa(v.result.statement.predicate, `${where} VSA`);
  if (!vsa.passed) fail('the verification summary says the gate did not pass it', where);
  const provenanceDigests = provenances.map((x) => x.att.bundleDigest.slice(7));
  if (
    provenanceDigests.length > 0 &&
    !provenanceDigests.some((d) => vsa.inputAttestationDigests.includes(d))
  ) {
    fail('the verification summary does not name the attached provenance among its inputs', where);
  }
  if (p.minBuildLevel !== undefined && vsa.buildLevel < p.minBuildLevel) {
    fail(
      `the build is at SLSA Build level ${vsa.buildLevel}, the deploy policy requires ${p.minBuildLevel}`,
      where,
    );
  }
  if (p.policyDigests !== undefined && !p.policyDigests.includes(vsa.policyDigest)) {
    fail(
      `the gate decided under policy sha256:${vsa.policyDigest}, which the deploy policy does not accept`,
      where,
    );
  }
  if (p.maxAge !== undefined) checkDecisionAge(vsa.timeVerified, p.maxAge, at.now, where);
  return {
    policyDigest: vsa.policyDigest,
    timeVerified: vsa.timeVerified.toISOString(),
    buildLevel: vsa.buildLevel,
  };
}

/** The decision must be no older than `maxAge`, nor dated in the future. @throws GatehouseError VERIFICATION_FAILED */
function checkDecisionAge(timeVerified: Date, maxAge: string, now: Date, where: string): void {
  const age = (now.getTime() - timeVerified.getTime()) / 1000;
  const max = parseDuration(maxAge, 'maxAge');
  if (age > max)
    fail(
      `the gate decided ${Math.floor(age / 86400)} days ago (${timeVerified.toISOString()}), more than the ${maxAge} allowed`,
      where,
    );
  if (age < -300) fail(`the gate decision is dated in the future (${timeVerified.toISOString()})`, where);
}

/** sha256 of bytes as `sha256:<hex>` (for tests and callers naming bundles). */
export function bundleDigest(bytes: Uint8Array): string {
  return `sha256:${sha256Hex(bytes)}`;
}
