/**
 * The one signing path of an approved artifact, for the gate's allow and for a triage release:
 * issue a leaf for the build identity, sign the provenance, the SBOM attestation and the decision
 * (a VSA naming the policy digest, the two attestations it rests on and, for a release, who
 * released it and why), log each, and bundle each.
 */
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { DeployedManifest } from '../registry/registry.ts';
import { sbomAttestationTypes } from '../sbom/read.ts';
import { buildBundle } from '../signing/bundle.ts';
import type { InternalCa } from '../signing/ca.ts';
import {
  attestationLayer,
  type CosignLayerContent,
  hashedRekordBody,
  signatureLayer,
  simpleSigningPayload,
} from '../signing/cosign.ts';
import type { PrecertificateLog } from '../signing/ct.ts';
import { type Envelope, signEnvelope } from '../signing/dsse.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import {
  INTOTO_PAYLOAD_TYPE,
  makeStatement,
  SLSA_PROVENANCE_V1,
  slsaProvenance,
  statementPayload,
} from '../signing/intoto.ts';
import { buildLevelOf, SLSA_VSA_V1, verificationSummary } from '../signing/vsa.ts';
import { dsseEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';
import { type HeldBuild, type ReleaseNote, signedSbomOf } from './held-build.ts';
import { buildIdentity } from './submission.ts';

/** The name of the build log among the provenance's byproducts. */
export const BUILD_LOG_BYPRODUCT = 'build.log';

/** What signing needs: the CA, the log, where artifacts are promoted, and the identity settings. */
export interface SigningDeps {
  ca: InternalCa;
  /** CT logs the leaf's precertificate is submitted to; their SCTs are embedded in the leaf. */
  ctLogs: readonly PrecertificateLog[];
  log: TransparencyLog;
  /** The promoted repository of a project, named in the VSA as the verified resource. */
  repositoryUri: (project: string) => string;
  issuer: string;
  identityBase: string;
  certValidityMinutes: number;
  /**
   * RFC 3161 time-stamping of a signature (src/signing/rfc3161.ts); absent: bundles carry only the
   * log's signed entry timestamp as trusted time.
   */
  timestamp?: (signature: Uint8Array) => Promise<Uint8Array>;
  /**
   * Have the log's witnesses cosign a tree of at least `minSize` entries and return its size
   * (src/tlog/witness-client.ts); absent: the bundle's checkpoint is the log's alone.
   */
  witness?: (minSize: number) => Promise<number>;
}

/** The three signed bundles of an approved artifact. */
export interface SignedBuild {
  bundle: Record<string, unknown>;
  sbomBundle: Record<string, unknown>;
  vsaBundle: Record<string, unknown>;
}

/**
 * What is deployed besides the files: the manifests (artifact or image manifest, image index),
 * planned before signing, and the repository they are promoted to. The statements name each
 * manifest digest, and each gets cosign's signature and attestation layers.
 */
export interface Deployment {
  /** The promoted repository as a reference without scheme, e.g. `registry.example/team/app`. */
  repository: string;
  manifests: DeployedManifest[];
}

/** The bundles of an approved artifact, and the layers of cosign's tags of each deployed manifest. */
export interface SignedPromotion {
  bundles: SignedBuild;
  cosign: { manifestDigest: string; layers: CosignLayerContent[] }[];
}

/** When and under which policy the build was approved, and (for a release) by whom. */
export interface Approval {
  policyDigest: string;
  at: string;
  release?: ReleaseNote;
}

/**
 * Sign, log and bundle the provenance, the SBOM attestation and the VSA of an approved build, each
 * naming the files and the deployed manifests; then sign each manifest in cosign's simple-signing
 * format (logged as a `hashedrekord` entry) and lay out cosign's attestation layers.
 */
export async function signBuild(
  o: SigningDeps,
  held: HeldBuild,
  decided: Approval,
  deployment: Deployment,
): Promise<SignedPromotion> {
  const { submission } = held;
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await issueBuildLeaf(o, held, leafKey);
  // What a pod pins is the manifest digest: the statements name it beside every file, so tools
  // that look attestations up by that digest (cosign, Kyverno, gh attestation) find it a subject.
  const subjects = [
    ...submission.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } })),
    ...deployment.manifests.map((m) => ({
      name: deployment.repository,
      digest: { sha256: hexOf(m.digest) },
    })),
  ];
  const sign = (predicateType: string, predicate: unknown) =>
    signStatement(o, makeStatement(subjects, predicateType, predicate), leafKey, certificatePem);
  const sbom = signedSbomOf(held);
  const sbomPredicateType = sbomAttestationTypes(sbom).predicateType;
  // The provenance and the SBOM attestation do not depend on each other: signed and logged at
  // once, they share a log batch (one write, one checkpoint) instead of waiting for each other's.
  const [bundle, sbomBundle] = await Promise.all([
    sign(SLSA_PROVENANCE_V1, provenanceOf(o, held)),
    sign(sbomPredicateType, sbom),
  ]);
  const vsaBundle = await sign(SLSA_VSA_V1, summaryOf(o, held, decided, [bundle, sbomBundle]));
  const chainPem = o.ca.chainPem();
  const attestations = [
    attestationLayer(bundle, SLSA_PROVENANCE_V1, chainPem),
    attestationLayer(sbomBundle, sbomPredicateType, chainPem),
    attestationLayer(vsaBundle, SLSA_VSA_V1, chainPem),
  ];
  const cosign: SignedPromotion['cosign'] = [];
  for (const m of deployment.manifests) {
    const signature = await signManifest(o, deployment.repository, m.digest, leafKey, certificatePem);
    cosign.push({ manifestDigest: m.digest, layers: [signature, ...attestations] });
  }
  return { bundles: { bundle, sbomBundle, vsaBundle }, cosign };
}

