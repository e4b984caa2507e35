import { createRequire } from 'node:module';
import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import type { Finding } from '../vuln/findings.ts';
import type { PolicyInput } from './policy-engine.ts';

type CelParse = typeof import('@marcbachmann/cel-js')['parse'];
let celParse: CelParse | undefined;

/** The CEL parser, loaded the first time a policy has a CEL rule (most never do). */
function parseCel(expression: string): ReturnType<CelParse> {
  celParse ??= (
    createRequire(import.meta.url)('@marcbachmann/cel-js') as typeof import('@marcbachmann/cel-js')
  ).parse;
  return celParse(expression);
}

/** A compiled CEL expression that answers true or false. */
export type CelPredicate = (context: Record<string, unknown>) => boolean;

/**
 * Compile a CEL expression. Evaluation throws unless the expression yields a boolean, so a rule
 * can never pass by producing something else.
 * @throws GatehouseError BAD_POLICY when the expression does not parse
 */
export function compileCel(expression: string): CelPredicate {
  let fn: ReturnType<typeof parseCel>;
  try {
    fn = parseCel(expression);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new GatehouseError('BAD_POLICY', `the CEL expression does not parse: ${detail}`, { cause });
  }
  return (context) => {
    const v: unknown = fn(context);
    if (typeof v !== 'boolean')
      throw new GatehouseError('BAD_POLICY', `the CEL expression yielded ${typeof v}, not a boolean`);
    return v;
  };
}

/** A component as CEL rules see it. */
export function celComponent(c: Component): Record<string, unknown> {
  return {
    name: c.name,
    version: c.version,
    purl: c.purl,
    ecosystem: c.ecosystem,
    licenses: c.licenses ?? [],
    scope: c.scope ?? 'required',
    buildEnvironment: c.buildEnvironment ?? false,
    sourcePackage: c.sourcePackage?.name ?? '',
  };
}

/** A finding as CEL rules see it. */
export function celFinding(f: Finding): Record<string, unknown> {
  return {
    id: f.vulnId,
    aliases: f.aliases,
    purl: f.purl,
    name: f.name,
    version: f.version,
    ecosystem: f.ecosystem ?? '',
    severity: f.severity,
    cvssScore: Math.max(f.cvssV3Score ?? 0, f.cvssV4Score ?? 0),
    cvssV3Score: f.cvssV3Score ?? 0,
    cvssV4Score: f.cvssV4Score ?? 0,
    fixedVersions: f.fixedVersions,
    fixAvailable: f.fixedVersions.length > 0,
  };
}

/**
 * The fact model CEL rules evaluate over (documented in docs/policy.md). A fact that was not
 * established is absent from the context, so an expression that reads it fails, and the rule
 * denies.
 */
export function celFacts(input: PolicyInput, now: Date): Record<string, unknown> {
  const facts: Record<string, unknown> = { project: input.project };
  if (input.components !== undefined) facts.components = input.components.map(celComponent);
  if (input.findings !== undefined) facts.findings = input.findings.map(celFinding);
  if (input.attestation !== undefined)
    facts.attestation = {
      verified: input.attestation.verified,
      evidenceTypes: [...input.attestation.evidenceTypes],
      submods: { ...(input.attestation.submods ?? {}) },
    };
  if (input.source !== undefined) {
    const s = input.source;
    const src: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s))
      if (v !== undefined) src[k] = typeof v === 'number' ? BigInt(v) : v;
    facts.source = src;
  }
  if (input.build?.slsaBuildLevel !== undefined)
    facts.build = {
      slsaLevel: BigInt(input.build.slsaBuildLevel),
      ...(input.build.runnerKind === undefined ? {} : { runnerKind: input.build.runnerKind }),
    };
  if (input.sbom?.createdAt !== undefined) {
    const t = Date.parse(input.sbom.createdAt);
    if (!Number.isNaN(t))
      facts.sbom = { createdAt: input.sbom.createdAt, ageHours: (now.getTime() - t) / 3_600_000 };
  }
  return facts;
}
