/**
 * Deploy-time verification of an artifact in a registry against a deploy policy, built from small
 * named checks run in order: the artifact is not revoked, its bundles are found and each verified
 * on its own, then the verified attestations together must satisfy the policy (required kinds, one
 * signer, the provenance's project, the gate's decision).
 */
import { sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { OciDistributionClient } from '../registry/oci-client.ts';
import { type ImageManifest, OCI_IMAGE_CONFIG, parseImageManifest } from '../registry/oci-format.ts';
import type { RegistryCredentials } from '../registry/registry-auth.ts';
import { parseBundle } from '../signing/bundle.ts';
import { SLSA_PROVENANCE_V1 } from '../signing/intoto.ts';
import type { RevocationList } from '../signing/revocation-list.ts';
import { type ParsedTrustedRoot, parseTrustedRoot } from '../signing/trust-root.ts';
import { type ParsedVsa, parseVsa, SLSA_VSA_V1 } from '../signing/vsa.ts';
import { type BundleDiscovery, type FoundBundle, findBundles } from './bundle-discovery.ts';
import { allowedIdentities, type DeployPolicy, needsGateDecision, parseDuration } from './deploy-policy.ts';
import { clientFor, parseOciReference, type RegistryArtifact } from './oci-reference.ts';
import { revocationCheck } from './revocations.ts';
import { type VerifiedArtifact, verifyArtifactBundle } from './verify.ts';

const SBOM_PREDICATES = ['https://cyclonedx.org/bom', 'https://spdx.dev/Document'];

export type AttestationKind = 'provenance' | 'sbom' | 'vsa';

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
  discovery: BundleDiscovery;
  decision: { policyDigest: string; timeVerified: string; buildLevel: number } | undefined;
}

type ArtifactFile = VerifiedOciArtifact['files'][number];
type GateDecision = NonNullable<VerifiedOciArtifact['decision']>;

/** A bundle that verified on its own, and what it verified as. */
interface VerifiedBundle {
  att: VerifiedAttestation;
  result: VerifiedArtifact;
}

/** The bundles that verified, and why the others did not (` (rejected: …)`, for messages). */
interface BundleResults {
  verified: VerifiedBundle[];
  why: string;
}