function hexOf(digest: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new GatehouseError('INTERNAL', `the deployed manifest digest '${digest}' is not a sha256 digest`);
  return digest.slice(7);
}

/**
 * cosign's signature of a manifest: a simple-signing payload naming its digest, signed by the
 * build's leaf, logged in the transparency log as a `hashedrekord` entry whose SET is the
 * layer's log bundle.
 */
async function signManifest(
  o: SigningDeps,
  repository: string,
  manifestDigest: string,
  signer: EphemeralSigner,
  certificatePem: string,
): Promise<CosignLayerContent> {
  const payload = simpleSigningPayload(repository, manifestDigest);
  const signature = await signer.sign(payload);
  const body = hashedRekordBody(payload, signature, certificatePem);
  const entry = await o.log.append(body);
  return signatureLayer({
    payload,
    signature,
    certificatePem,
    chainPem: o.ca.chainPem(),
    entry: {
      body,
      integratedTime: entry.integratedTime,
      logIndex: entry.index,
      logId: entry.logId,
      signedEntryTimestamp: entry.inclusionPromise,
    },
  });
}

/** A short-lived leaf for the project's build identity, with the Fulcio-style build extensions. */
function issueBuildLeaf(o: SigningDeps, held: HeldBuild, leafKey: EphemeralSigner): Promise<string> {
  const { submission } = held;
  const base = baseOf(o);
  const source = submission.source;
  return o.ca.issueLeaf(
    {
      publicKeySpki: leafKey.publicKeySpki(),
      identity: buildIdentity(o.identityBase, submission.project),
      issuer: o.issuer,
      validityMinutes: o.certValidityMinutes,
      extensions: {
        runnerEnvironment: runnerEnvironmentOf(held.attestation.evidenceTypes, held.attestation.runnerKind),
        sourceRepositoryUri: source.uri,
        ...sourceOwnerOf(source.uri),
        ...(source.commit === undefined ? {} : { sourceRepositoryDigest: source.commit }),
        ...(source.ref === undefined ? {} : { sourceRepositoryRef: source.ref }),
        buildConfigUri: `${source.uri}/gatehouse.yaml`,
        buildConfigDigest: submission.build.sandboxProfileDigest,
        runInvocationUri: `${base}/jobs/${submission.jobId}`,
        buildSignerUri: builderIdOf(base, held),
      },
    },
    o.ctLogs,
  );
}

