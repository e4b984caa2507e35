import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import {
  type SecurityAct,
  type SecuritySignature,
  type TrustedKey,
  verifySecurityAct,
} from '../signing/security-act.ts';
import type { PolicyStore, PolicyVersionRecord, Store } from '../store/store.ts';
import { LiveVulnIndex } from '../vuln/live-index.ts';
import { type MatchResult, matchVulnerabilities } from '../vuln/match.ts';
import { parseVex, type VexStatement } from '../vuln/vex.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { CombinedPolicyEngine, OpaPolicyEngine } from './opa-engine.ts';
import { type Policy, parsePolicy, policyDigest } from './policy.ts';
import type { PolicyDecision, PolicyEngine, PolicyInput } from './policy-engine.ts';
import { ProjectRegistry } from './projects.ts';

/** The policy a project is held to when none was assigned. */
export const DEFAULT_POLICY_NAME = 'default';

/** A published policy version, verified and parsed. */
export interface LoadedPolicy {
  record: PolicyVersionRecord;
  policy: Policy;
  engine: PolicyEngine;
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

/** The security act a policy version is: its name, version and text, signed together. */
export function policyAct(name: string, version: number, text: string): SecurityAct {
  return { kind: 'policy', name, version, content: { text } };
}

/**
 * Central policies: published only with a trusted security key's signature, verified again
 * every time they are loaded, versioned, and assigned to projects centrally; the VEX documents
 * the security team keeps; and the vulnerability index every evaluation matches through.
 * Triage and re-evaluation, which act on decided artifacts, sit above the gate (src/triage).
 */
export class PolicyService {
  readonly #store: Store;
  readonly #policies: PolicyStore;
  readonly #trusted: readonly TrustedKey[];
  readonly #cache = new Map<string, LoadedPolicy>();
  /**
   * The vulnerability database in memory, loaded once per process and reloaded when the store's
   * generation moves (an import here or in another process). The gate, re-evaluation and
   * `policy check` all match through it, so they give the same findings.
   */
  readonly vulnIndex: LiveVulnIndex;
  /** The central project registrations: which policy each project is held to. */
  readonly projects: ProjectRegistry;

  constructor(options: { store: Store; trustedKeys: readonly TrustedKey[]; vulnIndex?: LiveVulnIndex }) {
    this.#store = options.store;
    this.#policies = options.store.policies;
    this.#trusted = options.trustedKeys;
    this.vulnIndex = options.vulnIndex ?? new LiveVulnIndex(options.store.vulns);
    this.projects = new ProjectRegistry({ acts: options.store.acts, trustedKeys: options.trustedKeys });
  }

  /**
   * Match components against the vulnerability database as it is now (through {@link vulnIndex}).
   * @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD when the database cannot be loaded
   */
  async match(components: readonly Component[]): Promise<MatchResult> {
    return matchVulnerabilities(components, this.vulnIndex);
  }

  /**
   * Publish a version of the policy the text names. The signature must cover the policy's name,
   * this version and the text, and the version must be exactly the next one: an old version's
   * signature re-posted is refused and changes nothing. On any failure nothing is stored and the
   * previous version stays in force.
   * A policy without rules (and no external decision point) allows every build; it is published
   * only when `allowEmpty` says that is meant, so that an emptied file cannot open the gate by mistake.
   * @throws GatehouseError BAD_POLICY (naming the line, or a policy that allows everything),
   *   SIGNATURE_INVALID, CONFLICT (not the next version)
   */
  async publish(
    text: string,
    version: number,
    sig: SecuritySignature,
    where = 'the pushed policy',
    options: { allowEmpty?: boolean } = {},
  ): Promise<PolicyVersionRecord> {
    const policy = parsePolicy(text, where);
    if (policy.rules.length === 0 && policy.opa === undefined && options.allowEmpty !== true)
      throw new GatehouseError(
        'BAD_POLICY',
        `${where}: policy ${policy.name} has no rules, so it would allow every build; publish it with --allow-empty if that is meant`,
        { where },
      );
    verifySecurityAct(policyAct(policy.name, version, text), sig, this.#trusted);
    const record: PolicyVersionRecord = {
      name: policy.name,
      version,
      digest: policyDigest(policy),
      text,
      signature: sig.signature,
      keyId: sig.keyId,
      publishedAt: new Date().toISOString(),
    };
    // The store refuses any version but the next (CONFLICT), atomically.
    await this.#policies.publish(record);
    return record;
  }

  /** The version a new publication of the policy `name` must carry. */
  async nextVersion(name: string): Promise<number> {
    return ((await this.#policies.latest(name))?.version ?? 0) + 1;
  }

  /** The policy name a project is held to: its registration's, else the default. */
  async policyNameOf(project: string): Promise<string> {
    return (await this.projects.get(project))?.policy ?? DEFAULT_POLICY_NAME;
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
      policyAct(record.name, record.version, record.text),
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
}
