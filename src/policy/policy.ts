import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { canonicalJson, deepFreeze, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { compileCel } from './cel.ts';
import { parseComponentPattern } from './purl-pattern.ts';

const action = z.enum(['deny', 'quarantine', 'warn']);
const ruleId = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes');
const severity = z.enum(['none', 'low', 'medium', 'high', 'critical']);

/** A zod check that runs a compiler and turns its BAD_POLICY error into an issue. */
function compiles<T>(compile: (v: string) => T) {
  return (ctx: { value: string; issues: unknown[] }) => {
    try {
      compile(ctx.value);
    } catch (e) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: e instanceof Error ? e.message : String(e),
      });
    }
  };
}

const componentPattern = z.string().min(1).check(compiles(parseComponentPattern));

const vulnerabilityRule = z
  .strictObject({
    id: ruleId,
    kind: z.literal('vulnerability'),
    /** Findings rated above this act; `none` makes every finding act. */
    maxSeverity: severity.optional(),
    /** Findings whose CVSS score (the higher of v3 and v4) is above this act. */
    maxCvss: z.number().min(0).max(10).optional(),
    /** How to rate a finding without a severity; the cautious default counts it as critical. */
    unknownSeverityAs: z.enum(['low', 'medium', 'high', 'critical']).default('critical'),
    /** Act only on findings for which a fixed version exists. */
    onlyWithFix: z.boolean().default(false),
    /** Limit the rule to these OSV ecosystems (`npm`, `PyPI`, …); all when absent. */
    ecosystems: z.array(z.string().min(1)).min(1).optional(),
    /** What to do with a component that has advisories but cannot be matched against them. */
    unmatchable: action.default('deny'),
    /** On re-evaluation after a database change: flag the promoted artifact, or also revoke it. */
    onReevaluation: z.enum(['flag', 'revoke']).default('flag'),
    action,
  })
  .check((ctx) => {
    if (ctx.value.maxSeverity === undefined && ctx.value.maxCvss === undefined)
      ctx.issues.push({ code: 'custom', input: ctx.value, message: 'needs maxSeverity, maxCvss or both' });
  });

const componentDenyRule = z.strictObject({
  id: ruleId,
  kind: z.literal('component-deny'),
  purls: z.array(componentPattern).min(1),
  action,
});

const componentAllowRule = z.strictObject({
  id: ruleId,
  kind: z.literal('component-allow'),
  /** Only components matching one of these pass; every other component fires the rule. */
  purls: z.array(componentPattern).min(1),
  action,
});

const licenseRule = z
  .strictObject({
    id: ruleId,
    kind: z.literal('license'),
    /** SPDX ids and `category:<name>`: a component must be usable under these alone. */
    allow: z.array(z.string().min(1)).min(1).optional(),
    /** SPDX ids and `category:<name>`: a component that can only be used under one of these fires. */
    deny: z.array(z.string().min(1)).min(1).optional(),
    /** What to do with an unknown licence (none, NOASSERTION, NONE, unparseable). */
    unknown: z.enum(['deny', 'quarantine', 'warn', 'allow']),
    action,
  })
  .check((ctx) => {
    if (ctx.value.allow === undefined && ctx.value.deny === undefined)
      ctx.issues.push({ code: 'custom', input: ctx.value, message: 'needs allow, deny or both' });
  });

/**
 * The evidence types the attestation authority names in its tokens (docs/attestation.md), and
 * the EAR submod that carries each one's appraisal: a required type passes only when the token
 * names it and its submod is present and affirming.
 */
export const EVIDENCE_SUBMODS = {
  'software-measurement': 'image',
  tpm: 'tpm',
  'ci-oidc': 'ci',
  'sev-snp': 'sev-snp',
  tdx: 'tdx',
  azure: 'azure',
  'nitro-tpm': 'nitro-tpm',
  'gcp-vtpm': 'gcp-vtpm',
} as const;
export type EvidenceType = keyof typeof EVIDENCE_SUBMODS;
const evidenceType = z.enum(Object.keys(EVIDENCE_SUBMODS) as [EvidenceType, ...EvidenceType[]]);

const attestationRule = z.strictObject({
  id: ruleId,
  kind: z.literal('attestation'),
  /** Evidence types the runner's verified attestation must include, each with an affirming submod. */
  require: z.array(evidenceType).default([]),
  action,
});

