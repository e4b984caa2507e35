/**
 * The issuer of per-job vTPM EK certificates: a key inside the host TPM (see HostTpm), which
 * signs each certificate's TBSCertificate through TPM2_Sign. No file holds the key; a home's
 * files let nobody issue a certificate the authority accepts.
 */
import type { KeyObject, webcrypto } from 'node:crypto';
import '../signing/reflect-metadata-shim.ts';
import * as x509 from '@peculiar/x509';
import { keyIdentifierOf } from './ek-certificate.ts';
import { type HostTpm, keyOfTpm2bPublic } from './host-tpm.ts';
import { ekCertificateExtensions, resignCertificate } from './manufacturer.ts';

x509.cryptoProvider.set(globalThis.crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** How long a vTPM EK certificate is valid: a pooled state waits days at most before its one job. */
const VTPM_CERT_DAYS = 30;

/** Issues a vTPM's EK certificate for its EK public key. */
export interface VtpmEkCertIssuer {
  issue(ek: KeyObject): Promise<Buffer>;
}

/** The vTPM EK certificate issuer whose key lives in the host TPM. */
export class HostTpmVtpmCa implements VtpmEkCertIssuer {
  readonly #tpm: HostTpm;
  readonly #keyId: string;
  readonly #name: string;
  #placeholder: webcrypto.CryptoKeyPair | undefined;

  private constructor(tpm: HostTpm, key: KeyObject) {
    this.#tpm = tpm;
    this.#keyId = keyIdentifierOf(key);
    this.#name = `CN=gatehouse vTPM EK CA ${this.#keyId.slice(0, 16)}, O=gatehouse runner host`;
  }

  /** The host TPM's vTPM CA key (created the first time). @throws GatehouseError TPM_UNAVAILABLE */
  static async open(tpm: HostTpm): Promise<HostTpmVtpmCa> {
    return new HostTpmVtpmCa(tpm, keyOfTpm2bPublic(await tpm.ensureVtpmCaKey(), 'vTPM CA key'));
  }

  /** The key identifier (SHA-1 of the public key bits) the certificates name as their authority. */
  get keyId(): string {
    return this.#keyId;
  }

  async issue(ek: KeyObject): Promise<Buffer> {
    // The generator needs a key to sign with; its signature is replaced by the TPM's over the same
    // TBSCertificate (same algorithm, ecdsa-with-SHA256), so this key signs nothing that is kept.
    this.#placeholder ??= await globalThis.crypto.subtle.generateKey(EC, false, ['sign', 'verify']);
    const now = Date.now();
    const draft = await x509.X509CertificateGenerator.create({
      serialNumber: `1${Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(15))).toString('hex')}`,
      subject: '',
      issuer: this.#name,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + VTPM_CERT_DAYS * 24 * 3600 * 1000),
      publicKey: ek.export({ format: 'der', type: 'spki' }),
      signingKey: this.#placeholder.privateKey,
      signingAlgorithm: EC,
      extensions: await ekCertificateExtensions(
        ek,
        { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' },
        this.#keyId,
      ),
    });
    return resignCertificate(Buffer.from(draft.rawData), (tbs) => this.#tpm.signWithVtpmCaKey(tbs));
  }
}
