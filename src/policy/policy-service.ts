import { randomUUID } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import type { HeldBuild, ReleaseNote, ReleaseResult } from '../gate/gate.ts';
import type { Component } from '../sbom/model.ts';
import {
  SECURITY_PAYLOAD,
  type SecuritySignature,
  type TrustedKey,
  verifySecurityAct,
} from '../signing/security-act.ts';
import type {
  DecisionRecord,
  PolicyStore,
  PolicyVersionRecord,
  ReevaluationRecord,
  RevocationRecord,
  Store,
  TriageRecord,
} from '../store/store.ts';
import { LiveVulnIndex } from '../vuln/live-index.ts';
import { type MatchResult, matchVulnerabilities } from '../vuln/match.ts';
import { parseVex, type VexStatement } from '../vuln/vex.ts';
import type { VulnIndex } from '../vuln/vuln-index.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { CombinedPolicyEngine, OpaPolicyEngine } from './opa-engine.ts';
import { type Policy, parsePolicy, policyDigest } from './policy.ts';
import type { PolicyDecision, PolicyEngine, PolicyInput } from './policy-engine.ts';

/** The policy a project is held to when none was assigned. */
export const DEFAULT_POLICY_NAME = 'default';

/** A published policy version, verified and parsed. */
export interface LoadedPolicy {
  record: PolicyVersionRecord;
  policy: Policy;
  engine: PolicyEngine;
}

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
 * How a triage act reaches the artifact: a release goes through the gate's signing path and
 * promotes; a reject marks the quarantined copy. Wired by the home (src/server/home.ts).
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

/** The engine for a parsed policy: the embedded rules, plus OPA when the policy names it. */
export function engineForPolicy(policy: Policy): PolicyEngine {
  const embedded = new EmbeddedPolicyEngine({ policy });
  if (policy.opa === undefined) return embedded;
  return new CombinedPolicyEngine([
    embedded,
    new OpaPolicyEngine({ ...policy.opa, policyDigest: embedded.policyDigest }),
  ]);
}

/**
 * Central policies: published only with a trusted security key's signature, verified again
 * every time they are loaded, versioned, and assigned to projects centrally. Also the security
 * role's other acts: VEX documents, triage of quarantined artifacts, and re-evaluation of
 * promoted artifacts when the vulnerability database changes.
 */
export class PolicyService {
  readonly #store: Store;
  readonly #policies: PolicyStore;
  readonly #trusted: readonly TrustedKey[];
  readonly #cache = new Map<string, LoadedPolicy>();
  /** Decisions being triaged in this process, so that two acts on one cannot overlap. */
  readonly #triaging = new Set<string>();
  /** How triage reaches the registry and the signing path (set by the home's wiring). */
  triageEffects: TriageEffects | undefined;
  /** Called after each revocation with every revoked digest, e.g. to mirror the list to a file. */
  onRevoked: ((records: RevocationRecord[]) => Promise<void>) | undefined;
  /**
   * The vulnerability database in memory, loaded once per process and reloaded when the store's
   * generation moves (an import here or in another process). The gate, re-evaluation and
   * `policy check` all match through it, so they give the same findings.
   */
  readonly vulnIndex: LiveVulnIndex;

  constructor(options: { store: Store; trustedKeys: readonly TrustedKey[]; vulnIndex?: LiveVulnIndex }) {
    this.#store = options.store;
    this.#policies = options.store.policies;
    this.#trusted = options.trustedKeys;
    this.vulnIndex = options.vulnIndex ?? new LiveVulnIndex(options.store.vulns);
  }

  /**
   * Match components against the vulnerability database as it is now (through {@link vulnIndex}).
   * @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD when the database cannot be loaded
   */
  async match(components: readonly Component[]): Promise<MatchResult> {
    return matchVulnerabilities(components, this.vulnIndex);
  }

