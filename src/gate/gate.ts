import { randomUUID } from 'node:crypto';
import type { AttestationClaims } from '../attestation/token.ts';
import { verifyProofOfPossession } from '../attestation/token.ts';
import { canonicalJson, sha256 } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { PolicyEngine } from '../policy/policy-engine.ts';
import { type Suppressed, sbomCreatedAt, sourceFactsOf } from '../policy/policy-engine.ts';
import type { ProjectRegistry } from '../policy/projects.ts';
import type { AssembledImage } from '../registry/image-assembly.ts';
import type {
  ArtifactFile,
  ArtifactManifestInput,
  ArtifactRegistry,
  Attachment,
  ImagePlacement,
  Placement,
} from '../registry/registry.ts';
import type { ArtifactLimits } from '../sbom/artifact/limits.ts';
import { environmentComponents } from '../sbom/environment.ts';
import type { Component, Sbom } from '../sbom/model.ts';
import { readSbom } from '../sbom/read.ts';
import { toolchainProvides } from '../sbom/reconcile.ts';
import type { InternalCa } from '../signing/ca.ts';
import type { PrecertificateLog } from '../signing/ct.ts';
import { buildLevelOf } from '../signing/vsa.ts';
import type { SourceFacts, SourceVerification } from '../source/source-provider.ts';
import type { BuildLogSummary, DecisionOutcome, JobRecord, Store } from '../store/store.ts';
import { decisionEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';
import { type MatchResult, matchVulnerabilities } from '../vuln/match.ts';
import type { CurrentVulnIndex } from '../vuln/vuln-index.ts';
import {
  checkImageArchive,
  checkProofFresh,
  checkSourceAgainstRegistration,
  checkStagedOutputs,
  refusalRule,
} from './checks.ts';
import { type HeldBuild, heldBuildOf } from './held-build.ts';
import { type JudgedSbom, judgeArtifacts } from './judged-sbom.ts';
import {
  artifactDeployment,
  decisionRecord,
  environmentRecord,
  promoteSigned,
  sbomRecord,
} from './placement.ts';
import {
  type Approval,
  type Deployment,
  type SignedPromotion,
  type SigningDeps,
  signBuild,
} from './sign-build.ts';
import type { OutputStaging } from './staging.ts';
import type { GateReason, GateResult, Submission, SubmitRequest } from './submission.ts';

/**
 * Who verifies attestation tokens and retires them once used: the attestation authority that
 * issued them (src/attestation/authority.ts).
 */
export interface TokenAuthority {
  /** @throws GatehouseError TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_WRONG_JOB, TOKEN_REVOKED */
  verifyToken(token: string | undefined, jobId: string): Promise<AttestationClaims>;
  /** Revoke a verified token until it expires, so that it is used once. */
  revokeClaims(claims: AttestationClaims): Promise<void>;
}

export interface GateOptions {
  store: Store;
  tokens: TokenAuthority;
  /** The central project registrations: where a project's source must come from. */
  projects: ProjectRegistry;
  /** Where the outputs the control plane received wait for the gate. */
  staging: OutputStaging;
  policy: PolicyEngine;
  /** Digest of the policy `policy` enforces, recorded on refusals decided before it runs. */
  policyDigest: string;
  ca: InternalCa;
  /** The CT log(s) every leaf's precertificate goes to before it is issued (SCTs embedded). */
  ctLogs: readonly PrecertificateLog[];
  log: TransparencyLog;
  registry: ArtifactRegistry;
  issuer: string;
  identityBase: string;
  certValidityMinutes: number;
  /**
   * Re-derives a submission's source facts from the repository itself (src/source
   * `verifySubmittedSource`); absent: source origin is not checked and not a policy fact.
   */
  verifySource?: (facts: SourceFacts, project: string) => Promise<SourceVerification>;
  /** RFC 3161 time-stamping of a signature; absent: bundles carry only the log's timestamp. */
  timestamp?: (signature: Uint8Array) => Promise<Uint8Array>;
  /**
   * Have the log's witnesses cosign a tree of at least `minSize` entries; returns its size, whose
   * checkpoint (with the cosignatures) the bundle carries. Absent: no witnesses.
   */
  witness?: (minSize: number) => Promise<number>;
  /**
   * The vulnerability database in memory, kept current (src/vuln/live-index.ts); absent: one store
   * query per component's package.
   */
  vulnIndex?: CurrentVulnIndex;
  /** Deny when the newest vulnerability record is older than this many days (unset: no limit). */
  vulnerabilityDbMaxAgeDays?: number;
  /** Bounds on cataloguing an artifact (src/sbom/artifact/limits.ts); the defaults otherwise. */
  artifactLimits?: Partial<ArtifactLimits>;
  /** Where the cataloguer may keep temporary copies (the system's temporary directory otherwise). */
  catalogTempDir?: string;
}

/**
 * What the gate established about a submission. `refusals` lists what failed; when it is empty,
 * `claims` and `components` are set and the submission verified.
 */
export interface CheckedSubmission {
  submission: Submission;
  claims?: AttestationClaims;
  files: ArtifactFile[];
  /** The image inside the archive, as the gate opened and checked it (image submissions only). */
  image?: AssembledImage;
  /** What the runner declared (its lockfiles before the build), as it signed it. */
  declared?: Sbom;
  /** The build environment's packages, from the SBOM the submission references by digest. */
  environment?: { digest: string; text: string; components: Component[] };
  /** What the policy judges: the union of declared, fetched and found, once catalogued. */
  components?: Component[];
  /** The reconciliation of the three SBOMs, and the union as the document that is signed. */
  judged?: JudgedSbom;
  source?: SourceVerification;
  /** The job's build log as the control plane kept it, if the runner handed one over. */
  buildLog?: BuildLogSummary;
  refusals: GateReason[];
}

/** The policy's answer for a submission (or the refusal, when it never reached the policy). */
export interface Verdict {
  outcome: DecisionOutcome;
  policyDigest: string;
  reasons: GateReason[];
  warnings: GateReason[];
  suppressed: Suppressed[];
}

/** A decision as logged and stored. */
export interface LoggedDecision {
  decisionId: string;
  createdAt: string;
  logIndex: number;
  /** The document in the log, which is also attached to the artifact. */
  doc: Record<string, unknown>;
  result: Omit<GateResult, 'placement'>;
}

/** The image to place instead of the files, when the submission is an image the gate opened. */
function imagePlacementOf(checked: CheckedSubmission): { image?: ImagePlacement } {
  const image = checked.image;
  if (image === undefined) return {};
  return {
    image: {
      manifest: { descriptor: image.manifest.descriptor, bytes: image.manifest.bytes },
      config: { descriptor: image.config.descriptor, bytes: image.config.bytes },
      layers: image.layers.map((l) => ({
        descriptor: { mediaType: l.mediaType, digest: l.digest, size: l.size },
        path: l.path,
      })),
    },
  };
}

/**
 * The gate: verifies everything a runner hands in (token, proof of possession, outputs, SBOM,
 * source origin), asks the central policy, logs the decision whatever it is, and only then signs
 * and promotes. Anything that cannot be checked is a deny with its reason: the gate fails closed.
 * Each method is one named step; the control plane's pipeline (src/control-plane/pipeline.ts)
 * runs them in order and moves the job through its states.
 */
export class Gate {
  readonly #o: GateOptions;
  readonly #signing: SigningDeps;
  readonly #environments = new Map<string, NonNullable<CheckedSubmission['environment']>>();

  constructor(options: GateOptions) {
    this.#o = options;
    this.#signing = {
      ca: options.ca,
      ctLogs: options.ctLogs,
      log: options.log,
      repositoryUri: (project) => options.registry.repositoryUri('promoted', project),
      issuer: options.issuer,
      identityBase: options.identityBase,
      certValidityMinutes: options.certValidityMinutes,
      ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
      ...(options.witness === undefined ? {} : { witness: options.witness }),
    };
  }

  /**
   * Verify the token, the runner's proof of possession and its freshness, the project, the
   * artifact bytes and the SBOM. A failure is a refusal to be decided and logged, not an exception.
   */
  async verify(request: SubmitRequest, job: JobRecord): Promise<CheckedSubmission> {
    const { submission } = request;
    const checked: CheckedSubmission = { submission, files: [], refusals: [] };
    try {
      const claims = await this.#o.tokens.verifyToken(request.token, job.id);
      verifyProofOfPossession(request.proof, claims, sha256(canonicalJson(submission)));
      await checkProofFresh(submission, this.#o.store.tokens);
      if (submission.project !== job.project) {
        throw new GatehouseError(
          'BAD_INPUT',
          `submission names project ${submission.project}, the job is for ${job.project}`,
        );
      }
      checkSourceAgainstRegistration(submission, await this.#o.projects.require(job.project));
      checked.files = await checkStagedOutputs(submission, this.#o.staging);
      const image = await checkImageArchive(submission, checked.files, this.#o.staging);
      if (image !== undefined) checked.image = image;
      checked.declared = readSbom(submission.sbom, 'submission.sbom');
      if (submission.environment !== undefined)
        checked.environment = await this.#environment(submission.environment.sbom);
      // The log as kept here, never the runner's word for its digest.
      const buildLog = await this.#o.store.jobs.logSummary(job.id);
      if (buildLog !== undefined) checked.buildLog = buildLog;
      checked.claims = claims;
    } catch (e) {
      // Verification failures are decisions too: a deny, logged like any other.
      checked.refusals.push({ rule: refusalRule(e), action: 'deny', message: describeError(e) });
    }
    return checked;
  }

  /**
   * What was built is what is judged: catalogue the outputs the control plane received and
   * digested itself, and reconcile what was found with what was declared and downloaded. The
   * runner's SBOM only says what the project meant to use; the policy judges the union, and each
   * component found but not declared is a finding naming where it was found.
   */
  async catalog(checked: CheckedSubmission): Promise<void> {
    const { declared, submission } = checked;
    if (checked.refusals.length > 0 || declared === undefined) return;
    try {
      checked.judged = await judgeArtifacts({
        files: checked.files,
        declared,
        ...(checked.environment === undefined
          ? {}
          : {
              environment: {
                digest: checked.environment.digest,
                url: this.#environmentUrl(checked.environment.digest),
                packages: checked.environment.components.length,
              },
            }),
        fetched: submission.fetched ?? [],
        ...(checked.environment === undefined
          ? {}
          : { toolchain: toolchainProvides(checked.environment.components) }),
        ...(this.#o.artifactLimits === undefined ? {} : { limits: this.#o.artifactLimits }),
        ...(this.#o.catalogTempDir === undefined ? {} : { tempDir: this.#o.catalogTempDir }),
      });
      checked.components = checked.judged.components;
    } catch (e) {
      // An artifact that cannot be catalogued cannot be judged: a bomb or a corrupt archive is denied.
      checked.refusals.push({ rule: 'artifact-catalog', action: 'deny', message: describeError(e) });
    }
  }

  /**
   * The build environment's SBOM the submission names, as the control plane keeps it; every
   * package in it is the build environment's, whatever the document says.
   * @throws GatehouseError BAD_SBOM when it was never handed over
   */
  async #environment(digest: string): Promise<NonNullable<CheckedSubmission['environment']>> {
    const known = this.#environments.get(digest);
    if (known !== undefined) return known;
    const kept = await this.#o.store.policies.environmentSbom(digest);
    if (kept === undefined)
      throw new GatehouseError('BAD_SBOM', `the build environment SBOM ${digest} was never handed over`);
    const environment = {
      digest,
      text: kept.document,
      components: environmentComponents(kept.document, digest),
    };
    // A host builds every job in the same few images: their packages are read once per process.
    if (this.#environments.size >= 8) this.#environments.clear();
    this.#environments.set(digest, environment);
    return environment;
  }

  #environmentUrl(digest: string): string {
    return `${this.#o.identityBase.replace(/\/+$/, '')}/environments/${digest}`;
  }

  /**
   * Source origin, re-derived from the repository, never taken from the runner's report. A
   * repository's central protection is enforced here; the facts also go to the policy.
   */
  async verifySource(checked: CheckedSubmission, job: JobRecord): Promise<void> {
    if (checked.refusals.length > 0 || this.#o.verifySource === undefined) return;
    const source = await this.#o.verifySource(checked.submission.source, job.project);
    checked.source = source;
    for (const v of source.violations) {
      checked.refusals.push({
        rule: 'source-protection',
        action: 'deny',
        message: v.message,
        requirement: v.requirement,
      });
    }
  }

  /**
   * The vulnerability data must be there to judge by: an empty database (or one older than the
   * configured age) would let every known-vulnerable component through without a word, so the
   * build is denied, naming the cause and the fix.
   */
  async checkVulnerabilityData(checked: CheckedSubmission): Promise<void> {
    if (checked.refusals.length > 0) return;
    const vulns = this.#o.store.vulns;
    const newest = (await vulns.count()) === 0 ? undefined : await vulns.newestModified();
    const rule = 'vulnerability-database';
    if (newest === undefined) {
      checked.refusals.push({
        rule,
        action: 'deny',
        message:
          'the vulnerability database is empty, so no component can be judged: import OSV data (`gatehouse vulndb import`)',
      });
      return;
    }
    const maxDays = this.#o.vulnerabilityDbMaxAgeDays;
    const ageDays = (Date.now() - Date.parse(newest)) / 86_400_000;
    if (maxDays !== undefined && !(ageDays <= maxDays))
      checked.refusals.push({
        rule,
        action: 'deny',
        message: `the vulnerability database is stale: its newest record is from ${newest}, more than ${maxDays} days ago (vulnerabilityDb.maxAgeDays); import current OSV data`,
      });
  }

  /** Ask the central policy about a verified submission; a refused one is a deny as it stands. */
  async judge(job: JobRecord, checked: CheckedSubmission): Promise<Verdict> {
    const { claims, components, judged, source, submission } = checked;
    if (
      checked.refusals.length > 0 ||
      claims === undefined ||
      components === undefined ||
      judged === undefined
    ) {
      const reasons = checked.refusals;
      return { outcome: 'deny', policyDigest: this.#o.policyDigest, reasons, warnings: [], suppressed: [] };
    }
    // The build environment's packages are judged with the artifact's, as when they were listed.
    const judgedComponents = [...components, ...(checked.environment?.components ?? [])];
    let matched: MatchResult | undefined;
    try {
      matched = await matchVulnerabilities(judgedComponents, this.#o.vulnIndex ?? this.#o.store.vulns);
    } catch {
      matched = undefined; // the engine denies when a rule lacks its facts
    }
    const createdAtOfSbom = sbomCreatedAt(submission.sbom);
    const decision = await this.#o.policy.evaluate({
      project: job.project,
      components: judgedComponents,
      undeclared: judged.undeclared,
      ...(matched === undefined ? {} : { findings: matched.findings, unmatched: matched.unmatched }),
      attestation: {
        verified: true,
        evidenceTypes: claims.gatehouse.evidence_types,
        // Each appraisal's status, so that a required kind needs its own affirming submod.
        submods: Object.fromEntries(Object.entries(claims.submods).map(([k, m]) => [k, m['ear.status']])),
      },
      ...(source === undefined ? {} : { source: sourceFactsOf(source) }),
      // Computed from the evidence that earned the token, never assumed (docs/trust-model.md).
      build: {
        slsaBuildLevel: buildLevelOf(claims.gatehouse.evidence_types),
        runnerKind: claims.gatehouse.runner_kind ?? 'gatehouse-ephemeral',
      },
      ...(createdAtOfSbom === undefined ? {} : { sbom: { createdAt: createdAtOfSbom } }),
      // The artifact's identifiers for VEX: its digests (the project purl is added by the engine),
      // and an image's manifest digest, which the gate checked against the archive.
      subjects: [
        ...submission.subjects.map((s) => `sha256:${s.sha256}`),
        ...(checked.image === undefined ? [] : [checked.image.manifestDigest]),
      ],
    });
    return {
      outcome: decision.outcome,
      policyDigest: decision.policyDigest,
      reasons: decision.reasons.map((r) => ({ ...r })),
      warnings: decision.warnings.map((r) => ({ ...r })),
      suppressed: decision.suppressed ?? [],
    };
  }

  /**
   * Log the decision, whatever it is, and store it; an allowed artifact's components are kept so
   * that it is evaluated again when the vulnerability database changes.
   */
  async record(job: JobRecord, checked: CheckedSubmission, verdict: Verdict): Promise<LoggedDecision> {
    const o = this.#o;
    const { claims, components, source } = checked;
    const decisionId = `dec-${randomUUID()}`;
    const createdAt = new Date().toISOString();
    const subjects = checked.submission.subjects.map((s) => ({ name: s.name, sha256: s.sha256 }));
    const { outcome, policyDigest, reasons, warnings, suppressed } = verdict;
    const doc = {
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
      ...(checked.judged === undefined ? {} : { sbom: checked.judged.summary }),
      ...(source === undefined ? {} : { source }),
      ...(claims === undefined
        ? {}
        : { attestation: { tokenId: claims.jti, evidenceTypes: claims.gatehouse.evidence_types } }),
    };
    const { index: logIndex } = await o.log.append(decisionEntryBody(doc));
    const reasonsStored = [...reasons, ...warnings];
    // The decision and the SBOM an allowed artifact is evaluated again from: one transaction.
    await o.store.decisions.create(
      {
        ...{ id: decisionId, jobId: job.id, project: job.project, outcome, policyDigest, subjects },
        ...{ reasons: reasonsStored, createdAt, logIndex },
      },
      outcome === 'allow' && components !== undefined
        ? {
            artifactSbom: {
              ...{ decisionId, project: job.project, components: JSON.stringify(components) },
              ...{ subjects, createdAt },
              ...(checked.environment === undefined ? {} : { environment: checked.environment.digest }),
            },
          }
        : {},
    );
    const result = {
      ...{ jobId: job.id, decisionId, outcome, policyDigest, reasons, warnings, logIndex },
      ...(checked.judged === undefined ? {} : { sbom: checked.judged.summary }),
    };
    return { decisionId, createdAt, logIndex, doc: { ...doc, logIndex }, result };
  }

  /** The attestation token is used once: revoked as soon as its submission is decided. */
  async retireToken(checked: CheckedSubmission): Promise<void> {
    if (checked.claims !== undefined) await this.#o.tokens.revokeClaims(checked.claims);
  }

  /** The facts an approved (or later released) build is signed from. */
  held(checked: CheckedSubmission): HeldBuild {
    const { claims, judged } = checked;
    if (claims === undefined || judged === undefined)
      throw new GatehouseError('INTERNAL', 'only a verified and catalogued submission can be signed');
    const log = checked.buildLog;
    return heldBuildOf(
      checked.submission,
      claims,
      judged,
      checked.source,
      checked.environment?.digest,
      log === undefined ? undefined : { sha256: log.sha256, size: log.size, truncated: log.truncated },
    );
  }

  /**
   * Sign the provenance, SBOM attestation and VSA of an approved build, logging each, for its files
   * and the manifests of `deployment` (see {@link Gate.deployment}).
   */
  sign(held: HeldBuild, approval: Approval, deployment: Deployment): Promise<SignedPromotion> {
    return signBuild(this.#signing, held, approval, deployment);
  }

  /** The artifact manifest an allowed submission will be promoted as, planned before signing. */
  deployment(job: JobRecord, checked: CheckedSubmission, decision: LoggedDecision): Deployment {
    return artifactDeployment(this.#o.registry, job.project, this.#manifestInput(checked, decision));
  }

  /** Promote an approved artifact with its bundles, its SBOM and the decision. */
  promote(
    job: JobRecord,
    checked: CheckedSubmission,
    decision: LoggedDecision,
    signed: SignedPromotion,
  ): Promise<Placement> {
    const sbom = this.#judgedDocument(checked);
    return promoteSigned(this.#o.registry, {
      ...{ project: job.project, tag: job.id, sbom, signed },
      ...this.#manifestInput(checked, decision),
      records: [sbomRecord(sbom), ...this.#environmentRecords(checked), decisionRecord(decision.doc)],
    });
  }

  /** What the promoted artifact manifest is made of: the same when planned and when placed. */
  #manifestInput(
    checked: CheckedSubmission,
    decision: LoggedDecision,
  ): ArtifactManifestInput & { annotations: Record<string, string> } {
    return {
      files: checked.files,
      annotations: { 'dev.gatehouse.decision': decision.result.outcome },
      createdAt: decision.createdAt,
      // An image is promoted exactly as assembled: its manifest is the one planned and signed for.
      ...imagePlacementOf(checked),
    };
  }

  /**
   * Put a refused artifact in quarantine with its SBOM and decision. Only a build whose submission
   * verified can ever be released: keep what the gate verified, so that a release signs exactly
   * that and nothing the runner says later.
   */
  async quarantine(job: JobRecord, checked: CheckedSubmission, decision: LoggedDecision): Promise<Placement> {
    const { claims, components } = checked;
    const placement = await this.#o.registry.quarantine({
      project: job.project,
      tag: job.id,
      files: checked.files,
      ...imagePlacementOf(checked),
      attachments:
        checked.judged === undefined
          ? [decisionRecord(decision.doc)]
          : [
              sbomRecord(checked.judged.document),
              ...this.#environmentRecords(checked),
              decisionRecord(decision.doc),
            ],
      annotations: { 'dev.gatehouse.decision': decision.result.outcome },
      createdAt: decision.createdAt,
    });
    if (claims !== undefined && components !== undefined && checked.judged !== undefined)
      await this.#o.store.policies.holdBuild({
        decisionId: decision.decisionId,
        project: job.project,
        facts: JSON.stringify({
          ...this.held(checked),
          quarantineManifest: placement.manifestDigest,
        } satisfies HeldBuild),
        createdAt: decision.createdAt,
      });
    return placement;
  }

  #environmentRecords(checked: CheckedSubmission): Attachment[] {
    return checked.environment === undefined ? [] : [environmentRecord(checked.environment.text)];
  }

  #judgedDocument(checked: CheckedSubmission): Record<string, unknown> {
    if (checked.judged === undefined)
      throw new GatehouseError('INTERNAL', 'only a catalogued submission can be promoted');
    return checked.judged.document;
  }

  /** The registry the gate places artifacts in (triage releases from its quarantine area). */
  get registry(): ArtifactRegistry {
    return this.#o.registry;
  }
}
