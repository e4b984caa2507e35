/**
 * Sample cloud and TEE evidence for the tests (test support, not product code), built to the
 * published layouts with test CAs standing in for AMD, Intel, AWS, Google and Microsoft: no
 * vendor-signed evidence can be obtained offline, and none of this ran on real hardware.
 */
import '../signing/reflect-metadata-shim.ts';
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

const subtle = webcrypto.subtle;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** A certificate and its key pair. */
export interface TestCert {
  readonly cert: X509Certificate;
  readonly der: Buffer;
  readonly keys: CryptoKeyPair;
}

export const RSA_PSS_384 = {
  name: 'RSA-PSS',
  hash: 'SHA-384',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
  saltLength: 48,
} as const;
export const RSA_256 = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
export const EC_P384 = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } as const;
type Alg = typeof RSA_PSS_384 | typeof RSA_256 | typeof EC_P256 | typeof EC_P384;

const DAY = 86_400_000;
let serial = 1;

/** Make a certificate: a self-signed root when `issuer` is absent, else issued by it. */
export async function makeCert(opts: {
  name: string;
  alg: Alg;
  issuer?: TestCert;
  /** The issuer's signing algorithm (default: its own key's). */
  issuerAlg?: Alg;
  ca?: boolean;
  extensions?: x509.Extension[];
  notBefore?: Date;
  notAfter?: Date;
}): Promise<TestCert> {
  const keys = (await subtle.generateKey(opts.alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = opts.ca ?? false;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, undefined, true),
    new x509.KeyUsagesExtension(
      ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    ...(opts.extensions ?? []),
  ];
  const notBefore = opts.notBefore ?? new Date(Date.now() - DAY);
  const notAfter = opts.notAfter ?? new Date(Date.now() + 365 * DAY);
  const serialNumber = (serial++).toString(16).padStart(4, '0');
  const generated =
    opts.issuer === undefined
      ? await x509.X509CertificateGenerator.createSelfSigned({
          serialNumber,
          name: opts.name,
          notBefore,
          notAfter,
          signingAlgorithm: opts.alg,
          keys,
          extensions,
        })
      : await x509.X509CertificateGenerator.create({
          serialNumber,
          subject: opts.name,
          issuer: opts.issuer.cert.subject.split('\n').join(', '),
          notBefore,
          notAfter,
          signingAlgorithm: opts.issuerAlg ?? opts.alg,
          publicKey: keys.publicKey,
          signingKey: opts.issuer.keys.privateKey,
          extensions,
        });
  const der = Buffer.from(generated.rawData);
  return { cert: new X509Certificate(der), der, keys };
}

/** Sign with a WebCrypto key: ECDSA gives r ‖ s (IEEE P1363), RSA its usual form. */
export async function signWith(key: webcrypto.CryptoKey, alg: Alg, data: Uint8Array): Promise<Buffer> {
  const params =
    alg.name === 'ECDSA'
      ? { name: 'ECDSA', hash: alg.hash }
      : alg.name === 'RSA-PSS'
        ? { name: 'RSA-PSS', saltLength: alg.saltLength }
        : { name: alg.name };
  return Buffer.from(await subtle.sign(params, key, data));
}

/** The raw uncompressed point (x ‖ y) of an EC public key. */
export async function rawEcPoint(key: webcrypto.CryptoKey): Promise<Buffer> {
  return Buffer.from(await subtle.exportKey('raw', key)).subarray(1);
}

// ---------------------------------------------------------------------------------------------
// AMD SEV-SNP

/** A DER INTEGER of a small value. */
function derInt(n: number): Uint8Array {
  return n > 127 ? new Uint8Array([2, 2, 0, n]) : new Uint8Array([2, 1, n]);
}

/** A test AMD chain: ARK (root, RSA-PSS) ← ASK ← VCEK (P-384) for one chip at one TCB. */
export interface SnpChain {
  readonly ark: TestCert;
  readonly ask: TestCert;
  readonly vcek: TestCert;
  readonly chipId: Buffer;
  readonly tcb: { bootloader: number; tee: number; snp: number; microcode: number };
}

export async function makeSnpChain(
  opts: { chipId?: Buffer; tcb?: SnpChain['tcb']; ark?: TestCert; ask?: TestCert } = {},
): Promise<SnpChain> {
  const ark = opts.ark ?? (await makeCert({ name: 'CN=ARK-Milan, O=Test AMD', alg: RSA_PSS_384, ca: true }));
  const ask =
    opts.ask ??
    (await makeCert({ name: 'CN=SEV-Milan, O=Test AMD', alg: RSA_PSS_384, issuer: ark, ca: true }));
  const chipId = opts.chipId ?? createHash('sha512').update('test chip').digest();
  const tcb = opts.tcb ?? { bootloader: 3, tee: 0, snp: 14, microcode: 209 };
  const vcek = await makeCert({
    name: 'CN=SEV-VCEK, O=Test AMD',
    alg: EC_P384,
    issuer: ask,
    issuerAlg: RSA_PSS_384,
    extensions: [
      new x509.Extension('1.3.6.1.4.1.3704.1.1', false, derInt(1)),
      new x509.Extension(
        '1.3.6.1.4.1.3704.1.2',
        false,
        new Uint8Array([0x16, 8, ...Buffer.from('Milan-B0')]),
      ),
      new x509.Extension('1.3.6.1.4.1.3704.1.3.1', false, derInt(tcb.bootloader)),
      new x509.Extension('1.3.6.1.4.1.3704.1.3.2', false, derInt(tcb.tee)),
      new x509.Extension('1.3.6.1.4.1.3704.1.3.3', false, derInt(tcb.snp)),
      new x509.Extension('1.3.6.1.4.1.3704.1.3.8', false, derInt(tcb.microcode)),
      // The KDS puts the 64 hwID bytes in the extension value as they are, without a tag.
      new x509.Extension('1.3.6.1.4.1.3704.1.4', false, chipId),
    ],
  });
  return { ark, ask, vcek, chipId, tcb };
}

/** The fields of a sample report; the rest is zero. */
export interface SnpReportFields {
  version?: number;
  policy?: bigint;
  vmpl?: number;
  reportData: Buffer;
  measurement: Buffer;
  chipId: Buffer;
  tcb: SnpChain['tcb'];
  signingKey?: number;
  maskChipKey?: boolean;
}

/** Build and sign an ATTESTATION_REPORT (0x4A0 bytes) with the chain's VCEK. */
export async function makeSnpReport(chain: SnpChain, f: SnpReportFields): Promise<Buffer> {
  const r = Buffer.alloc(0x4a0);
  r.writeUInt32LE(f.version ?? 2, 0x0);
  r.writeUInt32LE(1, 0x4); // GUEST_SVN
  r.writeBigUInt64LE(f.policy ?? 0x30000n, 0x8); // SMT allowed, reserved bit 17 set
  r.writeUInt32LE(f.vmpl ?? 0, 0x30);
  r.writeUInt32LE(1, 0x34); // ECDSA P-384 with SHA-384
  const tcb = [f.tcb.bootloader, f.tcb.tee, 0, 0, 0, 0, f.tcb.snp, f.tcb.microcode];
  Buffer.from(tcb).copy(r, 0x38); // CURRENT_TCB
  r.writeUInt32LE(((f.signingKey ?? 0) << 2) | (f.maskChipKey === true ? 2 : 0), 0x48);
  f.reportData.copy(r, 0x50);
  f.measurement.copy(r, 0x90);
  Buffer.from(tcb).copy(r, 0x180); // REPORTED_TCB
  if ((f.version ?? 2) >= 3) r.writeUInt8(0x19, 0x188); // CPUID family: Milan/Genoa
  (f.maskChipKey === true ? Buffer.alloc(64) : f.chipId).copy(r, 0x1a0);
  Buffer.from(tcb).copy(r, 0x1e0); // COMMITTED_TCB
  Buffer.from(tcb).copy(r, 0x1f0); // LAUNCH_TCB
  const sig = await signWith(chain.vcek.keys.privateKey, EC_P384, r.subarray(0, 0x2a0));
  // r and s, each 48 bytes big-endian, go in 72-byte little-endian fields.
  Buffer.from(sig.subarray(0, 48)).reverse().copy(r, 0x2a0);
  Buffer.from(sig.subarray(48, 96))
    .reverse()
    .copy(r, 0x2a0 + 72);
  return r;
}
