/**
 * The pieces both Sigstore bundle parsers share: the strict v0.3 one gatehouse verifies its own
 * bundles with ({@link parseBundle}) and the one for any bundle version other signers produce
 * (`parseSigstoreBundle` in src/verify): reading the JSON against a schema, and decoding a
 * transparency log entry with its proof hashes checked.
 */
import type { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

/** A BAD_BUNDLE error naming where the bundle came from. */
export function bundleError(message: string, where: string | undefined, cause?: unknown): GatehouseError {
  return new GatehouseError('BAD_BUNDLE', message, {
    ...(where === undefined ? {} : { where }),
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * Read an untrusted bundle (JSON text, bytes or a parsed value) against its schema.
 * @throws GatehouseError BAD_BUNDLE when it is not JSON, or naming the first invalid field
 */
export function readBundleJson<S extends z.ZodType>(
  json: unknown,
  schema: S,
  where: string | undefined,
): z.infer<S> {
  let value = json;
  if (typeof json === 'string' || json instanceof Uint8Array) {
    try {
      value = JSON.parse(typeof json === 'string' ? json : Buffer.from(json).toString('utf8'));
    } catch (e) {
      throw bundleError('the bundle is not JSON', where, e);
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw bundleError(
      `bundle field ${issue?.path.join('.') || '(root)'} is invalid: ${issue?.message ?? 'unknown'}`,
      where,
      parsed.error,
    );
  }
  return parsed.data;
}

/** A transparency log entry's JSON fields that both bundle formats share, base64 still encoded. */
interface TlogEntryJson {
  logId: { keyId: string };
  kindVersion: { kind: string; version: string };
  inclusionPromise?: { signedEntryTimestamp: string } | undefined;
  inclusionProof?: { rootHash: string; hashes: string[] } | undefined;
  canonicalizedBody: string;
}

/** The decoded fields of {@link TlogEntryJson}; `proof` is present when the entry has an inclusion proof. */
export interface DecodedTlogEntry {
  logId: Buffer;
  kind: string;
  version: string;
  signedEntryTimestamp: Buffer | undefined;
  canonicalizedBody: Buffer;
  proof: { rootHash: Buffer; hashes: Buffer[] } | undefined;
}

/**
 * Decode log entry `i` of a bundle.
 * @throws GatehouseError BAD_BUNDLE when its root hash or a proof hash is not 32 bytes
 */
export function decodeTlogEntry(e: TlogEntryJson, i: number, where: string | undefined): DecodedTlogEntry {
  const p = e.inclusionProof;
  const rootHash = p === undefined ? undefined : Buffer.from(p.rootHash, 'base64');
  const hashes = p?.hashes.map((h) => Buffer.from(h, 'base64')) ?? [];
  if (rootHash !== undefined && rootHash.length !== 32)
    throw bundleError(`tlog entry ${i} root hash is not 32 bytes`, where);
  if (hashes.some((h) => h.length !== 32))
    throw bundleError(`tlog entry ${i} has a proof hash that is not 32 bytes`, where);
  return {
    logId: Buffer.from(e.logId.keyId, 'base64'),
    kind: e.kindVersion.kind,
    version: e.kindVersion.version,
    signedEntryTimestamp:
      e.inclusionPromise === undefined
        ? undefined
        : Buffer.from(e.inclusionPromise.signedEntryTimestamp, 'base64'),
    canonicalizedBody: Buffer.from(e.canonicalizedBody, 'base64'),
    proof: rootHash === undefined ? undefined : { rootHash, hashes },
  };
}
