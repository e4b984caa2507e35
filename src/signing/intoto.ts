/**
 * in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
 * and the SLSA Provenance v1 predicate (https://slsa.dev/spec/v1.0/provenance).
 */
import { z } from 'zod';
import { canonicalJson } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

export const STATEMENT_V1_TYPE = 'https://in-toto.io/Statement/v1';
export const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';

/** An artifact a statement is about. */
export interface Subject {
  name: string;
  digest: { sha256: string; [algorithm: string]: string };
}

export interface Statement<P = unknown> {
  _type: typeof STATEMENT_V1_TYPE;
  subject: Subject[];
  predicateType: string;
  predicate: P;
}

/** An in-toto ResourceDescriptor, as used for SLSA resolved dependencies. */
export interface ResourceDescriptor {
  uri?: string;
  name?: string;
  digest?: Record<string, string>;
  mediaType?: string;
  annotations?: Record<string, unknown>;
}

export interface SlsaProvenanceV1 {
  buildDefinition: {
    buildType: string;
    externalParameters: Record<string, unknown>;
    internalParameters: Record<string, unknown>;
    resolvedDependencies: ResourceDescriptor[];
  };
  runDetails: {
    builder: { id: string };
    metadata: { invocationId: string; startedOn: string; finishedOn: string };
    /** Artifacts the build produced that are not its subjects (e.g. its log). */
    byproducts?: ResourceDescriptor[];
  };
}

/** Typed inputs of a SLSA Provenance v1 predicate. */
export interface ProvenanceInput {
  buildType: string;
  externalParameters: Record<string, unknown>;
  internalParameters?: Record<string, unknown>;
  resolvedDependencies?: ResourceDescriptor[];
  builderId: string;
  invocationId: string;
  startedOn: Date;
  finishedOn: Date;
  byproducts?: ResourceDescriptor[];
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

const subjectSchema = z.object({
  name: z.string(),
  digest: z.record(z.string(), z.string()),
});

const statementSchema = z.object({
  _type: z.literal(STATEMENT_V1_TYPE),
  subject: z.array(subjectSchema).min(1),
  predicateType: z.string().min(1),
  predicate: z.unknown().optional(),
});

/**
 * Build a Statement v1 about `subjects`.
 * @throws GatehouseError BAD_INPUT when a subject digest is not a lowercase hex SHA-256
 */
export function makeStatement<P>(subjects: Subject[], predicateType: string, predicate: P): Statement<P> {
  if (subjects.length === 0) throw new GatehouseError('BAD_INPUT', 'a statement needs at least one subject');
  for (const s of subjects) {
    if (!SHA256_HEX.test(s.digest.sha256)) {
      throw new GatehouseError(
        'BAD_INPUT',
        `subject '${s.name}' has an invalid sha256 digest '${s.digest.sha256}'`,
      );
    }
  }
  return { _type: STATEMENT_V1_TYPE, subject: subjects, predicateType, predicate };
}

/** The DSSE payload bytes of a statement: canonical JSON. */
export function statementPayload(statement: Statement): Uint8Array {
  return Buffer.from(canonicalJson(statement), 'utf8');
}

/**
 * Parse the payload of an in-toto envelope into a Statement v1, strictly on the fields gatehouse
 * relies on (type, subjects, predicate type); the predicate stays opaque.
 * @throws GatehouseError BAD_INPUT
 */
export function parseStatement(payload: Uint8Array): Statement {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'the in-toto statement is not JSON', { cause: e });
  }
  const parsed = statementSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `the in-toto statement field ${issue?.path.join('.') || '(root)'} is invalid: ${issue?.message ?? 'unknown'}`,
      { cause: parsed.error },
    );
  }
  const subjects = parsed.data.subject.map((s, i) => {
    const sha = s.digest.sha256;
    if (sha === undefined || !SHA256_HEX.test(sha)) {
      throw new GatehouseError('BAD_INPUT', `in-toto subject ${i} ('${s.name}') has no valid sha256 digest`);
    }
    return { name: s.name, digest: { ...s.digest, sha256: sha } };
  });
  return {
    _type: STATEMENT_V1_TYPE,
    subject: subjects,
    predicateType: parsed.data.predicateType,
    predicate: parsed.data.predicate,
  };
}

/**
 * Build a SLSA Provenance v1 predicate.
 * @throws GatehouseError BAD_INPUT when the run finished before it started
 */
export function slsaProvenance(input: ProvenanceInput): SlsaProvenanceV1 {
  if (input.finishedOn.getTime() < input.startedOn.getTime()) {
    throw new GatehouseError('BAD_INPUT', 'the build finished before it started');
  }
  return {
    buildDefinition: {
      buildType: input.buildType,
      externalParameters: input.externalParameters,
      internalParameters: input.internalParameters ?? {},
      resolvedDependencies: input.resolvedDependencies ?? [],
    },
    runDetails: {
      builder: { id: input.builderId },
      metadata: {
        invocationId: input.invocationId,
        startedOn: input.startedOn.toISOString(),
        finishedOn: input.finishedOn.toISOString(),
      },
      ...(input.byproducts === undefined || input.byproducts.length === 0
        ? {}
        : { byproducts: input.byproducts }),
    },
  };
}
