import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { SourceStore } from '../store/store.ts';
import { OBJECT_ID } from './git.ts';
import { sshSign, type TrustedSigner, verifySshSignature } from './signers.ts';

/** Type URI of a gatehouse review record. */
export const REVIEW_TYPE = 'https://gatehouse.dev/source-review/v1';
/** The SSH signature namespace of review records, so a commit signature can never pass as one. */
export const REVIEW_NAMESPACE = 'gatehouse-review';

/** A reviewer's approval of one exact commit of one repository. */
export interface ReviewRecord {
  type: typeof REVIEW_TYPE;
  repository: string;
  commit: string;
  reviewer: string;
  decision: 'approve';
  timestamp: string;
}

/** A review record with the reviewer's SSH signature over its canonical JSON, as gatehouse keeps it. */
export interface SignedReview {
  /** sha256 hex of the record's canonical JSON. */
  id: string;
  record: ReviewRecord;
  /** Armoured SSH signature (namespace {@link REVIEW_NAMESPACE}). */
  signature: string;
}

const recordSchema = z
  .object({
    type: z.literal(REVIEW_TYPE),
    repository: z.string().min(1).max(4096),
    commit: z.string().regex(OBJECT_ID),
    reviewer: z.string().min(1).max(254),
    decision: z.literal('approve'),
    timestamp: z.iso.datetime({ offset: true }),
  })
  .strict();

/** The bytes a reviewer signs. */
export function reviewPayload(record: ReviewRecord): Buffer {
  return Buffer.from(canonicalJson(record), 'utf8');
}

/**
 * Parse a review record received from outside (CLI, API).
 * @throws GatehouseError BAD_INPUT naming the first bad field
 */
export function parseReviewRecord(value: unknown, where: string): ReviewRecord {
  const parsed = recordSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `review record ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      {
        where,
      },
    );
  }
  return parsed.data as ReviewRecord;
}

/**
 * Verify a review: its signature is by a trusted SSH signer whose principal is the record's
 * reviewer, over exactly this record. The signer list is the current one, so removing a reviewer's
 * key withdraws their approvals too.
 * @throws GatehouseError REVIEW_REJECTED saying why
 */
export async function verifyReview(
  review: SignedReview,
  signers: readonly TrustedSigner[],
): Promise<ReviewRecord> {
  const record = parseReviewRecord(review.record, `review ${review.id.slice(0, 12)}`);
  const payload = reviewPayload(record);
  if (sha256Hex(payload) !== review.id) {
    throw new GatehouseError('REVIEW_REJECTED', `review ${review.id.slice(0, 12)} does not match its record`);
  }
  const mine = signers.filter(
    (s) =>
      s.format === 'ssh' &&
      s.principal === record.reviewer &&
      (s.repository === undefined || s.repository === record.repository),
  );
  try {
    await verifySshSignature(mine, REVIEW_NAMESPACE, review.signature, payload);
  } catch (e) {
    throw new GatehouseError(
      'REVIEW_REJECTED',
      `review of ${record.commit.slice(0, 12)} by ${record.reviewer} is not signed by a trusted key of ${record.reviewer}: ${describeError(e)}`,
      { cause: e },
    );
  }
  return record;
}

/**
 * Sign and keep an approval: the reviewer's SSH key signs the record of one exact commit, the
 * signature is checked against the reviewer's trusted keys, and only then is the record stored.
 * @throws GatehouseError REVIEW_REJECTED, BAD_INPUT, CONFLICT (already kept)
 */
export async function recordReview(options: {
  store: SourceStore;
  repository: string;
  commit: string;
  reviewer: string;
  /** The reviewer's SSH private key file (or a public key file whose private key is in ssh-agent). */
  keyFile: string;
  timestamp?: string;
}): Promise<SignedReview> {
  const record: ReviewRecord = {
    type: REVIEW_TYPE,
    repository: options.repository,
    commit: options.commit,
    reviewer: options.reviewer,
    decision: 'approve',
    timestamp: options.timestamp ?? new Date().toISOString(),
  };
  parseReviewRecord(record, 'review');
  const payload = reviewPayload(record);
  const signature = await sshSign(options.keyFile, REVIEW_NAMESPACE, payload);
  const review: SignedReview = { id: sha256Hex(payload), record, signature };
  await verifyReview(review, await options.store.signers(options.repository));
  await options.store.addReview({
    id: review.id,
    repository: record.repository,
    commit: record.commit,
    reviewer: record.reviewer,
    record: canonicalJson(record),
    signature,
    createdAt: new Date().toISOString(),
  });
  return review;
}
