/**
 * The security role's acts: every one is signed over its kind, its name, its version and its
 * content together, so that a signature made for one act can never pass for another (another
 * policy, another project, an older version of the same one). Publications must be exactly the next
 * version, which turns a replayed signature into a refused one.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { canonicalJson, sha256Hex, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { preAuthEncoding } from './dsse.ts';
import type { Signer } from './signer.ts';

/** DSSE payload type of a security act. */
export const SECURITY_ACT_PAYLOAD = 'application/vnd.gatehouse.security-act.v1+json';

/** What the security role signs. */
export type SecurityActKind = 'policy' | 'project' | 'host' | 'ek-ca' | 'triage' | 'revocation';

/** One act: its kind and name, which version of that name it is, and what it says. */
export interface SecurityAct {
  kind: SecurityActKind;
  name: string;
  /** 1 for the first act of (kind, name), then each next one. */
  version: number;
  content: Record<string, unknown>;
}

/** A public key trusted to act as the security role. */
export interface TrustedKey {
  /** sha256 hex of the key's DER SubjectPublicKeyInfo. */
  keyId: string;
  publicKeyPem: string;
}

/** A signature by a security key over an act, as it travels and is stored. */
export interface SecuritySignature {
  /** Base64 DER ECDSA signature over the DSSE pre-authentication encoding. */
  signature: string;
  keyId: string;
}

/** The key id of a public key (sha256 hex of its SPKI). */
export function keyIdOf(spki: Uint8Array): string {
  return sha256Hex(spki);
}

/** The bytes signed for an act: the DSSE PAE of its canonical JSON. */
export function securityActBytes(act: SecurityAct): Buffer {
  const { kind, name, version, content } = act;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new GatehouseError('BAD_INPUT', `${kind} ${name}: version must be a whole number from 1`);
  return preAuthEncoding(
    SECURITY_ACT_PAYLOAD,
    new TextEncoder().encode(canonicalJson({ kind, name, version, content })),
  );
}

/** Sign an act with the security key. */
export async function signSecurityAct(act: SecurityAct, signer: Signer): Promise<SecuritySignature> {
  const sig = await signer.sign(securityActBytes(act));
  return { signature: toBase64(sig), keyId: keyIdOf(signer.publicKeySpki()) };
}

/**
 * Verify that an act was signed by a trusted security key.
 * @returns the key id that signed it
 * @throws GatehouseError SIGNATURE_INVALID when the key is not trusted or the signature does not verify
 */
export function verifySecurityAct(
  act: SecurityAct,
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
      securityActBytes(act),
      createPublicKey(key.publicKeyPem),
      Buffer.from(sig.signature, 'base64'),
    );
  } catch {
    ok = false;
  }
  if (!ok)
    throw new GatehouseError(
      'SIGNATURE_INVALID',
      `the security signature does not verify for ${act.kind} ${act.name} version ${act.version}`,
    );
  return key.keyId;
}
