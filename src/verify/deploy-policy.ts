/**
 * The deploy policy: what an artifact must carry to be deployed (who signed it, which
 * attestations, how good and how recent the gate's decision), parsed once from YAML or JSON.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

const durationRe = /^([0-9]+)(s|m|h|d)$/;
const UNIT = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** Parse `90s`, `15m`, `12h`, `30d` into seconds. */
export function parseDuration(text: string, where: string): number {
  const m = durationRe.exec(text);
  if (m === null)
    throw new GatehouseError('BAD_INPUT', `'${text}' is not a duration like 30d, 12h or 15m`, { where });
  return Number(m[1]) * UNIT[m[2] as keyof typeof UNIT];
}

const deployPolicySchema = z
  .object({
    /** Exact expected certificate identity (SAN URI). */
    identity: z.string().min(1).optional(),
    /** Expected Fulcio issuer extension. */
    issuer: z.string().min(1).optional(),
    /** Allowed projects: the identity must be `<identityBase>/projects/<project>` for one of them. */
    projects: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/))
      .min(1)
      .optional(),
    identityBase: z.url().optional(),
    require: z.array(z.enum(['provenance', 'sbom', 'vsa'])).default(['provenance', 'sbom', 'vsa']),
    /** Lowest SLSA Build level the VSA must state. */
    minBuildLevel: z.number().int().min(0).max(4).optional(),
    /** Oldest acceptable gate decision, e.g. `30d`. */
    maxAge: z.string().regex(durationRe).optional(),
    /** When set, the VSA must name one of these policy digests (hex SHA-256). */
    policyDigests: z
      .array(z.string().regex(/^[0-9a-f]{64}$/))
      .min(1)
      .optional(),
    /** Registries the webhook may contact, by `host[:port]`; `plainHttp` for loopback test registries. */
    registries: z.record(z.string(), z.object({ plainHttp: z.boolean().default(false) }).strict()).optional(),
  })
  .strict();

export type DeployPolicy = z.infer<typeof deployPolicySchema>;

/**
 * Parse a deploy policy document (YAML or JSON); `overrides` (from command-line flags) replace
 * its top-level fields. @throws GatehouseError BAD_POLICY
 */
export function parseDeployPolicy(
  text: string,
  where: string,
  overrides: Record<string, unknown> = {},
): DeployPolicy {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 0 });
  } catch (e) {
    throw new GatehouseError(
      'BAD_POLICY',
      `the deploy policy is not valid YAML: ${(e as Error).message.split('\n')[0]}`,
      {
        where,
        cause: e,
      },
    );
  }
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new GatehouseError('BAD_POLICY', 'the deploy policy is not a mapping', { where });
  }
  const r = deployPolicySchema.safeParse({ ...(raw as Record<string, unknown> | null), ...overrides });
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_POLICY',
      `${issue?.path.join('.') || 'policy'}: ${issue?.message ?? 'invalid'}`,
      { where },
    );
  }
  if (r.data.identity === undefined && r.data.projects === undefined) {
    throw new GatehouseError('BAD_POLICY', 'the deploy policy names neither an identity nor projects', {
      where,
    });
  }
  if (r.data.projects !== undefined && r.data.identityBase === undefined) {
    throw new GatehouseError('BAD_POLICY', 'projects need the identityBase their identities are under', {
      where,
    });
  }
  return r.data;
}

/** The signing identities a policy allows: its `identity`, or one per project under `identityBase`. */
export function allowedIdentities(p: DeployPolicy): string[] {
  return p.identity !== undefined
    ? [p.identity]
    : (p.projects ?? []).map((x) => `${(p.identityBase ?? '').replace(/\/+$/, '')}/projects/${x}`);
}

/** Whether a policy asks anything of the gate's decision, so that a verified VSA must be attached. */
export function needsGateDecision(p: DeployPolicy): boolean {
  return (
    p.require.includes('vsa') ||
    p.minBuildLevel !== undefined ||
    p.maxAge !== undefined ||
    p.policyDigests !== undefined
  );
}
