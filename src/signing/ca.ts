/**
 * The internal certificate authority: a self-signed root (10 years) and an intermediate (5 years)
 * whose keys are files in the home, issuing short-lived Fulcio-style leaf certificates for
 * per-job signing keys. Certificates are signed through the {@link Signer} interface, so the
 * intermediate key can move to an HSM or KMS without changing this file.
 */
import { createHash, createPublicKey, X509Certificate as NodeX509, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import './reflect-metadata-shim.ts';
import * as x509 from '@peculiar/x509';
import { GatehouseError } from '../common/errors.ts';
import { pathExists } from '../common/files.ts';
import {
  POISON_VALUE,
  PRECERT_POISON_OID,
  type PrecertificateLog,
  SCT_LIST_OID,
  sctListExtensionValue,
} from './ct.ts';
import { FileKeySigner } from './file-key-signer.ts';
import { type KeyProtection, readKeptFile } from './key-file.ts';
import { issueLeafDer, keyIdOf, type LeafTemplate, subjectNameOf } from './leaf-der.ts';
import type { Signer } from './signer.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** Fulcio certificate extension OIDs (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md). */
export const FULCIO_OIDS = {
  /** Deprecated issuer: the raw string as the extension value. */
  issuerV1: '1.3.6.1.4.1.57264.1.1',
  issuer: '1.3.6.1.4.1.57264.1.8',
  buildSignerUri: '1.3.6.1.4.1.57264.1.9',
  buildSignerDigest: '1.3.6.1.4.1.57264.1.10',
  runnerEnvironment: '1.3.6.1.4.1.57264.1.11',
  sourceRepositoryUri: '1.3.6.1.4.1.57264.1.12',
  sourceRepositoryDigest: '1.3.6.1.4.1.57264.1.13',
  sourceRepositoryRef: '1.3.6.1.4.1.57264.1.14',
  sourceRepositoryOwnerUri: '1.3.6.1.4.1.57264.1.16',
  buildConfigUri: '1.3.6.1.4.1.57264.1.18',
  buildConfigDigest: '1.3.6.1.4.1.57264.1.19',
  runInvocationUri: '1.3.6.1.4.1.57264.1.21',
} as const;

/** The build facts a leaf certificate carries, each as a Fulcio extension. */
export interface LeafExtensions {
  buildSignerUri?: string;
  buildSignerDigest?: string;
  runnerEnvironment?: string;
  sourceRepositoryUri?: string;
  sourceRepositoryDigest?: string;
  sourceRepositoryRef?: string;
  sourceRepositoryOwnerUri?: string;
  buildConfigUri?: string;
  buildConfigDigest?: string;
  runInvocationUri?: string;
}

export interface LeafRequest {
  /** DER SubjectPublicKeyInfo of the key the certificate binds (an ephemeral per-job key). */
  publicKeySpki: Uint8Array;
  /** The build identity, a URI: the one SAN of the certificate. */
  identity: string;
  /** Who vouched for the identity (the OIDC-issuer analogue), a URI. */
  issuer: string;
  /** Lifetime in minutes; default 10. */
  validityMinutes?: number;
  /** Start of validity; default now. */
  notBefore?: Date;
  extensions?: LeafExtensions;
}

const FILES = {
  rootKey: 'root.key.pem',
  rootCert: 'root.crt.pem',
  intermediateKey: 'intermediate.key.pem',
  intermediateCert: 'intermediate.crt.pem',
} as const;

const YEAR_MS = 365.25 * 24 * 3600 * 1000;
const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/** DER UTF8String of `s`: the encoding Fulcio uses for its v2 extensions. */
export function derUtf8String(s: string): Uint8Array {
  const bytes = Buffer.from(s, 'utf8');
  return new Uint8Array(Buffer.concat([Buffer.from([0x0c]), derLength(bytes.length), bytes]));
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const out: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) out.unshift(x % 256);
  return Buffer.from([0x80 | out.length, ...out]);
}