const slsaRule = z.strictObject({
  id: ruleId,
  kind: z.literal('slsa'),
  minLevel: z.number().int().min(0).max(4),
  action,
});

const sourceRule = z
  .strictObject({
    id: ruleId,
    kind: z.literal('source'),
    protectedBranch: z.boolean().default(false),
    review: z.boolean().default(false),
    minReviewers: z.number().int().min(1).optional(),
    signedCommits: z.boolean().default(false),
    action,
  })
  .check((ctx) => {
    const r = ctx.value;
    if (!r.protectedBranch && !r.review && r.minReviewers === undefined && !r.signedCommits)
      ctx.issues.push({
        code: 'custom',
        input: r,
        message: 'requires nothing: set protectedBranch, review, minReviewers or signedCommits',
      });
  });

const sbomAgeRule = z.strictObject({
  id: ruleId,
  kind: z.literal('sbom-age'),
  maxAgeHours: z.number().positive(),
  action,
});

/**
 * A component found in the artifact that the declared SBOM lacks (or names at another version).
 * Without such a rule a policy still denies undeclared components: the rule only chooses another
 * action (quarantine, warn) for them.
 */
const undeclaredComponentRule = z.strictObject({
  id: ruleId,
  kind: z.literal('undeclared-component'),
  action,
});

const celRule = z.strictObject({
  id: ruleId,
  kind: z.literal('cel'),
  /** CEL expression over the fact model; the rule fires when it is true. */
  when: z.string().min(1).check(compiles(compileCel)),
  /** Evaluate once per component (`component`, `findings` of it) or per finding (`finding`). */
  forEach: z.enum(['component', 'finding']).optional(),
  message: z.string().min(1),
  action,
});

const rule = z.discriminatedUnion('kind', [
  vulnerabilityRule,
  componentDenyRule,
  componentAllowRule,
  licenseRule,
  attestationRule,
  slsaRule,
  sourceRule,
  sbomAgeRule,
  undeclaredComponentRule,
  celRule,
]);

const date = z
  .string()
  .regex(
    /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$/,
    'must be a date (YYYY-MM-DD) or an RFC 3339 date-time',
  )
  .check((ctx) => {
    if (Number.isNaN(Date.parse(ctx.value)))
      ctx.issues.push({ code: 'custom', input: ctx.value, message: 'is not a real date' });
  });

const exception = z
  .strictObject({
    id: ruleId,
    /** Who is accountable for the exception. */
    owner: z.string().min(1),
    reason: z.string().min(1),
    /** The exception stops applying after this (a date means the end of that day, UTC). */
    expires: date,
    /** Rule ids it applies to; all rules when absent. */
    rules: z.array(ruleId).min(1).optional(),
    /** Advisory ids (or aliases) it covers. */
    vulnerabilities: z.array(z.string().min(1)).min(1).optional(),
    /** Components it covers. */
    purls: z.array(componentPattern).min(1).optional(),
  })
  .check((ctx) => {
    if (ctx.value.vulnerabilities === undefined && ctx.value.purls === undefined)
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: 'must name vulnerabilities, purls or both',
      });
  });

const opa = z.strictObject({
  /** Base URL of the OPA server, e.g. http://127.0.0.1:8181 */
  url: z.url(),
  /** Data path of the decision, e.g. gatehouse/decision (queried as POST /v1/data/<path>). */
  path: z.string().regex(/^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*$/, 'must be a data path like gatehouse/decision'),
  timeoutMs: z.number().int().min(10).max(60_000).default(2000),
});

const policySchema = z
  .strictObject({
    apiVersion: z.literal('gatehouse.dev/v1'),
    kind: z.literal('Policy'),
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes'),
    description: z.string().optional(),
    rules: z.array(rule),
    exceptions: z.array(exception).default([]),
    /** An external decision point consulted after the embedded rules; it can only add refusals. */
    opa: opa.optional(),
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
    for (const [i, e] of ctx.value.exceptions.entries()) {
      if (seen.has(e.id))
        ctx.issues.push({
          code: 'custom',
          input: e.id,
          path: ['exceptions', i, 'id'],
          message: `repeats the id '${e.id}'`,
        });
      seen.add(e.id);
      for (const [j, r] of (e.rules ?? []).entries())
        if (!ctx.value.rules.some((x) => x.id === r))
          ctx.issues.push({
            code: 'custom',
            input: r,
            path: ['exceptions', i, 'rules', j],
            message: `names no rule of this policy ('${r}')`,
          });
    }
  });

