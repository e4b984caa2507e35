import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { canonicalJson, sha256Hex, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { preAuthEncoding } from './dsse.ts';
import type { Signer } from './signer.ts';

/** DSSE payload types of the acts only the security role may sign. */
export const SECURITY_PAYLOAD = {
  policy: 'application/vnd.gatehouse.policy.v1+yaml',
  binding: 'application/vnd.gatehouse.policy-binding.v1+json',
  triage: 'application/vnd.gatehouse.triage.v1+json',
  revoke: 'application/vnd.gatehouse.revoke.v1+json',
} as const;

export type SecurityPayloadType = (typeof SECURITY_PAYLOAD)[keyof typeof SECURITY_PAYLOAD];

/** A public key trusted to act as the security role. */
export interface TrustedKey {
  /** sha256 hex of the key's DER SubjectPublicKeyInfo. */
  keyId: string;
  publicKeyPem: string;
}

/** A signature by a security key over a payload, as it travels and is stored. */
export interface SecuritySignature {
  /** Base64 DER ECDSA signature over the DSSE pre-authentication encoding. */
  signature: string;
  keyId: string;
}

/** The key id of a public key (sha256 hex of its SPKI). */
export function keyIdOf(spki: Uint8Array): string {
  return sha256Hex(spki);
}

/** The bytes signed for a payload: the DSSE PAE of its type and content. */
function signedBytes(type: SecurityPayloadType, payload: string | Record<string, unknown>): Buffer {
  const bytes = new TextEncoder().encode(typeof payload === 'string' ? payload : canonicalJson(payload));
  return preAuthEncoding(type, bytes);
}

/** Sign a security act (a policy text, a binding, a triage) with the security key. */
export async function signSecurityAct(
  type: SecurityPayloadType,
  payload: string | Record<string, unknown>,
  signer: Signer,
): Promise<SecuritySignature> {
  const sig = await signer.sign(signedBytes(type, payload));
  return { signature: toBase64(sig), keyId: keyIdOf(signer.publicKeySpki()) };
}

/**
 * Verify that a security act was signed by a trusted security key.
 * @returns the key id that signed it
 * @throws GatehouseError SIGNATURE_INVALID when the key is not trusted or the signature does not verify
 */
export function verifySecurityAct(
  type: SecurityPayloadType,
  payload: string | Record<string, unknown>,
  sig: SecuritySignature,
  trusted: readonly TrustedKey[],
): string {
  const key = trusted.find((k) => k.keyId === sig.keyId);
  if (key === undefined)
    throw new GatehouseError(
      'SIGNATURE_INVALID',
      `key ${sig.keyId.slice(0, 16)}… is not a trusted security key`,
    );
  let ok = false;
  try {
    ok = cryptoVerify(
      'sha256',
      signedBytes(type, payload),
      createPublicKey(key.publicKeyPem),
      Buffer.from(sig.signature, 'base64'),
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new GatehouseError('SIGNATURE_INVALID', 'the security signature does not verify');
  return key.keyId;
}
