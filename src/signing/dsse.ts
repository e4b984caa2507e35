/**
 * DSSE envelopes (https://github.com/secure-systems-lab/dsse): the pre-authentication encoding,
 * signing with a {@link Signer}, strict parsing of untrusted envelopes and verification.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Signer } from './signer.ts';
import { base64String } from './strict-base64.ts';

/** A DSSE envelope in its JSON form: payload and signatures base64. */
export interface Envelope {
  payload: string;
  payloadType: string;
  signatures: { sig: string; keyid: string }[];
}

const MAX_SIGNATURES = 16;

/** The zod schema of an untrusted envelope; `keyid` may be absent and defaults to ''. */
export const envelopeSchema = z.strictObject({
  payload: base64String,
  payloadType: z.string().min(1).max(256),
  signatures: z
    .array(z.strictObject({ sig: base64String.min(1), keyid: z.string().max(256).default('') }))
    .min(1)
    .max(MAX_SIGNATURES),
});

/** PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths in bytes. */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'ascii'),
    type,
    Buffer.from(` ${payload.length} `, 'ascii'),
    payload,
  ]);
}

/** Sign `payload` of type `payloadType` into a one-signature envelope. */
export async function signEnvelope(
  payloadType: string,
  payload: Uint8Array,
  signer: Signer,
): Promise<Envelope> {
  const sig = await signer.sign(preAuthEncoding(payloadType, payload));
  return { payload: toBase64(payload), payloadType, signatures: [{ sig: toBase64(sig), keyid: '' }] };
}

/**
 * Parse an untrusted envelope (JSON text or a parsed value), strictly.
 * @throws GatehouseError BAD_INPUT naming the first problem
 */
export function parseEnvelope(input: unknown, where?: string): Envelope {
  let value = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', 'the DSSE envelope is not JSON', {
        cause: e,
        ...(where ? { where } : {}),
      });
    }
  }
  const parsed = envelopeSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') || '(root)';
    throw new GatehouseError(
      'BAD_INPUT',
      `the DSSE envelope field ${path} is invalid: ${issue?.message ?? 'unknown'}`,
      {
        cause: parsed.error,
        ...(where ? { where } : {}),
      },
    );
  }
  return parsed.data;
}

function toKeyObject(key: KeyObject | Uint8Array | string): KeyObject {
  if (typeof key === 'string') return createPublicKey(key);
  if (key instanceof Uint8Array)
    return createPublicKey({ key: Buffer.from(key), format: 'der', type: 'spki' });
  return key;
}

/**
 * Verify that at least one signature of `envelope` is by `publicKey` (PEM, DER SPKI or KeyObject)
 * and return the payload.
 * @throws GatehouseError SIGNATURE_INVALID
 */
export function verifyEnvelope(
  envelope: Envelope,
  publicKey: KeyObject | Uint8Array | string,
): { payloadType: string; payload: Buffer } {
  let key: KeyObject;
  try {
    key = toKeyObject(publicKey);
  } catch (e) {
    throw new GatehouseError('SIGNATURE_INVALID', 'the verification key is not a valid public key', {
      cause: e,
    });
  }
  const payload = Buffer.from(envelope.payload, 'base64');
  const pae = preAuthEncoding(envelope.payloadType, payload);
  const ok = envelope.signatures.some((s) => {
    try {
      return cryptoVerify('sha256', pae, key, Buffer.from(s.sig, 'base64'));
    } catch {
      return false;
    }
  });
  if (!ok)
    throw new GatehouseError('SIGNATURE_INVALID', 'no DSSE signature of the envelope verifies with the key');
  return { payloadType: envelope.payloadType, payload };
}
