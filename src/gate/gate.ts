import { randomUUID } from 'node:crypto';
import type { AttestationClaims } from '../attestation/token.ts';
import { verifyProofOfPossession } from '../attestation/token.ts';
import { canonicalJson, fromBase64, sha256, sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { PolicyEngine } from '../policy/policy-engine.ts';
import { type Suppressed, sbomCreatedAt, sourceFactsOf } from '../policy/policy-engine.ts';
import type { ArtifactFile, ArtifactRegistry, Attachment, Placement } from '../registry/registry.ts';
import type { Component } from '../sbom/model.ts';
import { readSbom, sbomAttestationTypes } from '../sbom/read.ts';
import { buildBundle } from '../signing/bundle.ts';
import type { InternalCa } from '../signing/ca.ts';
import { type Envelope, signEnvelope } from '../signing/dsse.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import {
  INTOTO_PAYLOAD_TYPE,
  makeStatement,
  SLSA_PROVENANCE_V1,
  slsaProvenance,
  statementPayload,
} from '../signing/intoto.ts';
import { SLSA_VSA_V1, verificationSummary } from '../signing/vsa.ts';
import type { SourceFacts, SourceVerification } from '../source/source-provider.ts';
import type { DecisionRecord, Store } from '../store/store.ts';
import { decisionEntryBody, dsseEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';
import { type MatchResult, matchVulnerabilities } from '../vuln/match.ts';
import type { CurrentVulnIndex } from '../vuln/vuln-index.ts';
import type { GateReason, GateResult, Submission, SubmitRequest } from './submission.ts';

/** How long after signing a runner's submission proof is accepted, and the clock skew allowed. */
export const PROOF_MAX_AGE_SECONDS = 300;
const PROOF_CLOCK_SKEW_SECONDS = 60;

/** Media and artifact types of what a promoted artifact carries. */
export const MEDIA = {
  bundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  decision: 'application/vnd.gatehouse.decision.v1+json',
} as const;

export interface GateOptions {
  store: Store;
  orchestrator: Orchestrator;
  policy: PolicyEngine;
  /** Digest of the policy `policy` enforces, recorded on refusals decided before it runs. */
  policyDigest: string;
  ca: InternalCa;
  log: TransparencyLog;
  registry: ArtifactRegistry;
  /** Verifies an attestation token for a job; throws a TOKEN_* GatehouseError. */
  verifyToken: (token: string | undefined, jobId: string) => Promise<AttestationClaims>;
  /** Revokes a verified token so that it is used once. */
  revokeToken: (claims: AttestationClaims) => Promise<void>;
  issuer: string;
  identityBase: string;
  certValidityMinutes: number;
  /**
   * Re-derives a submission's source facts from the repository itself (src/source
   * `verifySubmittedSource`); absent: source origin is not checked and not a policy fact.
   */
  verifySource?: (facts: SourceFacts, project: string) => Promise<SourceVerification>;
  /**
   * RFC 3161 time-stamping of a signature (src/signing/rfc3161.ts); absent: bundles carry only the
   * log's signed entry timestamp as trusted time.
   */
  timestamp?: (signature: Uint8Array) => Promise<Uint8Array>;
  /**
   * The vulnerability database in memory, kept current (src/vuln/live-index.ts); absent: one store
   * query per component's package.
   */
  vulnIndex?: CurrentVulnIndex;
}

/** The build identity (certificate SAN) of a project. */
export function buildIdentity(identityBase: string, project: string): string {
  return `${identityBase.replace(/\/+$/, '')}/projects/${project}`;
}

/**
 * What the gate verified about a build: the runner's submission (not the artifact bytes), the
 * attestation token's claims that the provenance cites, the components, and the source facts it
 * re-derived. An allowed build is signed from it at once; a refused one is held (in the store) so
 * that a triage release signs exactly the same statements.
 */
export interface HeldBuild {
  submission: Omit<Submission, 'steps'>;
  attestation: { tokenId: string; evidenceTypes: string[]; pcrs: Record<string, string> };
  components: Component[];
  source?: SourceVerification;
  /** Manifest digest of the artifact in the quarantine area (refused builds only). */
  quarantineManifest?: string;
}

/** The security role's release of a refused artifact, recorded in the VSA it is signed with. */
export interface ReleaseNote {
  triageId: string;
  /** The refusal being overridden. */
  decisionId: string;
  /** Key id of the security key that signed the act. */
  actor: string;
  reason: string;
  /** Digest of the policy that refused the artifact. */
  policyDigest: string;
  /** Log index of the triage decision entry. */
  logIndex: number;
}

/** The three signed bundles of an approved artifact. */
export interface SignedBuild {
  bundle: Record<string, unknown>;
  sbomBundle: Record<string, unknown>;
  vsaBundle: Record<string, unknown>;
}

/** What a triage release produced: where the artifact now is, and its bundles. */
export interface ReleaseResult extends SignedBuild {
  placement: Placement;
}

/** Artifact type of a triage record attached to the quarantined artifact. */
export const TRIAGE_ARTIFACT_TYPE = 'application/vnd.gatehouse.triage.v1+json';

/**
 * The gate: verifies everything a runner hands in (token, proof of possession, outputs, SBOM),
 * asks the central policy, logs the decision whatever it is, and only then signs and promotes.
 * Anything that cannot be checked is a deny with its reason: the gate fails closed.
 */
export class Gate {
  readonly #o: GateOptions;

  constructor(options: GateOptions) {
    this.#o = options;
  }

  /**
   * Decide a submission.
   * @throws GatehouseError NOT_FOUND (no such job), CONFLICT (the job is not waiting for the gate)
   */
  async decide(request: SubmitRequest): Promise<GateResult> {
    const o = this.#o;
    const { submission } = request;
    const job = await o.orchestrator.get(submission.jobId);
    if (job.state !== 'running') {
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; only a running job can be submitted`,
      );
    }
    await o.orchestrator.transition(job.id, 'submitted', { steps: submission.steps });

    const refusals: GateReason[] = [];
    let claims: AttestationClaims | undefined;
    let files: ArtifactFile[] = [];
    let components: Component[] | undefined;
    try {
      claims = await o.verifyToken(request.token, job.id);
      verifyProofOfPossession(request.proof, claims, sha256(canonicalJson(submission)));
      await this.#checkProofFresh(submission);
      if (submission.project !== job.project) {
        throw new GatehouseError(
          'BAD_INPUT',
          `submission names project ${submission.project}, the job is for ${job.project}`,
        );
      }
      files = checkArtifacts(request);
      components = readSbom(submission.sbom, 'submission.sbom').components;
    } catch (e) {
      // Verification failures are decisions too: a deny, logged like any other.
      refusals.push({ rule: refusalRule(e), action: 'deny', message: describeError(e) });
    }

    // Source origin, re-derived from the repository, never taken from the runner's report. A
    // repository's central protection is enforced here; the facts also go to the policy.
    let source: SourceVerification | undefined;
    if (refusals.length === 0 && o.verifySource !== undefined) {
      source = await o.verifySource(submission.source, job.project);
      for (const v of source.violations) {
        refusals.push({
          rule: 'source-protection',
          action: 'deny',
          message: v.message,
          requirement: v.requirement,
        });
      }
    }

    let outcome: GateResult['outcome'] = 'deny';
    let policyDigest = '';
    let reasons: GateReason[] = refusals;
    let warnings: GateReason[] = [];
    let suppressed: Suppressed[] = [];
    if (refusals.length === 0 && claims !== undefined && components !== undefined) {
      let matched: MatchResult | undefined;
      try {
        matched = await matchVulnerabilities(components, o.vulnIndex ?? o.store.vulns);
      } catch {
        matched = undefined; // the engine denies when a rule lacks its facts
      }
      const createdAtOfSbom = sbomCreatedAt(submission.sbom);
      const decision = await o.policy.evaluate({
        project: job.project,
        components,
        ...(matched === undefined ? {} : { findings: matched.findings, unmatched: matched.unmatched }),
        attestation: { verified: true, evidenceTypes: claims.gatehouse.evidence_types },
        ...(source === undefined ? {} : { source: sourceFactsOf(source) }),
        // An attested ephemeral runner with provenance signed by the control plane (docs/policy.md).
        build: { slsaBuildLevel: 3 },
        ...(createdAtOfSbom === undefined ? {} : { sbom: { createdAt: createdAtOfSbom } }),
        subjects: submission.subjects.map((s) => s.name),
      });
      outcome = decision.outcome;
      policyDigest = decision.policyDigest;
      reasons = decision.reasons.map((r) => ({ ...r }));
      warnings = decision.warnings.map((r) => ({ ...r }));
      suppressed = decision.suppressed ?? [];
    } else {
      policyDigest = o.policyDigest;
    }

    const decisionId = `dec-${randomUUID()}`;
    const createdAt = new Date().toISOString();
    const subjects = submission.subjects.map((s) => ({ name: s.name, sha256: s.sha256 }));
    const decisionDoc = {
      decisionId,
      jobId: job.id,
      project: job.project,
      outcome,
      policyDigest,
      subjects,
      reasons,
      warnings,
      // What VEX statements and policy exceptions set aside, with who and why.
      ...(suppressed.length === 0 ? {} : { suppressed }),
      timestamp: createdAt,
      ...(source === undefined ? {} : { source }),
      ...(claims === undefined
        ? {}
        : { attestation: { tokenId: claims.jti, evidenceTypes: claims.gatehouse.evidence_types } }),
    };
    const logged = await o.log.append(decisionEntryBody(decisionDoc));
    await o.store.decisions.create({
      id: decisionId,
      jobId: job.id,
      project: job.project,
      outcome,
      policyDigest,
      subjects,
      reasons: [...reasons, ...warnings],
      createdAt,
      logIndex: logged.index,
    });
    // Promoted artifacts are evaluated again when the vulnerability database changes.
    if (outcome === 'allow' && components !== undefined)
      await o.store.policies.keepArtifactSbom({
        decisionId,
        project: job.project,
        components: JSON.stringify(components),
        subjects,
        createdAt,
      });
    if (claims !== undefined) await o.revokeToken(claims);

    const result: Omit<GateResult, 'placement'> = {
      jobId: job.id,
      decisionId,
      outcome,
      policyDigest,
      reasons,
      warnings,
      logIndex: logged.index,
    };
    const decisionAttachment: Attachment = {
      artifactType: MEDIA.decision,
      mediaType: MEDIA.decision,
      bytes: new TextEncoder().encode(JSON.stringify({ ...decisionDoc, logIndex: logged.index })),
    };
    const sbomAttachment: Attachment = {
      artifactType: sbomAttestationTypes(submission.sbom).mediaType,
      mediaType: sbomAttestationTypes(submission.sbom).mediaType,
      bytes: new TextEncoder().encode(JSON.stringify(submission.sbom)),
    };

    try {
      if (outcome !== 'allow' || claims === undefined) {
        const placement = await o.registry.quarantine({
          project: job.project,
          tag: job.id,
          files,
          attachments: components === undefined ? [decisionAttachment] : [sbomAttachment, decisionAttachment],
          annotations: { 'dev.gatehouse.decision': outcome },
        });
        // Only a build whose submission verified can ever be released: keep what the gate
        // verified, so that a release signs exactly that and nothing the runner says later.
        if (claims !== undefined && components !== undefined)
          await o.store.policies.holdBuild({
            decisionId,
            project: job.project,
            facts: JSON.stringify({
              ...heldBuildOf(submission, claims, components, source),
              quarantineManifest: placement.manifestDigest,
            } satisfies HeldBuild),
            createdAt,
          });
        await o.orchestrator.transition(job.id, outcome === 'quarantine' ? 'quarantined' : 'denied', {
          result: { decisionId, outcome, placement: placement.reference },
        });
        return { ...result, placement };
      }

      const held = heldBuildOf(submission, claims, components ?? [], source);
      const signed = await signBuild(o, held, { policyDigest, at: createdAt });
      const placement = await promoteSigned(o.registry, {
        project: job.project,
        tag: job.id,
        files,
        sbom: submission.sbom,
        signed,
        records: [sbomAttachment, decisionAttachment],
        annotations: { 'dev.gatehouse.decision': outcome },
      });
      await o.orchestrator.transition(job.id, 'allowed', {
        result: { decisionId, outcome, placement: placement.reference },
      });
      return { ...result, ...signed, placement };
    } catch (e) {
      await o.orchestrator.transition(job.id, 'failed', { result: { decisionId, error: describeError(e) } });
      throw e;
    }
  }

  /**
   * Release a refused artifact on the security role's word: sign the build the gate held for the
   * decision exactly as an allowed build is signed (fresh leaf, DSSE, log entries, bundles, with the
   * release in the VSA), promote its files from the quarantine area to the promoted area, and mark
   * the quarantined copy released.
   * @throws GatehouseError NOT_FOUND (the quarantined artifact is gone), SUBJECT_MISMATCH (its files
   *   are not the decision's subjects)
   */
  async release(decision: DecisionRecord, held: HeldBuild, note: ReleaseNote): Promise<ReleaseResult> {
    const o = this.#o;
    const reference = held.quarantineManifest ?? decision.jobId;
    const files = await o.registry.files('quarantine', decision.project, reference);
    // The bytes promoted must be exactly the subjects the decision logged, one for one.
    const want = new Map(decision.subjects.map((s) => [s.name, s.sha256]));
    if (files.length !== want.size || files.some((f) => want.get(f.name) !== f.sha256))
      throw new GatehouseError(
        'SUBJECT_MISMATCH',
        `the quarantined artifact ${reference} does not hold the subjects of decision ${decision.id}`,
      );
    const at = new Date().toISOString();
    const signed = await signBuild(o, held, { policyDigest: decision.policyDigest, at, release: note });
    const record = { ...note, kind: 'triage', action: 'release', project: decision.project, timestamp: at };
    const placement = await promoteSigned(o.registry, {
      project: decision.project,
      tag: decision.jobId,
      files,
      sbom: held.submission.sbom,
      signed,
      records: [
        {
          artifactType: sbomAttestationTypes(held.submission.sbom).mediaType,
          mediaType: sbomAttestationTypes(held.submission.sbom).mediaType,
          bytes: jsonBytes(held.submission.sbom),
        },
        { artifactType: MEDIA.decision, mediaType: MEDIA.decision, bytes: jsonBytes(record) },
      ],
      annotations: { 'dev.gatehouse.decision': 'allow', 'dev.gatehouse.release': note.triageId },
    });
    await this.markTriaged(decision, { ...record, promoted: placement.reference }, held.quarantineManifest);
    if (held.components.length > 0 || decision.subjects.length > 0)
      await o.store.policies.keepArtifactSbom({
        decisionId: decision.id,
        project: decision.project,
        components: JSON.stringify(held.components),
        subjects: decision.subjects,
        createdAt: at,
      });
    return { ...signed, placement };
  }

  /**
   * Attach a triage record to the quarantined artifact (released or rejected); the artifact itself
   * stays where it is. Without a quarantined copy (nothing was placed) there is nothing to mark.
   */
  async markTriaged(
    decision: DecisionRecord,
    record: Record<string, unknown>,
    manifestDigest?: string,
  ): Promise<void> {
    const o = this.#o;
    const digest =
      manifestDigest ??
      (await o.registry.inspect('quarantine', decision.project, decision.jobId))?.manifestDigest;
    if (digest === undefined) return;
    await o.registry.attach('quarantine', decision.project, digest, {
      artifactType: TRIAGE_ARTIFACT_TYPE,
      mediaType: TRIAGE_ARTIFACT_TYPE,
      bytes: jsonBytes(record),
      annotations: { 'dev.gatehouse.triage': String(record.action ?? '') },
    });
  }

  /**
   * A runner's signed submission is single-use and fresh: its `proof.jti` is accepted once (kept
   * with the revoked token ids until it could no longer be fresh), and it must have been signed
   * within PROOF_MAX_AGE_SECONDS of now. A captured request cannot be replayed later.
   */
  async #checkProofFresh(submission: Submission): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const { jti, iat } = submission.proof;
    if (iat > now + PROOF_CLOCK_SKEW_SECONDS || now - iat > PROOF_MAX_AGE_SECONDS) {
      throw new GatehouseError(
        'PROOF_OF_POSSESSION_FAILED',
        `the submission proof is stale: signed at ${new Date(iat * 1000).toISOString()}, accepted for ${PROOF_MAX_AGE_SECONDS} s`,
      );
    }
    const id = `proof:${jti}`;
    if (await this.#o.store.tokens.isRevoked(id)) {
      throw new GatehouseError('PROOF_OF_POSSESSION_FAILED', 'the submission proof was already used');
    }
    await this.#o.store.tokens.revoke(id, iat + PROOF_MAX_AGE_SECONDS + PROOF_CLOCK_SKEW_SECONDS);
  }
}

/** The facts the gate signs, from a verified submission. */
function heldBuildOf(
  submission: Submission,
  claims: AttestationClaims,
  components: Component[],
  source: SourceVerification | undefined,
): HeldBuild {
  const { steps: _steps, ...rest } = submission;
  return {
    submission: rest,
    attestation: {
      tokenId: claims.jti,
      evidenceTypes: claims.gatehouse.evidence_types,
      pcrs: claims.gatehouse.pcrs,
    },
    components,
    ...(source === undefined ? {} : { source }),
  };
}

/** What signing needs from the gate's wiring. */
type SigningDeps = Pick<
  GateOptions,
  'ca' | 'log' | 'registry' | 'issuer' | 'identityBase' | 'certValidityMinutes' | 'timestamp'
>;

/**
 * The one signing path of an approved artifact, for the gate's allow and for a triage release:
 * issue a leaf for the build identity, sign the provenance, the SBOM attestation and the decision
 * (a VSA naming the policy digest, the two attestations it rests on and, for a release, who
 * released it and why), log each, and bundle each.
 */
export async function signBuild(
  o: SigningDeps,
  held: HeldBuild,
  decided: { policyDigest: string; at: string; release?: ReleaseNote },
): Promise<SignedBuild> {
  const { submission } = held;
  const base = o.identityBase.replace(/\/+$/, '');
  const identity = buildIdentity(o.identityBase, submission.project);
  const leafKey = EphemeralSigner.generate();
  const source = submission.source;
  const certificatePem = await o.ca.issueLeaf({
    publicKeySpki: leafKey.publicKeySpki(),
    identity,
    issuer: o.issuer,
    validityMinutes: o.certValidityMinutes,
    extensions: {
      runnerEnvironment: 'gatehouse-ephemeral',
      sourceRepositoryUri: source.uri,
      ...(source.commit === undefined ? {} : { sourceRepositoryDigest: source.commit }),
      ...(source.ref === undefined ? {} : { sourceRepositoryRef: source.ref }),
      buildConfigUri: `${source.uri}/gatehouse.yaml`,
      buildConfigDigest: submission.build.sandboxProfileDigest,
      runInvocationUri: `${base}/jobs/${submission.jobId}`,
      buildSignerUri: `${base}/runners/bubblewrap`,
    },
  });
  const subjects = submission.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } }));
  const provenance = slsaProvenance({
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
      attestation: held.attestation,
      // The origin facts the gate established from the repository (src/source).
      ...(held.source === undefined ? {} : { sourceVerification: held.source }),
    },
    resolvedDependencies: [
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
    ],
    builderId: `${base}/runners/bubblewrap`,
    invocationId: submission.jobId,
    startedOn: new Date(submission.build.startedOn),
    finishedOn: new Date(submission.build.finishedOn),
  });
  const bundle = await signStatement(
    o,
    makeStatement(subjects, SLSA_PROVENANCE_V1, provenance),
    leafKey,
    certificatePem,
  );
  const sbomBundle = await signStatement(
    o,
    makeStatement(subjects, sbomAttestationTypes(submission.sbom).predicateType, submission.sbom),
    leafKey,
    certificatePem,
  );
  // The decision itself, as a VSA naming the policy digest and the two attestations it rests on.
  const vsa = verificationSummary({
    verifierId: `${base}/gate`,
    timeVerified: decided.at,
    resourceUri: o.registry.repositoryUri('promoted', submission.project),
    policyUri: `${base}/policies/sha256:${decided.policyDigest}`,
    policyDigest: decided.policyDigest,
    inputAttestations: [bundle, sbomBundle].map((b) => ({
      uri: `${base}/log/entries/${bundleLogIndex(b)}`,
      sha256: sha256Hex(jsonBytes(b)),
    })),
    passed: true,
    evidenceTypes: held.attestation.evidenceTypes,
    ...(decided.release === undefined
      ? {}
      : {
          release: {
            ...decided.release,
            uri: `${base}/log/entries/${decided.release.logIndex}`,
          },
        }),
  });
  const vsaBundle = await signStatement(
    o,
    makeStatement(subjects, SLSA_VSA_V1, vsa),
    leafKey,
    certificatePem,
  );
  return { bundle, sbomBundle, vsaBundle };
}

/** Promote an approved artifact with its three bundles and its records (SBOM, decision). */
async function promoteSigned(
  registry: ArtifactRegistry,
  p: {
    project: string;
    tag: string;
    files: ArtifactFile[];
    sbom: Record<string, unknown>;
    signed: SignedBuild;
    records: Attachment[];
    annotations: Record<string, string>;
  },
): Promise<Placement> {
  return registry.promote({
    project: p.project,
    tag: p.tag,
    files: p.files,
    attachments: [
      {
        artifactType: MEDIA.bundle,
        mediaType: MEDIA.bundle,
        bytes: jsonBytes(p.signed.bundle),
        annotations: { 'dev.sigstore.bundle.predicateType': SLSA_PROVENANCE_V1 },
        cosign: ['sig', 'att'],
      },
      {
        artifactType: MEDIA.bundle,
        mediaType: MEDIA.bundle,
        bytes: jsonBytes(p.signed.sbomBundle),
        annotations: { 'dev.sigstore.bundle.predicateType': sbomAttestationTypes(p.sbom).predicateType },
        cosign: ['att'],
      },
      {
        artifactType: MEDIA.bundle,
        mediaType: MEDIA.bundle,
        bytes: jsonBytes(p.signed.vsaBundle),
        annotations: { 'dev.sigstore.bundle.predicateType': SLSA_VSA_V1 },
        cosign: ['att'],
      },
      ...p.records,
    ],
    annotations: p.annotations,
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
  const proof = await o.log.inclusionProof(entry.index);
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

function refusalRule(e: unknown): string {
  if (
    isGatehouseError(e, 'TOKEN_MISSING', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'TOKEN_WRONG_JOB', 'TOKEN_REVOKED')
  ) {
    return 'attestation-token';
  }
  if (isGatehouseError(e, 'PROOF_OF_POSSESSION_FAILED')) return 'proof-of-possession';
  if (isGatehouseError(e, 'BAD_SBOM')) return 'sbom';
  if (isGatehouseError(e, 'SUBJECT_MISMATCH')) return 'artifact-digest';
  return 'submission';
}

/** Every subject has exactly one artifact whose bytes hash to its digest, and nothing else is sent. */
function checkArtifacts(request: SubmitRequest): ArtifactFile[] {
  const { subjects } = request.submission;
  if (subjects.length === 0) throw new GatehouseError('SUBJECT_MISMATCH', 'the submission names no outputs');
  const byName = new Map(request.artifacts.map((a) => [a.name, a]));
  if (byName.size !== request.artifacts.length || request.artifacts.length !== subjects.length) {
    throw new GatehouseError('SUBJECT_MISMATCH', 'the artifacts sent do not match the subjects one for one');
  }
  return subjects.map((s) => {
    const a = byName.get(s.name);
    if (a === undefined)
      throw new GatehouseError('SUBJECT_MISMATCH', `no artifact sent for subject ${s.name}`);
    const bytes = fromBase64(a.content);
    const digest = sha256Hex(bytes);
    if (digest !== s.sha256) {
      throw new GatehouseError(
        'SUBJECT_MISMATCH',
        `artifact ${s.name} has sha256 ${digest}, the submission says ${s.sha256}`,
      );
    }
    return { name: s.name, sha256: digest, bytes: new Uint8Array(bytes) };
  });
}

/** The log index of a bundle's first tlog entry, as the bundle carries it. */
function bundleLogIndex(bundle: Record<string, unknown>): string {
  const entries = (bundle.verificationMaterial as { tlogEntries?: { logIndex?: unknown }[] } | undefined)
    ?.tlogEntries;
  return String(entries?.[0]?.logIndex ?? 'unknown');
}

function jsonBytes(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}