/** A parsed, checked policy document. */
export type Policy = z.infer<typeof policySchema>;
/** One rule of a {@link Policy}. */
export type PolicyRule = Policy['rules'][number];
/** One exception of a {@link Policy}. */
export type PolicyException = Policy['exceptions'][number];
export type VulnerabilityRule = z.infer<typeof vulnerabilityRule>;
export type ComponentDenyRule = z.infer<typeof componentDenyRule>;
export type ComponentAllowRule = z.infer<typeof componentAllowRule>;
export type LicenseRule = z.infer<typeof licenseRule>;
export type AttestationRule = z.infer<typeof attestationRule>;
export type SlsaRule = z.infer<typeof slsaRule>;
export type SourceRule = z.infer<typeof sourceRule>;
export type SbomAgeRule = z.infer<typeof sbomAgeRule>;
export type CelRule = z.infer<typeof celRule>;
export type UndeclaredComponentRule = z.infer<typeof undeclaredComponentRule>;

/** The 1-based line of the node at `path` in the document (or of its nearest parent). */
function lineOf(
  doc: ReturnType<typeof parseDocument>,
  counter: LineCounter,
  path: readonly PropertyKey[],
): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true) as
      | { range?: [number, number, number] }
      | undefined;
    const start =
      node !== undefined && typeof node === 'object' && node !== null ? node.range?.[0] : undefined;
    if (start !== undefined) return counter.linePos(start).line;
    if (n === 0) {
      const c = doc.contents as { range?: [number, number, number] } | null;
      if (c?.range !== undefined) return counter.linePos(c.range[0]).line;
    }
  }
  return undefined;
}

/**
 * Parse a policy document (YAML, or JSON, which is YAML too). The result is frozen.
 * @param text the document
 * @param where its origin, for error messages
 * @throws GatehouseError BAD_POLICY naming the line, the rule and the field that is wrong
 */
export function parsePolicy(text: string, where: string): Policy {
  const counter = new LineCounter();
  // uniqueKeys: a key given twice is an error, not a silent override of the first.
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, lineCounter: counter });
  const [yamlError] = doc.errors;
  if (yamlError !== undefined) {
    const line = yamlError.linePos?.[0]?.line;
    const detail = yamlError.message.split('\n')[0] ?? 'unreadable';
    throw new GatehouseError(
      'BAD_POLICY',
      `${line === undefined ? '' : `line ${line}: `}the policy is not valid YAML or JSON: ${detail}`,
      {
        where,
        cause: yamlError,
      },
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    throw new GatehouseError(
      'BAD_POLICY',
      `the policy is not valid YAML or JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
      {
        where,
        cause,
      },
    );
  }
  if (!isMap(doc.contents) && !isSeq(doc.contents) && raw === null)
    throw new GatehouseError('BAD_POLICY', 'the policy is empty', { where });
  const parsed = policySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path ?? [];
    let at = 'the policy';
    const list = path[0];
    if ((list === 'rules' || list === 'exceptions') && typeof path[1] === 'number') {
      const items = (raw as Record<string, unknown[] | undefined>)[list];
      const r = items?.[path[1]];
      const id =
        typeof r === 'object' && r !== null && 'id' in r && typeof r.id === 'string' ? ` '${r.id}'` : '';
      const field = path.slice(2).map(String).join('.');
      at = `${list === 'rules' ? 'rule' : 'exception'}${id} (${list}[${path[1]}])${field === '' ? '' : ` field ${field}`}`;
    } else if (path.length > 0) at = `field ${path.map(String).join('.')}`;
    const line = lineOf(doc, counter, path);
    throw new GatehouseError(
      'BAD_POLICY',
      `${line === undefined ? '' : `line ${line}: `}${at}: ${issue?.message ?? 'invalid'}`,
      {
        where,
        cause: parsed.error,
      },
    );
  }
  return deepFreeze(parsed.data);
}

/** sha256 hex of the canonical JSON of a parsed policy: the digest every decision records. */
export function policyDigest(policy: Policy): string {
  return sha256Hex(canonicalJson(policy));
}
