import { randomUUID } from 'node:crypto';
import type { AlertSink } from '../alerts/alert-event.ts';
import { GatehouseError } from '../common/errors.ts';
import type { HeldBuild, ReleaseNote } from '../gate/held-build.ts';
import type { SignedBuild } from '../gate/sign-build.ts';
import type { PolicyService } from '../policy/policy-service.ts';
import type { Placement } from '../registry/registry.ts';
import { environmentComponents } from '../sbom/environment.ts';
import type { Component } from '../sbom/model.ts';
import {
  type SecurityAct,
  type SecuritySignature,
  type TrustedKey,
  verifySecurityAct,
} from '../signing/security-act.ts';
import type {
  DecisionRecord,
  PolicyStore,
  ReevaluationRecord,
  RevocationRecord,
  Store,
  TriageRecord,
} from '../store/store.ts';
import { matchVulnerabilities } from '../vuln/match.ts';
import type { VexStatement } from '../vuln/vex.ts';
import type { VulnIndex } from '../vuln/vuln-index.ts';

/** Appends a decision document to the transparency log; returns its index. */
export type AppendDecision = (decision: Record<string, unknown>) => Promise<number>;

/** A triage act as the security role signs it. */
export interface TriageAct {
  decisionId: string;
  action: 'release' | 'reject';
  reason: string;
}

/** A revocation as the security role signs it. */
export interface RevokeAct {
  /** `sha256:<hex>` of an artifact file or manifest. */
  digest: string;
  reason: string;
}

/**
 * The security act a triage is: one per decision (version 1; a decision is triaged once, so a
 * replayed act is refused as already triaged).
 */
export function triageAct(act: TriageAct): SecurityAct {
  return {
    kind: 'triage',
    name: act.decisionId,
    version: 1,
    content: { action: act.action, reason: act.reason },
  };
}

/** The security act a revocation is: one per digest (version 1; a digest is revoked once). */
export function revocationAct(act: RevokeAct): SecurityAct {
  return {
    kind: 'revocation',
    name: normaliseDigest(act.digest),
    version: 1,
    content: { reason: act.reason },
  };
}

/** What a triage release produced: where the artifact now is, and its bundles. */
export interface ReleaseResult extends SignedBuild {
  placement: Placement;
}

/**
 * How a triage act reaches the artifact: a release goes through the gate's signing path and
 * promotes; a reject marks the quarantined copy (src/triage/release.ts).
 */
export interface TriageEffects {
  release(decision: DecisionRecord, held: HeldBuild, note: ReleaseNote): Promise<ReleaseResult>;
  reject(decision: DecisionRecord, record: Record<string, unknown>): Promise<void>;
}

/** A triage act's record, with what a release produced. */
export type TriageOutcome = TriageRecord & Partial<ReleaseResult>;

/** What one re-evaluation run found. */
export interface ReevaluationResult {
  evaluated: number;
  flagged: ReevaluationRecord[];
}

export interface TriageServiceOptions {
  store: Store;
  /** The central policies re-evaluation holds promoted artifacts to. */
  policies: PolicyService;
  trustedKeys: readonly TrustedKey[];
  effects: TriageEffects;
  /** Where triage, revoke and re-evaluation decisions are logged. */
  appendDecision: AppendDecision;
  /** Called after each revocation with every revoked digest, e.g. to mirror the list to a file. */
  onRevoked?: (records: RevocationRecord[]) => Promise<void>;
  /** Told of each release, reject, revocation and re-evaluation hit (src/alerts). */
  alerts?: AlertSink;
}

/**
 * The security role's acts on decided artifacts, above the gate: release or reject a quarantined
 * artifact, revoke a digest, and re-evaluate promoted artifacts when the vulnerability database
 * changes. Every act is verified against a trusted security key and logged as a decision.
 */
export class TriageService {
  readonly #o: TriageServiceOptions;
  readonly #policies: PolicyStore;
  /** Decisions being triaged in this process, so that two acts on one cannot overlap. */
  readonly #triaging = new Set<string>();

  constructor(options: TriageServiceOptions) {
    this.#o = options;
    this.#policies = options.store.policies;
  }

