/**
 * A key that signs. Adapters: FileKeySigner (PKCS#8 key file in the home), EphemeralSigner
 * (in-memory, per-job leaf keys); at scale a PKCS#11 HSM or a cloud KMS.
 */
export interface Signer {
  /** The only algorithm gatehouse signs with: ECDSA on P-256 with SHA-256. */
  readonly algorithm: 'ecdsa-p256-sha256';
  /** The public key as DER SubjectPublicKeyInfo. */
  publicKeySpki(): Uint8Array;
  /** The public key as a PEM `PUBLIC KEY` block. */
  publicKeyPem(): string;
  /** Sign `data` (hashed with SHA-256 here); returns a DER-encoded ECDSA signature. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}
