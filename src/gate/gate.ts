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
import type { GateReason, GateResult, SubmitRequest } from '../server/control-plane.ts';
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
import type { SourceFacts, SourceVerification } from '../source/source-provider.ts';
import type { Store } from '../store/store.ts';
import { decisionEntryBody, dsseEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';
import { SLSA_VSA_V1, verificationSummary } from '../verify/oci-vsa.ts';
import { type MatchResult, matchVulnerabilities } from '../vuln/match.ts';

/** Media and artifact types of what a promoted artifact carries. */
export const MEDIA = {
  bundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  cyclonedx: 'application/vnd.cyclonedx+json',
  decision: 'application/vnd.gatehouse.decision.v1+json',
} as const;

/** CycloneDX predicate type for in-toto SBOM attestations. */
export const CYCLONEDX_PREDICATE = 'https://cyclonedx.org/bom';

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
}

/** The build identity (certificate SAN) of a project. */
export function buildIdentity(identityBase: string, project: string): string {
  return `${identityBase.replace(/\/+$/, '')}/projects/${project}`;
}

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
        matched = await matchVulnerabilities(components, o.store.vulns);
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
        await o.orchestrator.transition(job.id, outcome === 'quarantine' ? 'quarantined' : 'denied', {
          result: { decisionId, outcome, placement: placement.reference },
        });
        return { ...result, placement };
      }

      const signed = await this.#sign(request, claims, components ?? [], {
        policyDigest,
        at: createdAt,
        ...(source === undefined ? {} : { source }),
      });
      const placement: Placement = await o.registry.promote({
        project: job.project,
        tag: job.id,
        files,
        attachments: [
          {
            artifactType: MEDIA.bundle,
            mediaType: MEDIA.bundle,
            bytes: jsonBytes(signed.bundle),
            annotations: { 'dev.sigstore.bundle.predicateType': SLSA_PROVENANCE_V1 },
            cosign: ['sig', 'att'],
          },
          {
            artifactType: MEDIA.bundle,
            mediaType: MEDIA.bundle,
            bytes: jsonBytes(signed.sbomBundle),
            annotations: {
              'dev.sigstore.bundle.predicateType': sbomAttestationTypes(submission.sbom).predicateType,
            },
            cosign: ['att'],
          },
          {
            artifactType: MEDIA.bundle,
            mediaType: MEDIA.bundle,
            bytes: jsonBytes(signed.vsaBundle),
            annotations: { 'dev.sigstore.bundle.predicateType': SLSA_VSA_V1 },
            cosign: ['att'],
          },
          sbomAttachment,
          decisionAttachment,
        ],
        annotations: { 'dev.gatehouse.decision': outcome },
      });
      await o.orchestrator.transition(job.id, 'allowed', {
        result: { decisionId, outcome, placement: placement.reference },
      });
      return { ...result, bundle: signed.bundle, sbomBundle: signed.sbomBundle, placement };
    } catch (e) {
      await o.orchestrator.transition(job.id, 'failed', { result: { decisionId, error: describeError(e) } });
      throw e;
    }
  }

  /** Issue a leaf for this build, sign provenance and SBOM attestations, log both, bundle both. */
  async #sign(
    request: SubmitRequest,
    claims: AttestationClaims,
    components: Component[],
    decided: { policyDigest: string; at: string; source?: SourceVerification },
  ): Promise<{
    bundle: Record<string, unknown>;
    sbomBundle: Record<string, unknown>;
    vsaBundle: Record<string, unknown>;
  }> {
    const o = this.#o;
    const { submission } = request;
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
        runInvocationUri: `${o.identityBase.replace(/\/+$/, '')}/jobs/${submission.jobId}`,
        buildSignerUri: `${o.identityBase.replace(/\/+$/, '')}/runners/bubblewrap`,
      },
    });
    const subjects = submission.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } }));
    const provenance = slsaProvenance({
      buildType: `${o.identityBase.replace(/\/+$/, '')}/build-types/sandboxed/v1`,
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
        attestation: {
          tokenId: claims.jti,
          evidenceTypes: claims.gatehouse.evidence_types,
          pcrs: claims.gatehouse.pcrs,
        },
        // The origin facts the gate established from the repository (src/source).
        ...(decided.source === undefined ? {} : { sourceVerification: decided.source }),
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
        ...components.map((c) => ({
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
      builderId: `${o.identityBase.replace(/\/+$/, '')}/runners/bubblewrap`,
      invocationId: submission.jobId,
      startedOn: new Date(submission.build.startedOn),
      finishedOn: new Date(submission.build.finishedOn),
    });
    const bundle = await this.#signStatement(
      makeStatement(subjects, SLSA_PROVENANCE_V1, provenance),
      leafKey,
      certificatePem,
    );
    const sbomBundle = await this.#signStatement(
      makeStatement(subjects, sbomAttestationTypes(submission.sbom).predicateType, submission.sbom),
      leafKey,
      certificatePem,
    );
    // The decision itself, as a VSA naming the policy digest and the two attestations it rests on.
    const base = o.identityBase.replace(/\/+$/, '');
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
      evidenceTypes: claims.gatehouse.evidence_types,
    });
    const vsaBundle = await this.#signStatement(
      makeStatement(subjects, SLSA_VSA_V1, vsa),
      leafKey,
      certificatePem,
    );
    return { bundle, sbomBundle, vsaBundle };
  }

  async #signStatement(
    statement: ReturnType<typeof makeStatement>,
    signer: EphemeralSigner,
    certificatePem: string,
  ): Promise<Record<string, unknown>> {
    const envelope: Envelope = await signEnvelope(INTOTO_PAYLOAD_TYPE, statementPayload(statement), signer);
    const body = dsseEntryBody(envelope, certificatePem);
    const entry = await this.#o.log.append(body);
    const proof = await this.#o.log.inclusionProof(entry.index);
    const stamp = this.#o.timestamp;
    const rfc3161Timestamps =
      stamp === undefined ? [] : [await stamp(Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'))];
    return buildBundle({
      certificatePem,
      envelope,
      entry: { ...entry, body, proof },
      rfc3161Timestamps,
    }) as unknown as Record<string, unknown>;
  }
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
