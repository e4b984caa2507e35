/**
 * The one signing path of an approved artifact, for the gate's allow and for a triage release:
 * issue a leaf for the build identity, sign the provenance, the SBOM attestation and the decision
 * (a VSA naming the policy digest, the two attestations it rests on and, for a release, who
 * released it and why), log each, and bundle each.
 */
import { sha256Hex } from '../common/encoding.ts';
import { sbomAttestationTypes } from '../sbom/read.ts';
import { buildBundle } from '../signing/bundle.ts';
import type { InternalCa } from '../signing/ca.ts';
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

/** When and under which policy the build was approved, and (for a release) by whom. */
export interface Approval {
  policyDigest: string;
  at: string;
  release?: ReleaseNote;
}

/** Sign, log and bundle the provenance, the SBOM attestation and the VSA of an approved build. */
export async function signBuild(o: SigningDeps, held: HeldBuild, decided: Approval): Promise<SignedBuild> {
  const { submission } = held;
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await issueBuildLeaf(o, held, leafKey);
  const subjects = submission.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } }));
  const sign = (predicateType: string, predicate: unknown) =>
    signStatement(o, makeStatement(subjects, predicateType, predicate), leafKey, certificatePem);
  const sbom = signedSbomOf(held);
  // The provenance and the SBOM attestation do not depend on each other: signed and logged at
  // once, they share a log batch (one write, one checkpoint) instead of waiting for each other's.
  const [bundle, sbomBundle] = await Promise.all([
    sign(SLSA_PROVENANCE_V1, provenanceOf(o, held)),
    sign(sbomAttestationTypes(sbom).predicateType, sbom),
  ]);
  const vsaBundle = await sign(SLSA_VSA_V1, summaryOf(o, held, decided, [bundle, sbomBundle]));
  return { bundle, sbomBundle, vsaBundle };
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
        runnerEnvironment: runnerEnvironmentOf(held.attestation.evidenceTypes),
        sourceRepositoryUri: source.uri,
        ...(source.commit === undefined ? {} : { sourceRepositoryDigest: source.commit }),
        ...(source.ref === undefined ? {} : { sourceRepositoryRef: source.ref }),
        buildConfigUri: `${source.uri}/gatehouse.yaml`,
        buildConfigDigest: submission.build.sandboxProfileDigest,
        runInvocationUri: `${base}/jobs/${submission.jobId}`,
        buildSignerUri: `${base}/runners/bubblewrap`,
      },
    },
    o.ctLogs,
  );
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
      attestation: held.attestation,
      // The origin facts the gate established from the repository (src/source).
      ...(held.source === undefined ? {} : { sourceVerification: held.source }),
    },
    resolvedDependencies: resolvedDependenciesOf(held),
    builderId: `${base}/runners/bubblewrap`,
    invocationId: submission.jobId,
    startedOn: new Date(submission.build.startedOn),
    finishedOn: new Date(submission.build.finishedOn),
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
export function runnerEnvironmentOf(evidenceTypes: readonly string[]): string {
  return `gatehouse-ephemeral-${buildLevelOf(evidenceTypes) === 3 ? 'tpm' : 'software'}`;
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
