/**
 * The revocation list: the artifact digests the security role revoked, signed by the log key so
 * that deploy-time verifiers (which hold the trusted root) can check a list fetched from anywhere.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { canonicalJson, sha256, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { preAuthEncoding } from './dsse.ts';
import type { Signer } from './signer.ts';
import { type ParsedTrustedRoot, parseTrustedRoot } from './trust-root.ts';

/** DSSE payload type under which the control plane signs a revocation list with the log key. */
export const REVOCATIONS_PAYLOAD = 'application/vnd.gatehouse.revocations.v1+json';

const revocationSchema = z
  .object({
    version: z.literal(1),
    revoked: z.array(
      z
        .object({
          digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
          reason: z.string().max(1000),
          revokedAt: z.iso.datetime({ offset: true }),
          /** The transparency-log entry of the `revoke` decision (logged revocations only). */
          logIndex: z.number().int().nonnegative().optional(),
        })
        .strict(),
    ),
    /** When the control plane signed the list (signed lists only). */
    issuedAt: z.iso.datetime({ offset: true }).optional(),
    signature: z
      .object({ keyId: z.string().min(1).max(100), sig: z.string().min(1).max(400) })
      .strict()
      .optional(),
  })
  .strict();

export type RevocationList = z.infer<typeof revocationSchema>;

/**
 * Parse a revocation list: `{ "version": 1, "revoked": [{ "digest", "reason", "revokedAt",
 * "logIndex"? }], "issuedAt"?, "signature"? }`. A digest is a manifest digest or a file digest.
 * @throws GatehouseError BAD_INPUT
 */
export function parseRevocations(text: string, where: string): RevocationList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'the revocation list is not valid JSON', { where, cause: e });
  }
  const r = revocationSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `the revocation list is malformed at ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`,
      {
        where,
      },
    );
  }
  return r.data;
}

/** Read a revocation list file; a missing file is an empty list only when `optional`. */
export async function readRevocations(path: string, optional = false): Promise<RevocationList> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, revoked: [] };
    throw new GatehouseError('BAD_INPUT', 'cannot read the revocation list', { where: path, cause: e });
  }
  return parseRevocations(text, path);
}

/**
 * Check a signed revocation list against the log keys of a trusted root, and that it is fresh.
 * @throws GatehouseError VERIFICATION_FAILED (unsigned, unknown key, bad signature, stale or from the future)
 */
export function verifyRevocationList(
  list: RevocationList,
  trustedRoot: unknown,
  options: { now?: Date; maxAgeMs?: number; where?: string } = {},
): RevocationList {
  const where = options.where ?? 'the revocation list';
  const fail = (m: string): never => {
    throw new GatehouseError('VERIFICATION_FAILED', `${where}: ${m}`);
  };
  const { signature, ...body } = list;
  if (signature === undefined || body.issuedAt === undefined) return fail('the list is not signed');
  const root: ParsedTrustedRoot = parseTrustedRoot(trustedRoot);
  const keyId = Buffer.from(signature.keyId, 'base64');
  const log = root.tlogs.find((t) => t.logId.equals(keyId));
  if (log === undefined) return fail('the list is signed by a key that is not a log key of the trusted root');
  let ok = false;
  try {
    ok = cryptoVerify(
      'sha256',
      preAuthEncoding(REVOCATIONS_PAYLOAD, new TextEncoder().encode(canonicalJson(body))),
      createPublicKey({ key: log.spkiDer, format: 'der', type: 'spki' }),
      Buffer.from(signature.sig, 'base64'),
    );
  } catch {
    ok = false;
  }
  if (!ok) fail('the signature does not verify');
  // A replayed old list would hide newer revocations: only a recently issued one counts.
  const now = (options.now ?? new Date()).getTime();
  const issued = Date.parse(body.issuedAt);
  const maxAge = options.maxAgeMs ?? 10 * 60_000;
  if (issued > now + 5 * 60_000) fail(`it was issued in the future (${body.issuedAt})`);
  if (now - issued > maxAge)
    fail(`it was issued at ${body.issuedAt}, more than ${Math.round(maxAge / 1000)} s ago`);
  return list;
}

/**
 * Sign a revocation list with the log key: the signature covers the DSSE pre-authentication
 * encoding of the list's canonical JSON (without `signature`) under its own payload type, so it
 * can never be taken for a checkpoint or an entry. `keyId` is the log id the trusted root lists
 * (base64 SHA-256 of the key's SPKI), which is how a verifier finds the key.
 */
export async function signRevocationList(
  list: RevocationList,
  signer: Signer,
  now = new Date(),
): Promise<RevocationList> {
  const { signature: _old, ...rest } = list;
  const body = { ...rest, issuedAt: now.toISOString() };
  const sig = await signer.sign(
    preAuthEncoding(REVOCATIONS_PAYLOAD, new TextEncoder().encode(canonicalJson(body))),
  );
  return {
    ...body,
    signature: { keyId: toBase64(sha256(signer.publicKeySpki())), sig: toBase64(sig) },
  };
}