/**
 * The owner of a source hosted as `https://HOST/OWNER/REPO` (GitHub, GitLab, Gitea): Fulcio's
 * source-repository-owner extension, which `gh attestation verify --owner` compares. None for
 * any other source (a local repository has no owner to name).
 */
export function sourceOwnerOf(uri: string): { sourceRepositoryOwnerUri?: string } {
  const m = /^(https:\/\/[^/@]+\/[^/]+)\/[^/]+?(?:\.git)?\/?$/.exec(uri);
  return m?.[1] === undefined ? {} : { sourceRepositoryOwnerUri: m[1] };
}

/** The SLSA Provenance v1 predicate of a verified build. */
function provenanceOf(o: SigningDeps, held: HeldBuild): unknown {
  const { submission } = held;
  const base = baseOf(o);
  const source = submission.source;
  return slsaProvenance({
    buildType: `${base}/build-types/sandboxed/v1`,
    externalParameters: {
      project: submission.project,
      source: {
        uri: source.uri,
        ...(source.commit === undefined ? {} : { commit: source.commit }),
        ...(source.ref === undefined ? {} : { ref: source.ref }),
        dirty: source.dirty,
      },
      command: submission.build.command,
    },
    internalParameters: {
      sandboxProfileDigest: submission.build.sandboxProfileDigest,
      slsaBuildLevel: buildLevelOf(held.attestation.evidenceTypes),
      runnerKind: held.attestation.runnerKind ?? 'gatehouse-ephemeral',
      attestation: held.attestation,
      // The origin facts the gate established from the repository (src/source).
      ...(held.source === undefined ? {} : { sourceVerification: held.source }),
    },
    resolvedDependencies: resolvedDependenciesOf(held),
    builderId: builderIdOf(base, held),
    invocationId: submission.jobId,
    startedOn: new Date(submission.build.startedOn),
    finishedOn: new Date(submission.build.finishedOn),
    // The log as the control plane kept it (masked, bounded), served at the job's log URL.
    ...(held.buildLog === undefined
      ? {}
      : {
          byproducts: [
            {
              name: BUILD_LOG_BYPRODUCT,
              uri: `${base}/jobs/${submission.jobId}/log`,
              digest: { sha256: held.buildLog.sha256 },
              mediaType: 'text/plain; charset=utf-8',
              annotations: { size: held.buildLog.size, truncated: held.buildLog.truncated },
            },
          ],
        }),
  });
}

/** The source, every catalogued component and every download of the fetch phase. */
function resolvedDependenciesOf(held: HeldBuild): { uri: string; digest?: Record<string, string> }[] {
  const { submission } = held;
  const source = submission.source;
  return [
    {
      uri:
        source.commit === undefined
          ? source.uri
          : `git+${source.uri}${source.ref === undefined ? '' : `@${source.ref}`}`,
      digest:
        source.commit === undefined
          ? { sha256: source.treeDigest }
          : { gitCommit: source.commit, sha256: source.treeDigest },
    },
    ...held.components.map((c) => ({
      uri: c.purl,
      ...(c.hashes.length === 0
        ? {}
        : {
            digest: Object.fromEntries(
              c.hashes.map((h) => [h.alg.toLowerCase().replace('-', ''), h.content]),
            ),
          }),
    })),
    // What the fetch phase actually downloaded, digested by the agent's egress proxy.
    ...(submission.fetched ?? []).map((f) => ({ uri: f.uri, digest: { sha256: f.digest.sha256 } })),
  ];
}

