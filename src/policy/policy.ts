import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { npmNameOf, parsePurl } from '../sbom/purl.ts';

/** What a rule does when it fires. */
export type PolicyAction = 'deny' | 'quarantine' | 'warn';

const action = z.enum(['deny', 'quarantine', 'warn']);
const ruleId = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes');
// A purl naming an npm package, with or without a version (or semver range) after the last '@'.
const purlPattern = z
  .string()
  .regex(/^pkg:npm\/.+$/, "must be an npm purl ('pkg:npm/name' or 'pkg:npm/name@range')");

const vulnerabilityRule = z.strictObject({
  id: ruleId,
  kind: z.literal('vulnerability'),
  /** Findings rated above this act; `none` makes every finding act. */
  maxSeverity: z.enum(['none', 'low', 'medium', 'high', 'critical']),
  /** How to rate a finding without a severity; the cautious default counts it as critical. */
  unknownSeverityAs: z.enum(['low', 'medium', 'high', 'critical']).default('critical'),
  action,
});

/** A compiled `component-deny` pattern: an npm name and an optional exact version or range. */
export interface DenyPattern {
  pattern: string;
  name: string;
  version?: string;
  range?: semver.Range;
}

/**
 * Compile one `component-deny` purl: `pkg:npm/name`, `pkg:npm/name@1.2.3` or
 * `pkg:npm/name@<range>` (any semver range, e.g. `>=1.0.0 <1.4.2`).
 * @throws GatehouseError BAD_POLICY when the pattern is not one of those
 */
export function parseDenyPattern(pattern: string): DenyPattern {
  const bad = (why: string, cause?: unknown) =>
    new GatehouseError('BAD_POLICY', `'${pattern}' ${why}`, cause === undefined ? {} : { cause });
  if (!pattern.startsWith('pkg:npm/')) throw bad('is not an npm purl');
  // The version part may be a range with spaces or '<', which the purl grammar would encode:
  // split it off before parsing the name.
  const body = pattern.slice('pkg:npm/'.length);
  const at = body.lastIndexOf('@');
  const hasVersion = at > 0 && at > body.lastIndexOf('/');
  let name: string;
  try {
    name = npmNameOf(parsePurl(`pkg:npm/${hasVersion ? body.slice(0, at) : body}`));
  } catch (cause) {
    throw bad('is not a valid purl', cause);
  }
  if (!hasVersion) return { pattern, name };
  let version: string;
  try {
    version = decodeURIComponent(body.slice(at + 1));
  } catch (cause) {
    throw bad('has an invalid percent-encoding in its version', cause);
  }
  if (semver.valid(version) !== null) return { pattern, name, version };
  if (semver.validRange(version) === null)
    throw bad(`has '${version}' after @, neither a version nor a semver range`);
  return { pattern, name, version, range: new semver.Range(version) };
}

const componentDenyRule = z.strictObject({
  id: ruleId,
  kind: z.literal('component-deny'),
  purls: z
    .array(
      purlPattern.check((ctx) => {
        try {
          parseDenyPattern(ctx.value);
        } catch (e) {
          ctx.issues.push({
            code: 'custom',
            input: ctx.value,
            message: e instanceof Error ? e.message : String(e),
          });
        }
      }),
    )
    .min(1),
  action,
});

const attestationRule = z.strictObject({
  id: ruleId,
  kind: z.literal('attestation'),
  require: z.array(z.string().min(1)).default([]),
  action,
});

const rule = z.discriminatedUnion('kind', [vulnerabilityRule, componentDenyRule, attestationRule]);

const policySchema = z
  .strictObject({
    apiVersion: z.literal('gatehouse.dev/v1'),
    kind: z.literal('Policy'),
    name: z.string().min(1),
    rules: z.array(rule),
  })
  .check((ctx) => {
    const seen = new Set<string>();
    for (const [i, r] of ctx.value.rules.entries()) {
      if (seen.has(r.id))
        ctx.issues.push({
          code: 'custom',
          input: r.id,
          path: ['rules', i, 'id'],
          message: `repeats the rule id '${r.id}'`,
        });
      seen.add(r.id);
    }
  });

/** A parsed, checked policy document. */
export type Policy = z.infer<typeof policySchema>;
/** One rule of a {@link Policy}. */
export type PolicyRule = Policy['rules'][number];
/** A `vulnerability` rule. */
export type VulnerabilityRule = z.infer<typeof vulnerabilityRule>;
/** A `component-deny` rule. */
export type ComponentDenyRule = z.infer<typeof componentDenyRule>;
/** An `attestation` rule. */
export type AttestationRule = z.infer<typeof attestationRule>;

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * Parse a policy document (YAML, or JSON, which is YAML too). The result is frozen.
 * @param text the document
 * @param where its origin, for error messages
 * @throws GatehouseError BAD_POLICY naming the rule and the field that is wrong
 */
export function parsePolicy(text: string, where: string): Policy {
  let raw: unknown;
  try {
    // uniqueKeys: a key given twice is an error, not a silent override of the first.
    raw = parseYaml(text, { uniqueKeys: true, prettyErrors: true, maxAliasCount: 100 });
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new GatehouseError('BAD_POLICY', `the policy is not valid YAML or JSON: ${detail}`, {
      where,
      cause,
    });
  }
  const parsed = policySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path ?? [];
    let at = 'the policy';
    if (path[0] === 'rules' && typeof path[1] === 'number') {
      const rules = (raw as { rules?: unknown[] }).rules;
      const r = rules?.[path[1]];
      const id =
        typeof r === 'object' && r !== null && 'id' in r && typeof r.id === 'string' ? ` '${r.id}'` : '';
      const field = path.slice(2).map(String).join('.');
      at = `rule${id} (rules[${path[1]}])${field === '' ? '' : ` field ${field}`}`;
    } else if (path.length > 0) at = `field ${path.map(String).join('.')}`;
    throw new GatehouseError('BAD_POLICY', `${at}: ${issue?.message ?? 'invalid'}`, {
      where,
      cause: parsed.error,
    });
  }
  return deepFreeze(parsed.data);
}

/** sha256 hex of the canonical JSON of a parsed policy: the digest every decision records. */
export function policyDigest(policy: Policy): string {
  return sha256Hex(canonicalJson(policy));
}
