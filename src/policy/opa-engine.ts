import { z } from 'zod';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { PolicyDecision, PolicyEngine, PolicyInput, PolicyReason } from './policy-engine.ts';

/** Where the external decision point is and how long to wait for it. */
export interface OpaOptions {
  url: string;
  path: string;
  timeoutMs: number;
}

// The decision document the OPA policy returns under `result`: an outcome (or a plain allow
// boolean) and the reasons for it.
const decisionDoc = z.union([
  z
    .boolean()
    .transform((allow) => ({ outcome: allow ? ('allow' as const) : ('deny' as const), reasons: [] })),
  z.object({
    outcome: z.enum(['allow', 'deny', 'quarantine']).optional(),
    allow: z.boolean().optional(),
    reasons: z
      .array(z.union([z.string(), z.object({ rule: z.string().optional(), message: z.string() })]))
      .max(1000)
      .default([]),
  }),
]);

/**
 * An external policy decision point: Open Policy Agent's data API (`POST /v1/data/<path>` with
 * `{ input }`). It fails closed: an unreachable server, a timeout, an error status, or an answer
 * without a decision is a deny, with the reason.
 */
export class OpaPolicyEngine implements PolicyEngine {
  readonly #o: OpaOptions;
  readonly #digest: string;

  constructor(options: OpaOptions & { policyDigest: string }) {
    this.#o = options;
    this.#digest = options.policyDigest;
  }

  async evaluate(input: PolicyInput): Promise<PolicyDecision> {
    const deny = (message: string): PolicyDecision => ({
      outcome: 'deny',
      policyDigest: this.#digest,
      reasons: [
        { rule: 'opa', action: 'deny', message: `${message}, so the external decision point cannot pass` },
      ],
      warnings: [],
    });
    const url = `${this.#o.url.replace(/\/+$/, '')}/v1/data/${this.#o.path}`;
    let body: unknown;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input }),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      if (!res.ok) return deny(`OPA answered HTTP ${res.status}`);
      const text = await res.text();
      if (text.length > 4 * 1024 * 1024) return deny('OPA answered with more than 4 MiB');
      body = JSON.parse(text);
    } catch (e) {
      const why =
        e instanceof Error && e.name === 'TimeoutError'
          ? `OPA did not answer within ${this.#o.timeoutMs} ms`
          : `OPA is unreachable (${describeError(e)})`;
      return deny(why);
    }
    if (typeof body !== 'object' || body === null || !('result' in body))
      return deny(`OPA has no decision at ${this.#o.path} (undefined result)`);
    const parsed = decisionDoc.safeParse((body as { result: unknown }).result);
    if (!parsed.success)
      return deny(`OPA's decision at ${this.#o.path} is not a gatehouse decision document`);
    const d = parsed.data;
    const outcome = d.outcome ?? ('allow' in d && d.allow === true ? 'allow' : 'deny');
    const reasons: PolicyReason[] = d.reasons.map((r) =>
      typeof r === 'string'
        ? { rule: 'opa', action: outcome === 'quarantine' ? 'quarantine' : 'deny', message: r }
        : {
            rule: r.rule === undefined ? 'opa' : `opa:${r.rule}`,
            action: outcome === 'quarantine' ? 'quarantine' : 'deny',
            message: r.message,
          },
    );
    if (outcome !== 'allow' && reasons.length === 0)
      reasons.push({ rule: 'opa', action: outcome, message: `OPA decided ${outcome} without a reason` });
    return { outcome, policyDigest: this.#digest, reasons: outcome === 'allow' ? [] : reasons, warnings: [] };
  }
}

/**
 * The embedded rules and an external decision point together: the stricter outcome wins, and
 * the reasons of both are kept. The external point can add refusals, never remove one.
 */
export class CombinedPolicyEngine implements PolicyEngine {
  readonly #engines: readonly PolicyEngine[];
  constructor(engines: readonly PolicyEngine[]) {
    if (engines.length === 0)
      throw new GatehouseError('INTERNAL', 'a combined policy engine needs an engine');
    this.#engines = engines;
  }

  async evaluate(input: PolicyInput): Promise<PolicyDecision> {
    const decisions = await Promise.all(this.#engines.map((e) => e.evaluate(input)));
    const rank = { allow: 0, quarantine: 1, deny: 2 } as const;
    const [first] = decisions as [PolicyDecision, ...PolicyDecision[]];
    const out: PolicyDecision = {
      outcome: decisions.reduce<PolicyDecision['outcome']>(
        (o, d) => (rank[d.outcome] > rank[o] ? d.outcome : o),
        'allow',
      ),
      policyDigest: first.policyDigest,
      reasons: decisions.flatMap((d) => d.reasons),
      warnings: decisions.flatMap((d) => d.warnings),
    };
    const suppressed = decisions.flatMap((d) => d.suppressed ?? []);
    if (suppressed.length > 0) out.suppressed = suppressed;
    return out;
  }
}