/** What every bundle is verified against. */
interface BundleExpectations {
  root: ParsedTrustedRoot;
  policy: DeployPolicy;
  allowed: string[];
  /** SHA-256 of the artifact manifest: the digest the bundle is verified for. */
  manifest: Buffer;
  files: ArtifactFile[];
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

function byKind(verified: readonly VerifiedBundle[], k: AttestationKind): VerifiedBundle[] {
  return verified.filter((v) => v.att.kind === k);
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
  const root = parseTrustedRoot(options.trustedRoot);
  const now = options.now ?? new Date();
  const p = options.policy;

  const artifact: RegistryArtifact = { client, ref, where };
  const manifest = await fetchArtifactManifest(artifact);
  // A runnable image is deployed, and signed, by its manifest digest; a file artifact by its files.
  const image = isRunnableImage(manifest);
  const files = image ? [{ name: ref.repository, sha256: ref.digest.slice(7) }] : artifactFiles(manifest);
  for (const l of manifest.layers) checkRevoked(l.digest);
  const { found, discovery } = await findBundles(artifact);
  const bundles = verifyBundles(found, {
    root,
    policy: p,
    allowed: allowedIdentities(p),
    manifest: Buffer.from(ref.digest.slice(7), 'hex'),
    files,
  });

  checkRequiredAttestations(bundles, p.require, where);
  const first = checkOneSigner(bundles, where);
  const identity = first.result.identity;
  const project = /\/projects\/([^/]+)$/.exec(identity)?.[1];
  checkProvenanceProject(bundles.verified, project, where);
  const decision = needsGateDecision(p) ? checkGateDecision(bundles, p, now, where) : undefined;
  return {
    reference: `${ref.host}/${ref.repository}@${ref.digest}`,
    manifestDigest: ref.digest,
    identity,
    issuer: first.result.issuer,
    project,
    files,
    attestations: bundles.verified.map((v) => v.att),
    discovery,
    decision,
  };
}

/** The artifact's image manifest, which must list at least one file. */
async function fetchArtifactManifest({ client, ref, where }: RegistryArtifact): Promise<ImageManifest> {
  const fetched = await client.getManifest(ref.repository, ref.digest);
  if (fetched === undefined)
    throw new GatehouseError('NOT_FOUND', 'the registry has no such manifest', { where });
  const manifest = parseImageManifest(fetched.bytes, where);
  if (manifest.layers.length === 0) fail('the artifact has no files', where);
  return manifest;
}

/**
 * Whether a manifest is a runnable image (as gatehouse promotes an image output): no
 * artifactType, an image config, and layers that are tar layers rather than titled files.
 */
function isRunnableImage(manifest: ImageManifest): boolean {
  return (
    manifest.artifactType === undefined &&
    manifest.config.mediaType === OCI_IMAGE_CONFIG &&
    manifest.layers.every(
      (l) =>
        /^application\/vnd\.oci\.image\.layer\.v1\.tar(?:\+gzip)?$/.test(l.mediaType) &&
        l.annotations?.['org.opencontainers.image.title'] === undefined,
    )
  );
}

/** The artifact's files: one a layer, named by its title annotation. */
function artifactFiles(manifest: ImageManifest): ArtifactFile[] {
  return manifest.layers.map((l) => ({
    name: l.annotations?.['org.opencontainers.image.title'] ?? '',
    sha256: l.digest.slice(7),
  }));
}

/** Verify each bundle on its own: one that does not verify is set aside with its reason, never trusted. */
function verifyBundles(found: readonly FoundBundle[], expect: BundleExpectations): BundleResults {
  const verified: VerifiedBundle[] = [];
  const rejected: string[] = [];
  for (const f of found) {
    try {
      verified.push(verifyFoundBundle(f, expect));
    } catch (e) {
      rejected.push(`${f.digest.slice(0, 19)}…: ${describeError(e)}`);
    }
  }
  return { verified, why: rejected.length === 0 ? '' : ` (rejected: ${rejected.join('; ')})` };
}

/**
 * One bundle: it verifies for the artifact manifest (which it names as a subject), is signed by an
 * identity the policy allows, and names every file of the artifact.
 * @throws GatehouseError (whatever verification throws), IDENTITY_MISMATCH, SUBJECT_MISMATCH
 */
function verifyFoundBundle(f: FoundBundle, expect: BundleExpectations): VerifiedBundle {
  const bundle = parseBundle(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.bytes)), f.digest);
  const result = verifyArtifactBundle({
    // The statement must name the manifest digest a pod pins, not only its files: a bundle for the
    // same files under another manifest (another config, say) must not verify for this one.
    artifactDigest: expect.manifest,
    bundle,
    trustedRoot: expect.root,
    ...(expect.policy.issuer === undefined ? {} : { issuer: expect.policy.issuer }),
  });
  if (!expect.allowed.includes(result.identity)) {
    throw new GatehouseError(
      'IDENTITY_MISMATCH',
      `signed by '${result.identity}', which the deploy policy does not allow`,
    );
  }
  checkEveryFileIsSubject(result, expect.files);
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

/** @throws GatehouseError SUBJECT_MISMATCH when a file of the artifact is not a subject */
function checkEveryFileIsSubject(result: VerifiedArtifact, files: readonly ArtifactFile[]): void {
  // Every file of the artifact must be a subject, not just the first.
  const subjects = new Set(result.subjects.map((s) => s.digest.sha256));
  const missing = files.find((x) => !subjects.has(x.sha256));
  if (missing !== undefined)
    throw new GatehouseError('SUBJECT_MISMATCH', `file ${missing.name} is not a subject of the attestation`);
}

/** Every kind of attestation the policy requires verified at least once. */
function checkRequiredAttestations(
  bundles: BundleResults,
  require: readonly AttestationKind[],
  where: string,
): void {
  for (const k of require) {
    if (byKind(bundles.verified, k).length === 0) fail(`no verified ${k} attestation${bundles.why}`, where);
  }
}