/** Convert a DER ECDSA signature to the fixed-size r ‖ s form WebCrypto (and @peculiar/x509) uses. */
export function derToP1363(der: Uint8Array, size = 32): Uint8Array {
  const fail = (): never => {
    throw new GatehouseError('INTERNAL', 'the signer returned a malformed DER ECDSA signature');
  };
  let i = 0;
  const byte = (): number => der[i++] ?? fail();
  if (byte() !== 0x30) fail();
  let len = byte();
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + byte();
  }
  const int = (): Uint8Array => {
    if (byte() !== 0x02) fail();
    const l = byte();
    const v = der.subarray(i, i + l);
    i += l;
    let start = 0;
    while (start < v.length - 1 && v[start] === 0) start++;
    const trimmed = v.subarray(start);
    if (trimmed.length > size) fail();
    const out = new Uint8Array(size);
    out.set(trimmed, size - trimmed.length);
    return out;
  };
  const r = int();
  const s = int();
  return new Uint8Array([...r, ...s]);
}

/** A WebCrypto facade whose only private-key operation goes through `signer`. */
type GeneratorCrypto = Parameters<typeof x509.X509CertificateGenerator.create>[1];
type GeneratorKey = x509.X509CertificateCreateWithKeyParams['signingKey'];

function signerCrypto(signer: Signer): { crypto: GeneratorCrypto; key: GeneratorKey } {
  const subtle = {
    sign: async (_alg: unknown, _key: unknown, data: ArrayBuffer | ArrayBufferView): Promise<ArrayBuffer> => {
      const bytes =
        data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const raw = derToP1363(await signer.sign(bytes));
      return raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
    },
  };
  const crypto = {
    subtle,
    getRandomValues: <T extends ArrayBufferView>(a: T): T =>
      globalThis.crypto.getRandomValues(a as never) as T,
  } as unknown as GeneratorCrypto;
  const key = {
    algorithm: { name: 'ECDSA', namedCurve: 'P-256' },
    type: 'private',
    usages: ['sign'],
  } as unknown as GeneratorKey;
  return { crypto, key };
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits; hex. */
export function keyIdentifier(spkiDer: Uint8Array): string {
  const jwk = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' }).export({
    format: 'jwk',
  });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) {
    throw new GatehouseError('BAD_INPUT', 'the public key is not an ECDSA P-256 key');
  }
  const point = Buffer.concat([
    Buffer.from([0x04]),
    Buffer.from(jwk.x, 'base64url'),
    Buffer.from(jwk.y, 'base64url'),
  ]);
  // SHA-1 here names a key; it is an identifier, not a security function.
  return createHash('sha1').update(point).digest('hex');
}

export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

function isUri(s: string): boolean {
  try {
    return new URL(s).protocol.length > 1;
  } catch {
    return false;
  }
}

/** The internal CA: root and intermediate certificates, and the intermediate's signing key. */
export class InternalCa {
  readonly #intermediateSigner: Signer;
  readonly #root: x509.X509Certificate;
  readonly #intermediate: x509.X509Certificate;
  readonly #intermediateName: Buffer;
  readonly #intermediateKeyId: Buffer;

  private constructor(
    intermediateSigner: Signer,
    root: x509.X509Certificate,
    intermediate: x509.X509Certificate,
  ) {
    this.#intermediateSigner = intermediateSigner;
    this.#root = root;
    this.#intermediate = intermediate;
    this.#intermediateName = subjectNameOf(Buffer.from(intermediate.rawData));
    this.#intermediateKeyId = keyIdOf(new Uint8Array(intermediate.publicKey.rawData));
  }