/** The decision itself, as a VSA naming the policy digest and the two attestations it rests on. */
function summaryOf(
  o: SigningDeps,
  held: HeldBuild,
  decided: Approval,
  inputs: readonly Record<string, unknown>[],
): unknown {
  const base = baseOf(o);
  return verificationSummary({
    verifierId: `${base}/gate`,
    timeVerified: decided.at,
    resourceUri: o.repositoryUri(held.submission.project),
    policyUri: `${base}/policies/sha256:${decided.policyDigest}`,
    policyDigest: decided.policyDigest,
    inputAttestations: inputs.map((b) => ({
      uri: `${base}/log/entries/${bundleLogIndex(b)}`,
      sha256: sha256Hex(jsonBytes(b)),
    })),
    passed: true,
    evidenceTypes: held.attestation.evidenceTypes,
    ...(decided.release === undefined
      ? {}
      : { release: { ...decided.release, uri: `${base}/log/entries/${decided.release.logIndex}` } }),
  });
}

async function signStatement(
  o: SigningDeps,
  statement: ReturnType<typeof makeStatement>,
  signer: EphemeralSigner,
  certificatePem: string,
): Promise<Record<string, unknown>> {
  const envelope: Envelope = await signEnvelope(INTOTO_PAYLOAD_TYPE, statementPayload(statement), signer);
  const body = dsseEntryBody(envelope, certificatePem);
  const entry = await o.log.append(body);
  // With witnesses, the proof is against a tree they cosigned, so the checkpoint in the bundle
  // carries their cosignatures and a verifier can require them offline.
  const treeSize = o.witness === undefined ? undefined : await o.witness(entry.index + 1);
  const proof = await o.log.inclusionProof(entry.index, treeSize);
  const stamp = o.timestamp;
  const rfc3161Timestamps =
    stamp === undefined ? [] : [await stamp(Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'))];
  return buildBundle({
    certificatePem,
    envelope,
    entry: { ...entry, body, proof },
    rfc3161Timestamps,
  }) as unknown as Record<string, unknown>;
}

/**
 * The certificate's runner-environment extension: an ephemeral gatehouse runner, and how it was
 * attested (`tpm` or `software`), so a verifier can tell the two apart from the certificate alone.
 */
export function runnerEnvironmentOf(evidenceTypes: readonly string[], runnerKind?: string): string {
  // A CI platform's runner is named as the platform names it (Fulcio's Runner Environment
  // extension: `github-hosted`, `self-hosted`), never as one of gatehouse's own.
  switch (runnerKind) {
    case 'github-actions-hosted':
      return 'github-hosted';
    case 'gitlab-ci-hosted':
      return 'gitlab-hosted';
    case 'github-actions-self-hosted':
    case 'gitlab-ci-self-hosted':
      return 'self-hosted';
    case 'github-actions-unknown':
    case 'gitlab-ci-unknown':
      return 'unknown';
    default:
      return `gatehouse-ephemeral-${buildLevelOf(evidenceTypes) === 3 ? 'tpm' : 'software'}`;
  }
}

/**
 * The provenance's builder: gatehouse's own ephemeral runner, or the CI platform's runner the
 * agent ran in (its kind from the verified CI token), so that a verifier who trusts one builder
 * does not take a build of the other for it.
 */
function builderIdOf(base: string, held: HeldBuild): string {
  const kind = held.attestation.runnerKind;
  return kind === undefined || kind === 'gatehouse-ephemeral'
    ? `${base}/runners/bubblewrap`
    : `${base}/runners/${kind}`;
}

function baseOf(o: SigningDeps): string {
  return o.identityBase.replace(/\/+$/, '');
}

/** The log index of a bundle's first tlog entry, as the bundle carries it. */
function bundleLogIndex(bundle: Record<string, unknown>): string {
  const entries = (bundle.verificationMaterial as { tlogEntries?: { logIndex?: unknown }[] } | undefined)
    ?.tlogEntries;
  return String(entries?.[0]?.logIndex ?? 'unknown');
}

/** JSON of a value as bytes (bundles, records). */
export function jsonBytes(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}