/** All verified attestations are signed by one identity; returns the first of them. */
function checkOneSigner(bundles: BundleResults, where: string): VerifiedBundle {
  const identities = new Set(bundles.verified.map((v) => v.result.identity));
  if (identities.size > 1)
    fail(`the attestations are signed by different identities: ${[...identities].join(', ')}`, where);
  const [first] = bundles.verified;
  if (first === undefined) fail(`no attestation verified${bundles.why}`, where);
  return first;
}

/** The provenance must name the same project as the identity. */
function checkProvenanceProject(
  verified: readonly VerifiedBundle[],
  project: string | undefined,
  where: string,
): void {
  for (const v of byKind(verified, 'provenance')) {
    const declared = (
      v.result.statement.predicate as { buildDefinition?: { externalParameters?: { project?: unknown } } }
    )?.buildDefinition?.externalParameters?.project;
    if (project !== undefined && declared !== project)
      fail(`the provenance names project '${String(declared)}', the identity '${project}'`, where);
  }
}

/** The gate's verification summary: attached, passed, over this provenance, and as the policy asks. */
function checkGateDecision(bundles: BundleResults, p: DeployPolicy, now: Date, where: string): GateDecision {
  const v = byKind(bundles.verified, 'vsa')[0];
  if (v === undefined)
    fail(`the deploy policy needs the gate's verification summary, and none verified${bundles.why}`, where);
  const vsa = parseVsa(v.result.statement.predicate, `${where} VSA`);
  if (!vsa.passed) fail('the verification summary says the gate did not pass it', where);
  checkVsaInputs(vsa, bundles.verified, where);
  checkBuildLevel(vsa, p, where);
  checkPolicyDigest(vsa, p, where);
  checkDecisionAge(vsa, p, now, where);
  return {
    policyDigest: vsa.policyDigest,
    timeVerified: vsa.timeVerified.toISOString(),
    buildLevel: vsa.buildLevel,
  };
}

/** The summary names the attached provenance (any one of them) among its inputs. */
function checkVsaInputs(vsa: ParsedVsa, verified: readonly VerifiedBundle[], where: string): void {
  const provenanceDigests = byKind(verified, 'provenance').map((x) => x.att.bundleDigest.slice(7));
  if (
    provenanceDigests.length > 0 &&
    !provenanceDigests.some((d) => vsa.inputAttestationDigests.includes(d))
  ) {
    fail('the verification summary does not name the attached provenance among its inputs', where);
  }
}

function checkBuildLevel(vsa: ParsedVsa, p: DeployPolicy, where: string): void {
  if (p.minBuildLevel !== undefined && vsa.buildLevel < p.minBuildLevel) {
    fail(
      `the build is at SLSA Build level ${vsa.buildLevel}, the deploy policy requires ${p.minBuildLevel}`,
      where,
    );
  }
}

function checkPolicyDigest(vsa: ParsedVsa, p: DeployPolicy, where: string): void {
  if (p.policyDigests !== undefined && !p.policyDigests.includes(vsa.policyDigest)) {
    fail(
      `the gate decided under policy sha256:${vsa.policyDigest}, which the deploy policy does not accept`,
      where,
    );
  }
}

/** The decision is no older than the policy's `maxAge`, and not dated in the future. */
function checkDecisionAge(vsa: ParsedVsa, p: DeployPolicy, now: Date, where: string): void {
  if (p.maxAge === undefined) return;
  const age = (now.getTime() - vsa.timeVerified.getTime()) / 1000;
  const max = parseDuration(p.maxAge, 'maxAge');
  if (age > max)
    fail(
      `the gate decided ${Math.floor(age / 86400)} days ago (${vsa.timeVerified.toISOString()}), more than the ${p.maxAge} allowed`,
      where,
    );
  if (age < -300) fail(`the gate decision is dated in the future (${vsa.timeVerified.toISOString()})`, where);
}

/** sha256 of bytes as `sha256:<hex>` (for tests and callers naming bundles). */
export function bundleDigest(bytes: Uint8Array): string {
  return `sha256:${sha256Hex(bytes)}`;
}