  /**
   * Create a root and an intermediate in `dir`, refusing to overwrite any existing file.
   * @throws GatehouseError CONFLICT when a CA file exists, STORE_ERROR when one cannot be written
   */
  static async create(
    dir: string,
    options: { name: string; now?: Date; protection?: KeyProtection; intermediateSigner?: Signer },
  ): Promise<InternalCa> {
    for (const f of Object.values(FILES)) {
      // With an HSM-held intermediate there is no intermediate key file to collide with.
      if (f === FILES.intermediateKey && options.intermediateSigner !== undefined) continue;
      const path = join(dir, f);
      if (await pathExists(path)) {
        throw new GatehouseError('CONFLICT', 'a CA file already exists; refusing to overwrite it', {
          where: path,
        });
      }
    }
    const now = options.now ?? new Date();
    const protection = options.protection ?? { kind: 'none' };
    const rootKey = await FileKeySigner.generate(join(dir, FILES.rootKey), protection, 'ca-root');
    const intermediateKey =
      options.intermediateSigner ??
      (await FileKeySigner.generate(join(dir, FILES.intermediateKey), protection, 'ca-intermediate'));
    const rootName: x509.JsonName = [{ O: [options.name] }, { CN: [`${options.name} root CA`] }];
    const intermediateName: x509.JsonName = [
      { O: [options.name] },
      { CN: [`${options.name} intermediate CA`] },
    ];
    const rootSpki = rootKey.publicKeySpki();
    const rootKid = keyIdentifier(rootSpki);
    const root = await issue(rootKey, {
      serialNumber: randomSerial(),
      subject: rootName,
      issuer: rootName,
      notBefore: now,
      notAfter: new Date(now.getTime() + 10 * YEAR_MS),
      publicKey: rootSpki,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectKeyIdentifierExtension(rootKid),
      ],
    });
    const intermediateSpki = intermediateKey.publicKeySpki();
    const intermediate = await issue(rootKey, {
      serialNumber: randomSerial(),
      subject: intermediateName,
      issuer: root.subjectName,
      notBefore: now,
      notAfter: new Date(now.getTime() + 5 * YEAR_MS),
      publicKey: intermediateSpki,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning]),
        new x509.SubjectKeyIdentifierExtension(keyIdentifier(intermediateSpki)),
        new x509.AuthorityKeyIdentifierExtension(rootKid),
      ],
    });
    try {
      await writeFile(join(dir, FILES.rootCert), root.toString('pem'), { flag: 'wx', mode: 0o644 });
      await writeFile(join(dir, FILES.intermediateCert), intermediate.toString('pem'), {
        flag: 'wx',
        mode: 0o644,
      });
    } catch (e) {
      throw new GatehouseError('STORE_ERROR', 'cannot write the CA certificates', { where: dir, cause: e });
    }
    return new InternalCa(intermediateKey, root, intermediate);
  }

  /**
   * Load the CA from `dir`. Only the intermediate key is read: the root key can live offline.
   * @throws GatehouseError NOT_FOUND, BAD_CONFIG when a file is malformed or the key does not match
   */
  static async load(
    dir: string,
    protection: KeyProtection = { kind: 'none' },
    intermediateSigner?: Signer,
  ): Promise<InternalCa> {
    const root = await readCert(join(dir, FILES.rootCert));
    const intermediate = await readCert(join(dir, FILES.intermediateCert));
    const keyPath = join(dir, FILES.intermediateKey);
    const key = intermediateSigner ?? (await FileKeySigner.load(keyPath, protection, 'ca-intermediate'));
    if (!Buffer.from(key.publicKeySpki()).equals(Buffer.from(intermediate.publicKey.rawData))) {
      throw new GatehouseError(
        'BAD_CONFIG',
        'the intermediate key does not match the intermediate certificate',
        {
          where: keyPath,
        },
      );
    }
    return new InternalCa(key, root, intermediate);
  }

  /** The root certificate, PEM. */
  rootPem(): string {
    return this.#root.toString('pem');
  }

  /** The intermediate certificate, PEM. */
  intermediatePem(): string {
    return this.#intermediate.toString('pem');
  }

  /** The chain above a leaf, nearest first: [intermediate, root]. */
  chainPem(): string[] {
    return [this.intermediatePem(), this.rootPem()];
  }

  /** When the root became valid: the `validFor.start` of the CA in a trusted root. */
  validFrom(): Date {
    return this.#root.notBefore;
  }

  /**
   * Issue a Fulcio-style leaf: empty subject, one critical URI SAN, digitalSignature, codeSigning,
   * and the Fulcio extensions for issuer and build facts.
   * With `ctLogs`, the leaf is first issued as a precertificate (the critical poison extension in
   * place of the SCT list), submitted to each log, and then issued with their SCTs embedded in the
   * SCT list extension, as Fulcio does: the two TBS differ in that one extension only.
   * @throws GatehouseError BAD_INPUT for a non-URI identity or issuer, a bad key or lifetime; what
   *   a CT log throws when it refuses the precertificate (nothing is issued then)
   */
  async issueLeaf(req: LeafRequest, ctLogs: readonly PrecertificateLog[] = []): Promise<string> {
    if (!isUri(req.identity))
      throw new GatehouseError('BAD_INPUT', `the identity '${req.identity}' is not a URI`);
    if (req.issuer.length === 0) throw new GatehouseError('BAD_INPUT', 'the issuer cannot be empty');
    const minutes = req.validityMinutes ?? 10;
    if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) {
      throw new GatehouseError('BAD_INPUT', `a leaf lifetime of ${minutes} minutes is outside (0, 1440]`);
    }
    const notBefore = req.notBefore ?? new Date();
    const notAfter = new Date(notBefore.getTime() + minutes * 60_000);
    if (notAfter > this.#intermediate.notAfter) {
      throw new GatehouseError('BAD_CONFIG', 'the intermediate certificate expires before the leaf would');
    }
    if (!/^[\x21-\x7e]+$/.test(req.identity)) {
      throw new GatehouseError('BAD_INPUT', `the identity '${req.identity}' is not an ASCII URI`);
    }
    const extraExtensions: { oid: string; value: Uint8Array }[] = [
      { oid: FULCIO_OIDS.issuerV1, value: Buffer.from(req.issuer, 'utf8') },
      { oid: FULCIO_OIDS.issuer, value: derUtf8String(req.issuer) },
    ];
    for (const [name, value] of Object.entries(req.extensions ?? {})) {
      if (value === undefined) continue;
      const oid = FULCIO_OIDS[name as keyof LeafExtensions];
      if (oid === undefined) throw new GatehouseError('BAD_INPUT', `unknown leaf extension '${name}'`);
      extraExtensions.push({ oid, value: derUtf8String(value) });
    }
    // Encoded directly (leaf-der.ts): the same fields the generic builder wrote, an order of
    // magnitude faster, and every approval issues a leaf.
    const template: LeafTemplate = {
      serialHex: randomSerial(),
      issuerName: this.#intermediateName,
      notBefore,
      notAfter,
      spkiDer: req.publicKeySpki,
      subjectKeyId: keyIdOf(req.publicKeySpki),
      authorityKeyId: this.#intermediateKeyId,
      identityUri: req.identity,
      extraExtensions,
    };
    let der: Buffer;
    if (ctLogs.length === 0) {
      der = await issueLeafDer(template, this.#intermediateSigner);
    } else {
      // The poison and the SCT list take the same (last) place, so that removing either from its
      // certificate leaves the same TBS: the one the SCTs sign.
      const precert = await issueLeafDer(
        {
          ...template,
          extraExtensions: [
            ...extraExtensions,
            { oid: PRECERT_POISON_OID, value: POISON_VALUE, critical: true },
          ],
        },
        this.#intermediateSigner,
      );
      const chain = [precert, Buffer.from(this.#intermediate.rawData), Buffer.from(this.#root.rawData)];
      const scts = await Promise.all(ctLogs.map((log) => log.addPreChain(chain)));
      der = await issueLeafDer(
        {
          ...template,
          extraExtensions: [...extraExtensions, { oid: SCT_LIST_OID, value: sctListExtensionValue(scts) }],
        },
        this.#intermediateSigner,
      );
    }
    const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
    return `-----BEGIN CERTIFICATE-----\n${b64.replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
  }
}

export interface IssueParams {
  serialNumber: string;
  subject?: x509.JsonName;
  issuer: x509.JsonName | x509.Name;
  notBefore: Date;
  notAfter: Date;
  publicKey: Uint8Array;
  extensions: x509.Extension[];
}

/** Issue a certificate signed through `signer` (ECDSA P-256 SHA-256). */
export async function issueCertificate(signer: Signer, params: IssueParams): Promise<x509.X509Certificate> {
  return issue(signer, params);
}

async function issue(signer: Signer, params: IssueParams): Promise<x509.X509Certificate> {
  const { crypto, key } = signerCrypto(signer);
  return x509.X509CertificateGenerator.create(
    { ...params, signingKey: key, signingAlgorithm: ECDSA_P256 },
    crypto,
  );
}

async function readCert(path: string): Promise<x509.X509Certificate> {
  const pem = await readKeptFile(path, 'CA certificate');
  try {
    new NodeX509(pem);
    return new x509.X509Certificate(pem);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', 'the CA certificate is not a valid PEM certificate', {
      where: path,
      cause: e,
    });
  }
}