  /**
   * Release or reject a quarantined (or denied) artifact: a security act, signed, logged in the
   * transparency log as a decision of its own, and recorded once per decision. A release signs the
   * build the gate held for the decision through the gate's signing path and promotes it; a reject
   * marks the quarantined copy and leaves it there.
   * @throws GatehouseError SIGNATURE_INVALID, NOT_FOUND, CONFLICT (already triaged, being triaged,
   *   an allow, or a release of a submission that never verified)
   */
  async triage(act: TriageAct, sig: SecuritySignature): Promise<TriageOutcome> {
    const actor = verifySecurityAct(triageAct(act), sig, this.#o.trustedKeys);
    if (act.reason.trim() === '') throw new GatehouseError('BAD_INPUT', 'a triage act needs a reason');
    if (this.#triaging.has(act.decisionId))
      throw new GatehouseError('CONFLICT', `decision ${act.decisionId} is being triaged right now`);
    this.#triaging.add(act.decisionId);
    try {
      return await this.#triage(act, actor);
    } finally {
      this.#triaging.delete(act.decisionId);
    }
  }

  async #triage(act: TriageAct, actor: string): Promise<TriageOutcome> {
    const decision = await this.#triageable(act.decisionId);
    const held = act.action === 'release' ? await this.#heldBuild(decision) : undefined;
    const id = `tri-${randomUUID()}`;
    const createdAt = new Date().toISOString();
    const common = { triageId: id, decisionId: decision.id, actor, reason: act.reason };
    const logIndex = await this.#o.appendDecision({
      ...{ ...common, kind: 'triage', jobId: decision.jobId, project: decision.project },
      ...{ action: act.action, outcome: act.action === 'release' ? 'allow' : 'deny' },
      ...{ policyDigest: decision.policyDigest, subjects: decision.subjects, timestamp: createdAt },
    });
    const note = { ...common, policyDigest: decision.policyDigest, logIndex };
    const released =
      held === undefined
        ? await this.#o.effects
            .reject(decision, { ...note, kind: 'triage', action: 'reject', timestamp: createdAt })
            .then(() => undefined)
        : await this.#o.effects.release(decision, held, note);
    // Recorded last: if signing or promotion failed, the decision stays untriaged and may be
    // tried again (the log then shows both attempts); the unique record refuses a second act.
    const record: TriageRecord = {
      ...{ id, decisionId: decision.id, project: decision.project, action: act.action },
      ...{ reason: act.reason, actor, createdAt, logIndex },
    };
    await this.#policies.addTriage(record);
    await this.#o.alerts?.({
      type: act.action === 'release' ? 'dev.gatehouse.triage.released' : 'dev.gatehouse.triage.rejected',
      subject: `decisions/${decision.id}`,
      data: {
        ...{ triageId: id, decisionId: decision.id, jobId: decision.jobId, project: decision.project },
        ...{ reason: act.reason, actor, logIndex, policyDigest: decision.policyDigest },
        subjects: decision.subjects,
        ...(released === undefined ? {} : { placement: released.placement.reference }),
      },
    });
    return released === undefined ? record : { ...record, ...released };
  }

  /** A refused decision not yet triaged. @throws GatehouseError NOT_FOUND, CONFLICT */
  async #triageable(decisionId: string): Promise<DecisionRecord> {
    const decision = await this.#o.store.decisions.get(decisionId);
    if (decision === undefined) throw new GatehouseError('NOT_FOUND', `no decision ${decisionId}`);
    if (decision.outcome === 'allow')
      throw new GatehouseError(
        'CONFLICT',
        `decision ${decisionId} allowed its artifact; there is nothing to triage`,
      );
    const done = await this.#policies.triageOf(decisionId);
    if (done !== undefined)
      throw new GatehouseError(
        'CONFLICT',
        `decision ${decisionId} has already been triaged (${done.action === 'release' ? 'released' : 'rejected'} ${done.createdAt}, log entry #${done.logIndex})`,
      );
    return decision;
  }

  /**
   * Only what the gate verified can be signed: a submission whose token, proof, artifacts or SBOM
   * failed was never established, and no security act can make it so.
   */
  async #heldBuild(decision: DecisionRecord): Promise<HeldBuild> {
    const record = await this.#policies.heldBuild(decision.id);
    if (record === undefined)
      throw new GatehouseError(
        'CONFLICT',
        `decision ${decision.id} cannot be released: its submission never verified, so there is nothing the gate could sign; build it again`,
      );
    return JSON.parse(record.facts) as HeldBuild;
  }

  /**
   * Revoke an artifact digest on the security role's word: logged as a `revoke` decision, then
   * added to the revocation list deploy-time verification reads.
   * @throws GatehouseError SIGNATURE_INVALID, BAD_INPUT (not a digest, no reason), CONFLICT (already revoked)
   */
  async revoke(act: RevokeAct, sig: SecuritySignature): Promise<RevocationRecord> {
    const actor = verifySecurityAct(revocationAct(act), sig, this.#o.trustedKeys);
    return this.#revoke(act, actor, {});
  }

  /** Every revoked digest, oldest first. */
  async revocations(): Promise<RevocationRecord[]> {
    return this.#policies.revocations();
  }

  async #revoke(act: RevokeAct, actor: string, context: Record<string, unknown>): Promise<RevocationRecord> {
    const digest = normaliseDigest(act.digest);
    const reason = act.reason.trim();
    if (reason === '') throw new GatehouseError('BAD_INPUT', 'a revocation needs a reason');
    if (reason.length > 1000)
      throw new GatehouseError('BAD_INPUT', 'a revocation reason is at most 1000 characters');
    if ((await this.#policies.revocations()).some((r) => r.digest === digest))
      throw new GatehouseError('CONFLICT', `${digest} is already revoked`);
    const revokedAt = new Date().toISOString();
    const logIndex = await this.#o.appendDecision({
      ...{ revocationId: `rvk-${randomUUID()}`, kind: 'revoke', outcome: 'revoke', digest, reason },
      ...{ actor, timestamp: revokedAt, ...context },
    });
    const record: RevocationRecord = { digest, reason, actor, revokedAt, logIndex };
    await this.#policies.addRevocation(record);
    await this.#o.onRevoked?.(await this.#policies.revocations());
    await this.#o.alerts?.({
      type: 'dev.gatehouse.artifact.revoked',
      subject: `revocations/${digest}`,
      data: { digest, reason, actor, revokedAt, logIndex, ...context },
    });
    return record;
  }

  /** Quarantined artifacts awaiting triage, newest first, with their reasons. */
  async quarantined(limit = 100): Promise<DecisionRecord[]> {
    const decisions = await this.#o.store.decisions.list({ limit: Math.min(limit * 5, 5000) });
    const out: DecisionRecord[] = [];
    for (const d of decisions) {
      if (d.outcome !== 'quarantine') continue;
      if ((await this.#policies.triageOf(d.id)) !== undefined) continue;
      out.push(d);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Keep a promoted artifact's components for later re-evaluation. */
  async keepPromoted(
    decision: { id: string; project: string; subjects: { name: string; sha256: string }[] },
    components: readonly Component[],
  ): Promise<void> {
    await this.#policies.keepArtifactSbom({
      decisionId: decision.id,
      project: decision.project,
      components: JSON.stringify(components),
      subjects: decision.subjects,
      createdAt: new Date().toISOString(),
    });
  }

  /**
   * Evaluate every promoted artifact again against the current database and its project's
   * policy. An artifact whose evaluation is no longer an allow, for a reason not already
   * recorded, is flagged, and its subjects revoked (through the same path as the security role's
   * revocations) when a vulnerability rule that fired says `onReevaluation: revoke`.
   * @param options.importedAt when the database change finished (ms since the epoch), for the metric
   */
  async reevaluate(options: { importedAt: number; index?: VulnIndex }): Promise<ReevaluationResult> {
    // A build environment is shared by many artifacts: its packages are read once per pass.
    const environments = new Map<string, Component[]>();
    const index = options.index ?? (await this.#o.policies.vulnIndex.current());
    const vex = await this.#o.policies.vexStatements();
    const seen = await this.#reasonsFlaggedBefore();
    const artifacts = await this.#policies.artifactSboms();
    const flagged: ReevaluationRecord[] = [];
    for (const a of artifacts) {
      if ((await this.#policies.triageOf(a.decisionId))?.action === 'reject') continue;
      const record = await this.#reevaluateOne(a, {
        index,
        vex,
        seen,
        importedAt: options.importedAt,
        environments,
      });
      if (record !== undefined) flagged.push(record);
    }
    return { evaluated: artifacts.length, flagged };
  }

  async #environmentComponents(digest: string, cache: Map<string, Component[]>): Promise<Component[]> {
    const known = cache.get(digest);
    if (known !== undefined) return known;
    const kept = await this.#o.store.policies.environmentSbom(digest);
    if (kept === undefined)
      throw new GatehouseError(
        'STORE_DAMAGED',
        `the build environment SBOM ${digest} is missing from the store`,
      );
    const components = environmentComponents(kept.document, digest);
    cache.set(digest, components);
    return components;
  }

  async #reevaluateOne(
    a: {
      decisionId: string;
      project: string;
      components: string;
      subjects: { name: string; sha256: string }[];
      environment?: string;
    },
    ctx: {
      index: VulnIndex;
      vex: VexStatement[];
      seen: Set<string>;
      importedAt: number;
      environments: Map<string, Component[]>;
    },
  ): Promise<ReevaluationRecord | undefined> {
    const components = [
      ...(JSON.parse(a.components) as Component[]),
      ...(a.environment === undefined
        ? []
        : await this.#environmentComponents(a.environment, ctx.environments)),
    ];
    const matched = await matchVulnerabilities(components, ctx.index);
    // Only what the database decides is re-judged: build facts (attestation, source, SBOM
    // age) were settled at the gate, so reasons without an advisory are left out here.
    const decision = await this.#o.policies.engine().evaluate({
      ...{ project: a.project, components, findings: matched.findings, unmatched: matched.unmatched },
      vex: ctx.vex,
    });
    const fresh = decision.reasons.filter(
      (r) => r.vulnId !== undefined && !ctx.seen.has(reasonKey(a.decisionId, r)),
    );
    if (fresh.length === 0) return undefined;
    const revokingRules = await this.#revokingRules(a.project);
    const record: ReevaluationRecord = {
      id: `rev-${randomUUID()}`,
      decisionId: a.decisionId,
      project: a.project,
      outcome: fresh.some((r) => r.action === 'deny') ? 'deny' : 'quarantine',
      policyDigest: decision.policyDigest,
      reasons: fresh.map((r) => ({ ...r })),
      revoked: fresh.some((r) => revokingRules.has(r.rule)),
      createdAt: new Date().toISOString(),
      detectionMs: Math.max(0, Date.now() - ctx.importedAt),
    };
    if (record.revoked) {
      const why = fresh.find((r) => revokingRules.has(r.rule))?.message ?? 'affected after re-evaluation';
      await this.#revokeSubjects(a, record, why);
    }
    await this.#policies.addReevaluation(record);
    await this.#o.alerts?.({
      type: 'dev.gatehouse.reevaluation.flagged',
      subject: `decisions/${a.decisionId}`,
      data: {
        ...{ reevaluationId: record.id, decisionId: a.decisionId, project: a.project },
        ...{ outcome: record.outcome, revoked: record.revoked, policyDigest: record.policyDigest },
        ...{ reasons: record.reasons, subjects: a.subjects, detectionMs: record.detectionMs },
      },
    });
    return record;
  }

  /** Revoke the subjects of a re-evaluated artifact not yet revoked, logged as re-evaluation's acts. */
  async #revokeSubjects(
    a: { decisionId: string; subjects: { name: string; sha256: string }[] },
    record: ReevaluationRecord,
    why: string,
  ): Promise<void> {
    const known = new Set((await this.#policies.revocations()).map((r) => r.digest));
    for (const s of a.subjects) {
      if (known.has(`sha256:${s.sha256}`)) continue;
      await this.#revoke(
        { digest: s.sha256, reason: `re-evaluation ${record.id}: ${why}`.slice(0, 1000) },
        're-evaluation',
        { decisionId: a.decisionId, reevaluationId: record.id, policyDigest: record.policyDigest },
      );
    }
  }

  /** The vulnerability rules of a project's policy that revoke on re-evaluation. */
  async #revokingRules(project: string): Promise<Set<string>> {
    const { policies } = this.#o;
    const loaded = await policies.load(await policies.policyNameOf(project)).catch(() => undefined);
    return new Set(
      (loaded?.policy.rules ?? [])
        .filter((r) => r.kind === 'vulnerability' && r.onReevaluation === 'revoke')
        .map((r) => r.id),
    );
  }

  async #reasonsFlaggedBefore(): Promise<Set<string>> {
    const previous = await this.#policies.listReevaluations({ limit: 100_000 });
    return new Set(previous.flatMap((r) => r.reasons.map((x) => reasonKey(r.decisionId, x))));
  }
}

/** One flagged reason of one artifact, so that it is flagged once. */
function reasonKey(decisionId: string, r: { rule: string; purl?: unknown; vulnId?: unknown }): string {
  return `${decisionId}\u0000${r.rule}\u0000${String(r.purl)}\u0000${String(r.vulnId)}`;
}

/** `sha256:<hex>` from `sha256:<hex>` or bare hex. @throws GatehouseError BAD_INPUT */
export function normaliseDigest(d: string): string {
  const digest = d.startsWith('sha256:') ? d : `sha256:${d}`;
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new GatehouseError('BAD_INPUT', `'${d.slice(0, 80)}' is not a sha256 digest (sha256:<64 hex>)`);
  return digest;
}