  /**
   * Publish a new version of the policy the text names. The signature is checked first, then
   * the text parsed; on any failure nothing is stored and the previous version stays in force.
   * @throws GatehouseError SIGNATURE_INVALID, BAD_POLICY (naming the line), CONFLICT (a concurrent publish)
   */
  async publish(
    text: string,
    sig: SecuritySignature,
    where = 'the pushed policy',
  ): Promise<PolicyVersionRecord> {
    verifySecurityAct(SECURITY_PAYLOAD.policy, text, sig, this.#trusted);
    const policy = parsePolicy(text, where);
    return this.#store.transaction(async () => {
      const latest = await this.#policies.latest(policy.name);
      const record: PolicyVersionRecord = {
        name: policy.name,
        version: (latest?.version ?? 0) + 1,
        digest: policyDigest(policy),
        text,
        signature: sig.signature,
        keyId: sig.keyId,
        publishedAt: new Date().toISOString(),
      };
      await this.#policies.publish(record);
      return record;
    });
  }

  /**
   * Hold a project to a named, published policy.
   * @throws GatehouseError SIGNATURE_INVALID, NOT_FOUND (no such policy)
   */
  async assign(project: string, policyName: string, sig: SecuritySignature): Promise<void> {
    verifySecurityAct(SECURITY_PAYLOAD.binding, { project, policy: policyName }, sig, this.#trusted);
    if ((await this.#policies.latest(policyName)) === undefined)
      throw new GatehouseError('NOT_FOUND', `no published policy named ${policyName}`);
    await this.#policies.bindProject(project, policyName);
  }

  /** The policy name a project is held to. */
  async policyNameOf(project: string): Promise<string> {
    return (await this.#policies.projectPolicy(project)) ?? DEFAULT_POLICY_NAME;
  }

  /**
   * Load a published version (the latest by default), verifying its signature again.
   * @throws GatehouseError NOT_FOUND, SIGNATURE_INVALID (the stored version was altered), BAD_POLICY
   */
  async load(name: string, version?: number): Promise<LoadedPolicy> {
    const record =
      version === undefined ? await this.#policies.latest(name) : await this.#policies.get(name, version);
    if (record === undefined)
      throw new GatehouseError(
        'NOT_FOUND',
        `no published policy ${name}${version === undefined ? '' : ` version ${version}`}`,
      );
    const key = `${record.name}@${record.version}:${record.signature}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined && hit.record.text === record.text) return hit;
    verifySecurityAct(
      SECURITY_PAYLOAD.policy,
      record.text,
      { signature: record.signature, keyId: record.keyId },
      this.#trusted,
    );
    const policy = parsePolicy(record.text, `policy ${record.name} version ${record.version}`);
    if (policyDigest(policy) !== record.digest)
      throw new GatehouseError(
        'SIGNATURE_INVALID',
        `policy ${record.name} version ${record.version} does not have its recorded digest`,
      );
    const loaded: LoadedPolicy = { record, policy, engine: engineForPolicy(policy) };
    this.#cache.set(key, loaded);
    return loaded;
  }

  async history(name: string): Promise<PolicyVersionRecord[]> {
    return this.#policies.history(name);
  }

  /** Every VEX statement the security team imported. Unreadable stored documents are skipped. */
  async vexStatements(): Promise<VexStatement[]> {
    const docs = await this.#policies.vexDocuments();
    return docs.flatMap((d) => parseVex(JSON.parse(d.json), d.id));
  }

  /**
   * Keep a VEX document (OpenVEX or CycloneDX VEX), after checking that it reads.
   * @throws GatehouseError BAD_INPUT
   */
  async addVex(json: string, id: string): Promise<number> {
    let doc: unknown;
    try {
      doc = JSON.parse(json);
    } catch (cause) {
      throw new GatehouseError('BAD_INPUT', 'the VEX document is not JSON', { where: id, cause });
    }
    const statements = parseVex(doc, id);
    await this.#policies.addVex({ id, json, createdAt: new Date().toISOString() });
    return statements.length;
  }

  /**
   * The policy engine the gate asks: it holds each project to the latest version of its
   * assigned policy. If that policy cannot be loaded (none published, signature no longer
   * verifies), every decision is a deny with the reason: fail closed, and never a fall back to
   * an older version, which would let an attacker roll a policy back by damaging the newest.
   */
  engine(): PolicyEngine {
    return {
      evaluate: async (input: PolicyInput): Promise<PolicyDecision> => {
        const name = await this.policyNameOf(input.project);
        let loaded: LoadedPolicy;
        try {
          loaded = await this.load(name);
        } catch (e) {
          return {
            outcome: 'deny',
            policyDigest: '',
            reasons: [
              {
                rule: 'policy',
                action: 'deny',
                message: `the policy ${name} cannot be used (${e instanceof GatehouseError ? e.message : String(e)}), so nothing can pass`,
              },
            ],
            warnings: [],
          };
        }
        const vex = input.vex ?? (await this.vexStatements());
        return loaded.engine.evaluate({ ...input, vex });
      },
    };
  }

  /**
   * Release or reject a quarantined (or denied) artifact: a security act, signed, logged in the
   * transparency log as a decision of its own, and recorded once per decision. A release signs the
   * build the gate held for the decision through the gate's signing path and promotes it; a reject
   * marks the quarantined copy and leaves it there.
   * @throws GatehouseError SIGNATURE_INVALID, NOT_FOUND, CONFLICT (already triaged, being triaged,
   *   an allow, or a release of a submission that never verified), INTERNAL (triage is not wired)
   */
  async triage(
    act: TriageAct,
    sig: SecuritySignature,
    appendDecision: AppendDecision,
  ): Promise<TriageOutcome> {
    const actor = verifySecurityAct(SECURITY_PAYLOAD.triage, { ...act }, sig, this.#trusted);
    if (act.reason.trim() === '') throw new GatehouseError('BAD_INPUT', 'a triage act needs a reason');
    if (this.#triaging.has(act.decisionId))
      throw new GatehouseError('CONFLICT', `decision ${act.decisionId} is being triaged right now`);
    this.#triaging.add(act.decisionId);
    try {
      return await this.#triage(act, actor, appendDecision);
    } finally {
      this.#triaging.delete(act.decisionId);
    }
  }

  async #triage(act: TriageAct, actor: string, appendDecision: AppendDecision): Promise<TriageOutcome> {
    const decision = await this.#store.decisions.get(act.decisionId);
    if (decision === undefined) throw new GatehouseError('NOT_FOUND', `no decision ${act.decisionId}`);
    if (decision.outcome === 'allow')
      throw new GatehouseError(
        'CONFLICT',
        `decision ${act.decisionId} allowed its artifact; there is nothing to triage`,
      );
    const done = await this.#policies.triageOf(act.decisionId);
    if (done !== undefined)
      throw new GatehouseError(
        'CONFLICT',
        `decision ${act.decisionId} has already been triaged (${done.action === 'release' ? 'released' : 'rejected'} ${done.createdAt}, log entry #${done.logIndex})`,
      );
    const effects = this.triageEffects;
    if (effects === undefined)
      throw new GatehouseError('INTERNAL', 'triage is not wired to the registry and the signing path');
    let held: HeldBuild | undefined;
    if (act.action === 'release') {
      const record = await this.#policies.heldBuild(decision.id);
      // Only what the gate verified can be signed: a submission whose token, proof, artifacts or
      // SBOM failed was never established, and no security act can make it so.
      if (record === undefined)
        throw new GatehouseError(
          'CONFLICT',
          `decision ${act.decisionId} cannot be released: its submission never verified, so there is nothing the gate could sign; build it again`,
        );
      held = JSON.parse(record.facts) as HeldBuild;
    }
    const id = `tri-${randomUUID()}`;
    const createdAt = new Date().toISOString();
    const logIndex = await appendDecision({
      triageId: id,
      kind: 'triage',
      decisionId: decision.id,
      jobId: decision.jobId,
      project: decision.project,
      action: act.action,
      outcome: act.action === 'release' ? 'allow' : 'deny',
      reason: act.reason,
      actor,
      policyDigest: decision.policyDigest,
      subjects: decision.subjects,
      timestamp: createdAt,
    });
    let released: ReleaseResult | undefined;
    if (held !== undefined) {
      released = await effects.release(decision, held, {
        triageId: id,
        decisionId: decision.id,
        actor,
        reason: act.reason,
        policyDigest: decision.policyDigest,
        logIndex,
      });
    } else {
      await effects.reject(decision, {
        triageId: id,
        kind: 'triage',
        action: 'reject',
        decisionId: decision.id,
        actor,
        reason: act.reason,
        policyDigest: decision.policyDigest,
        logIndex,
        timestamp: createdAt,
      });
    }
    // Recorded last: if signing or promotion failed, the decision stays untriaged and may be
    // tried again (the log then shows both attempts); the unique record refuses a second act.
    const record: TriageRecord = {
      id,
      decisionId: decision.id,
      project: decision.project,
      action: act.action,
      reason: act.reason,
      actor,
      createdAt,
      logIndex,
    };
    await this.#policies.addTriage(record);
    return released === undefined ? record : { ...record, ...released };
  }

  /**
   * Revoke an artifact digest on the security role's word: logged as a `revoke` decision, then
   * added to the revocation list deploy-time verification reads.
   * @throws GatehouseError SIGNATURE_INVALID, BAD_INPUT (not a digest, no reason), CONFLICT (already revoked)
   */
  async revoke(
    act: RevokeAct,
    sig: SecuritySignature,
    appendDecision: AppendDecision,
  ): Promise<RevocationRecord> {
    const actor = verifySecurityAct(SECURITY_PAYLOAD.revoke, { ...act }, sig, this.#trusted);
    return this.#revoke(act, actor, appendDecision, {});
  }

  /** Every revoked digest, oldest first. */
  async revocations(): Promise<RevocationRecord[]> {
    return this.#policies.revocations();
  }

  async #revoke(
    act: RevokeAct,
    actor: string,
    appendDecision: AppendDecision,
    context: Record<string, unknown>,
  ): Promise<RevocationRecord> {
    const digest = normaliseDigest(act.digest);
    const reason = act.reason.trim();
    if (reason === '') throw new GatehouseError('BAD_INPUT', 'a revocation needs a reason');
    if (reason.length > 1000)
      throw new GatehouseError('BAD_INPUT', 'a revocation reason is at most 1000 characters');
    if ((await this.#policies.revocations()).some((r) => r.digest === digest))
      throw new GatehouseError('CONFLICT', `${digest} is already revoked`);
    const revokedAt = new Date().toISOString();
    const logIndex = await appendDecision({
      revocationId: `rvk-${randomUUID()}`,
      kind: 'revoke',
      outcome: 'revoke',
      digest,
      reason,
      actor,
      timestamp: revokedAt,
      ...context,
    });
    const record: RevocationRecord = { digest, reason, actor, revokedAt, logIndex };
    await this.#policies.addRevocation(record);
    await this.onRevoked?.(await this.#policies.revocations());
    return record;
  }

  /** Quarantined artifacts awaiting triage, newest first, with their reasons. */
  async quarantined(limit = 100): Promise<DecisionRecord[]> {
    const decisions = await this.#store.decisions.list({ limit: Math.min(limit * 5, 5000) });
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
   * recorded, is flagged (and marked revoked when a vulnerability rule that fired says so).
   * @param importedAt when the database change finished (ms since the epoch), for the metric
   */
  async reevaluate(options: {
    importedAt: number;
    index?: VulnIndex;
    /**
     * Appends the `revoke` decisions of artifacts a rule says to revoke (`onReevaluation: revoke`)
     * to the transparency log; they go through the same revoke path as the security role's.
     */
    appendDecision?: AppendDecision;
  }): Promise<ReevaluationResult> {
    const index = options.index ?? (await this.vulnIndex.current());
    const vex = await this.vexStatements();
    const previous = await this.#policies.listReevaluations({ limit: 100_000 });
    const seen = new Set(
      previous.flatMap((r) =>
        r.reasons.map(
          (x) => `${r.decisionId}\u0000${x.rule}\u0000${String(x.purl)}\u0000${String(x.vulnId)}`,
        ),
      ),
    );
    const artifacts = await this.#policies.artifactSboms();
    const flagged: ReevaluationRecord[] = [];
    const engine = this.engine();
    for (const a of artifacts) {
      if ((await this.#policies.triageOf(a.decisionId))?.action === 'reject') continue;
      const components = JSON.parse(a.components) as Component[];
      const matched = await matchVulnerabilities(components, index);
      // Only what the database decides is re-judged: build facts (attestation, source, SBOM
      // age) were settled at the gate, so reasons without an advisory are left out here.
      const decision = await engine.evaluate({
        project: a.project,
        components,
        findings: matched.findings,
        unmatched: matched.unmatched,
        vex,
      });
      const fresh = decision.reasons.filter(
        (r) =>
          r.vulnId !== undefined &&
          !seen.has(`${a.decisionId}\u0000${r.rule}\u0000${String(r.purl)}\u0000${String(r.vulnId)}`),
      );
      if (fresh.length === 0) continue;
      const loaded = await this.load(await this.policyNameOf(a.project)).catch(() => undefined);
      const revokingRules = new Set(
        (loaded?.policy.rules ?? [])
          .filter((r) => r.kind === 'vulnerability' && r.onReevaluation === 'revoke')
          .map((r) => r.id),
      );
      const record: ReevaluationRecord = {
        id: `rev-${randomUUID()}`,
        decisionId: a.decisionId,
        project: a.project,
        outcome: fresh.some((r) => r.action === 'deny') ? 'deny' : 'quarantine',
        policyDigest: decision.policyDigest,
        reasons: fresh.map((r) => ({ ...r })),
        revoked: fresh.some((r) => revokingRules.has(r.rule)),
        createdAt: new Date().toISOString(),
        detectionMs: Math.max(0, Date.now() - options.importedAt),
      };
      if (record.revoked && options.appendDecision !== undefined) {
        const why = fresh.find((r) => revokingRules.has(r.rule))?.message ?? 'affected after re-evaluation';
        const known = new Set((await this.#policies.revocations()).map((r) => r.digest));
        for (const s of a.subjects) {
          if (known.has(`sha256:${s.sha256}`)) continue;
          await this.#revoke(
            { digest: s.sha256, reason: `re-evaluation ${record.id}: ${why}`.slice(0, 1000) },
            're-evaluation',
            options.appendDecision,
            { decisionId: a.decisionId, reevaluationId: record.id, policyDigest: decision.policyDigest },
          );
        }
      }
      await this.#policies.addReevaluation(record);
      flagged.push(record);
    }
    return { evaluated: artifacts.length, flagged };
  }
}

/** `sha256:<hex>` from `sha256:<hex>` or bare hex. @throws GatehouseError BAD_INPUT */
function normaliseDigest(d: string): string {
  const digest = d.startsWith('sha256:') ? d : `sha256:${d}`;
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new GatehouseError('BAD_INPUT', `'${d.slice(0, 80)}' is not a sha256 digest (sha256:<64 hex>)`);
  return digest;
}
