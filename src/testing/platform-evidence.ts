/**
 * Sample cloud and TEE evidence for the tests (test support, not product code), built to the
 * published layouts with test CAs standing in for AMD, Intel, AWS, Google and Microsoft: no
 * vendor-signed evidence can be obtained offline, and none of this ran on real hardware.
 */
import '../signing/reflect-metadata-shim.ts';
import { createHash, randomUUID, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { type JSONWebKeySet, type JWK, SignJWT } from 'jose';
import { type CborValue, encodeCbor } from '../attestation/evidence/cbor.ts';

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
  /** Certify this public key (SPKI DER) instead of a fresh key pair's; `keys` then holds a throwaway pair. */
  subjectKey?: Buffer;
}): Promise<TestCert> {
  const keys = (await subtle.generateKey(opts.alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const subjectPublic =
    opts.subjectKey === undefined
      ? keys.publicKey
      : await subtle.importKey('spki', opts.subjectKey, { name: 'ECDSA', namedCurve: 'P-256' }, true, [
          'verify',
        ]);
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
          publicKey: subjectPublic,
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
  opts: { chipId?: Buffer; tcb?: SnpChain['tcb']; ark?: TestCert; ask?: TestCert; vlekCsp?: string } = {},
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
      // The KDS puts the 64 hwID bytes in the extension value as they are, without a tag; a
      // VLEK names its cloud provider instead.
      opts.vlekCsp === undefined
        ? new x509.Extension('1.3.6.1.4.1.3704.1.4', false, chipId)
        : new x509.Extension(
            '1.3.6.1.4.1.3704.1.5',
            false,
            new Uint8Array([0x16, opts.vlekCsp.length, ...Buffer.from(opts.vlekCsp)]),
          ),
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

// ---------------------------------------------------------------------------------------------
// Intel TDX

/** A test Intel chain: SGX Root CA ← Platform CA ← PCK (all P-256), and a QE attestation key. */
export interface TdxChain {
  readonly root: TestCert;
  readonly platformCa: TestCert;
  readonly pck: TestCert;
  readonly attestationKey: CryptoKeyPair;
}

export async function makeTdxChain(opts: { root?: TestCert } = {}): Promise<TdxChain> {
  const root =
    opts.root ?? (await makeCert({ name: 'CN=Intel SGX Root CA, O=Test Intel', alg: EC_P256, ca: true }));
  const platformCa = await makeCert({
    name: 'CN=Intel SGX PCK Platform CA, O=Test Intel',
    alg: EC_P256,
    issuer: root,
    ca: true,
  });
  const pck = await makeCert({
    name: 'CN=Intel SGX PCK Certificate, O=Test Intel',
    alg: EC_P256,
    issuer: platformCa,
  });
  const attestationKey = (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  return { root, platformCa, pck, attestationKey };
}

/** The fields of a sample TDX quote; the rest is zero. */
export interface TdxQuoteFields {
  reportData: Buffer;
  mrTd: Buffer;
  rtmrs?: Buffer[];
  tdAttributes?: bigint;
  teeTcbSvn?: Buffer;
  /** Sign the QE report with this key instead of the PCK's (an attacker's). */
  qeSigner?: webcrypto.CryptoKey;
  /** Bind this key in the QE report instead of the one signing the quote. */
  boundKey?: CryptoKeyPair;
  /** The PEM chain to embed (default: PCK, Platform CA, root). */
  pem?: string;
}

const pemOf = (c: TestCert) => c.cert.toString();

/** Build a TDX v4 quote: header, TD quote body, signature data with the QE report and PCK chain. */
export async function makeTdxQuote(chain: TdxChain, f: TdxQuoteFields): Promise<Buffer> {
  const header = Buffer.alloc(0x30);
  header.writeUInt16LE(4, 0);
  header.writeUInt16LE(2, 2);
  header.writeUInt32LE(0x81, 4);
  Buffer.from('939a7233f79c4ca9940a0db3957f0607', 'hex').copy(header, 12);
  const body = Buffer.alloc(0x248);
  (f.teeTcbSvn ?? Buffer.from('03000500000000000000000000000000', 'hex')).copy(body, 0);
  body.writeBigUInt64LE(f.tdAttributes ?? 0x10000000n, 0x78); // SEPT_VE_DISABLE
  f.mrTd.copy(body, 0x88);
  (f.rtmrs ?? []).forEach((r, i) => {
    r.copy(body, 0x148 + 48 * i);
  });
  f.reportData.copy(body, 0x208);
  const signed = Buffer.concat([header, body]);
  const sig = await signWith(chain.attestationKey.privateKey, EC_P256, signed);
  const akRaw = await rawEcPoint((f.boundKey ?? chain.attestationKey).publicKey);
  const qeAuth = Buffer.from('test QE authentication data');
  const qeReport = Buffer.alloc(0x180);
  Buffer.from('8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff', 'hex').copy(qeReport, 0x80);
  qeReport.writeUInt16LE(1, 0x100);
  qeReport.writeUInt16LE(8, 0x102);
  createHash('sha256').update(akRaw).update(qeAuth).digest().copy(qeReport, 0x140);
  const qeSig = await signWith(f.qeSigner ?? chain.pck.keys.privateKey, EC_P256, qeReport);
  const pem = Buffer.from(f.pem ?? [chain.pck, chain.platformCa, chain.root].map(pemOf).join(''), 'latin1');
  const authLen = Buffer.alloc(2);
  authLen.writeUInt16LE(qeAuth.length);
  const pckHead = Buffer.alloc(6);
  pckHead.writeUInt16LE(5, 0);
  pckHead.writeUInt32LE(pem.length, 2);
  const qeCert = Buffer.concat([qeReport, qeSig, authLen, qeAuth, pckHead, pem]);
  const certHead = Buffer.alloc(6);
  certHead.writeUInt16LE(6, 0);
  certHead.writeUInt32LE(qeCert.length, 2);
  const sigData = Buffer.concat([sig, await rawEcPoint(chain.attestationKey.publicKey), certHead, qeCert]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sigData.length);
  return Buffer.concat([signed, len, sigData]);
}

// ---------------------------------------------------------------------------------------------
// Azure Attestation

/** A test attestation provider: its RS256 key, JWKS (with x5c, as the provider publishes) and issuer. */
export interface AzureProvider {
  readonly issuer: string;
  readonly jwks: JSONWebKeySet;
  readonly signer: TestCert;
  readonly kid: string;
}

export async function makeAzureProvider(
  issuer = 'https://gatehousetest.weu.attest.azure.net',
): Promise<AzureProvider> {
  const signer = await makeCert({ name: 'CN=https://gatehousetest.weu.attest.azure.net', alg: RSA_256 });
  const jwk = (await subtle.exportKey('jwk', signer.keys.publicKey)) as JWK;
  const kid = createHash('sha256').update(signer.der).digest('base64url');
  return {
    issuer,
    signer,
    kid,
    jwks: {
      keys: [{ kty: 'RSA', n: jwk.n ?? '', e: jwk.e ?? '', kid, x5c: [signer.der.toString('base64')] }],
    },
  };
}

/** Sign Azure Attestation claims as the provider would (RS256, jku naming its /certs). */
export async function makeAzureToken(
  p: AzureProvider,
  claims: Record<string, unknown>,
  opts: { iat?: number; exp?: number; key?: webcrypto.CryptoKey; alg?: string } = {},
): Promise<string> {
  const iat = opts.iat ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: opts.alg ?? 'RS256', jku: `${p.issuer}/certs`, kid: p.kid, typ: 'JWT' })
    .setIssuer(p.issuer)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(opts.exp ?? iat + 8 * 3600)
    .setJti(randomUUID())
    .sign(opts.key ?? p.signer.keys.privateKey);
}

/** The claims of a confidential VM's token (SEV-SNP isolation), as the provider's CVM policy emits them. */
export function azureCvmClaims(over: {
  binding: Buffer;
  measurement: string;
  debuggable?: boolean;
  compliance?: string;
  type?: string;
}): Record<string, unknown> {
  return {
    'x-ms-ver': '1.0',
    'x-ms-attestation-type': 'azurevm',
    'x-ms-policy-hash': 'wm9mHlvTU82e8UqoOy1Yj1FBRSNkfe99-69IYDq9eWs',
    'x-ms-isolation-tee': {
      'x-ms-attestation-type': over.type ?? 'sevsnpvm',
      'x-ms-compliance-status': over.compliance ?? 'azure-compliant-cvm',
      'x-ms-sevsnpvm-is-debuggable': over.debuggable ?? false,
      'x-ms-sevsnpvm-launchmeasurement': over.measurement,
      'x-ms-sevsnpvm-vmpl': 0,
    },
    'x-ms-runtime': { 'client-payload': { nonce: over.binding.toString('base64url') }, keys: [] },
    nonce: 'echoed-request-nonce',
  };
}

// ---------------------------------------------------------------------------------------------
// AWS NitroTPM

/** A test AWS Nitro chain: root ← zonal ← instance CA ← the hypervisor's signing certificate, all P-384. */
export interface NitroChain {
  readonly root: TestCert;
  readonly intermediates: readonly TestCert[];
  readonly leaf: TestCert;
}

export async function makeNitroChain(): Promise<NitroChain> {
  const root = await makeCert({
    name: 'CN=aws.nitro-enclaves, C=US, O=Amazon, OU=AWS',
    alg: EC_P384,
    ca: true,
  });
  const zonal = await makeCert({
    name: 'CN=test.eu-west-1.aws.nitro-enclaves, O=Amazon',
    alg: EC_P384,
    issuer: root,
    ca: true,
  });
  const instance = await makeCert({
    name: 'CN=i-0test.eu-west-1.aws.nitro-enclaves, O=Amazon',
    alg: EC_P384,
    issuer: zonal,
    ca: true,
  });
  const leaf = await makeCert({
    name: 'CN=i-0test-nitrotpm.eu-west-1.aws, O=Amazon',
    alg: EC_P384,
    issuer: instance,
  });
  return { root, intermediates: [zonal, instance], leaf };
}

/** Build a signed NitroTPM attestation document (COSE_Sign1, tag 18, ES384). */
export async function makeNitroDocument(
  chain: NitroChain,
  f: {
    nonce?: Buffer | null;
    pcrs: ReadonlyMap<number, Buffer>;
    timestamp?: number;
    digest?: string;
    enclave?: boolean;
    signer?: webcrypto.CryptoKey;
  },
): Promise<Buffer> {
  const doc = new Map<CborValue, CborValue>([
    ['module_id', 'i-0test-nitrotpm'],
    ['digest', f.digest ?? 'SHA384'],
    ['timestamp', f.timestamp ?? Date.now()],
    [f.enclave === true ? 'pcrs' : 'nitrotpm_pcrs', new Map<CborValue, CborValue>([...f.pcrs])],
    ['certificate', chain.leaf.der],
    ['cabundle', [chain.root.der, ...chain.intermediates.map((c) => c.der)]],
    ['public_key', null],
    ['user_data', null],
    ['nonce', f.nonce ?? null],
  ]);
  const protectedHeader = encodeCbor(new Map<CborValue, CborValue>([[1, -35]]));
  const payload = encodeCbor(doc);
  const tbs = encodeCbor(['Signature1', protectedHeader, Buffer.alloc(0), payload]);
  const sig = await signWith(f.signer ?? chain.leaf.keys.privateKey, EC_P384, tbs);
  return encodeCbor({ tag: 18, value: [protectedHeader, new Map(), payload, sig] });
}

// ---------------------------------------------------------------------------------------------
// Google Cloud Shielded VM vTPM

function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len =
    n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
function derUint(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (((b[0] ?? 0) & 0x80) !== 0) b = Buffer.concat([Buffer.alloc(1), b]);
  return der(0x02, b);
}

/** The GCE instance-identity extension value, as the AK certificate carries it. */
export function gceInstanceExtension(i: {
  zone: string;
  projectNumber: bigint;
  projectId: string;
  instanceId: bigint;
  instanceName: string;
  isProduction?: boolean;
}): Buffer {
  const props = der(
    0x30,
    Buffer.concat([
      der(0xa0, derUint(1n)),
      der(0xa1, der(0x01, Buffer.from([i.isProduction === false ? 0 : 0xff]))),
    ]),
  );
  return der(
    0x30,
    Buffer.concat([
      der(0x0c, Buffer.from(i.zone)),
      derUint(i.projectNumber),
      der(0x0c, Buffer.from(i.projectId)),
      derUint(i.instanceId),
      der(0x0c, Buffer.from(i.instanceName)),
      der(0xa0, props),
    ]),
  );
}

/** A test Google chain: EK/AK CA Root ← EK/AK CA Intermediate (RSA), which issues AK certificates. */
export interface GcpChain {
  readonly root: TestCert;
  readonly intermediate: TestCert;
}

export async function makeGcpChain(): Promise<GcpChain> {
  const root = await makeCert({
    name: 'CN=EK/AK CA Root, OU=Google Cloud, O=Google LLC',
    alg: RSA_256,
    ca: true,
  });
  const intermediate = await makeCert({
    name: 'CN=EK/AK CA Intermediate, OU=Google Cloud, O=Google LLC',
    alg: RSA_256,
    issuer: root,
    ca: true,
  });
  return { root, intermediate };
}

/** Issue an AK certificate over an AK's SPKI, with the instance identity (omit it with `instance: null`). */
export async function makeGcpAkCert(
  chain: GcpChain,
  akSpki: Buffer,
  instance: Parameters<typeof gceInstanceExtension>[0] | null,
): Promise<TestCert> {
  return makeCert({
    name: 'CN=gatehouse-runner-1, OU=Google Cloud, O=Google LLC',
    alg: EC_P256,
    issuer: chain.intermediate,
    issuerAlg: RSA_256,
    subjectKey: akSpki,
    extensions:
      instance === null
        ? []
        : [new x509.Extension('1.3.6.1.4.1.11129.2.1.21', false, gceInstanceExtension(instance))],
  });
}

// ---------------------------------------------------------------------------------------------
// Revocation

/** A CRL signed by `issuer` listing `revoked` certificates (by their serial numbers). */
export async function makeCrl(
  issuer: TestCert,
  alg: Alg,
  revoked: readonly TestCert[],
  nextUpdate = new Date(Date.now() + 7 * DAY),
): Promise<Buffer> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subject.split('\n').join(', '),
    thisUpdate: new Date(Date.now() - DAY),
    nextUpdate,
    entries: revoked.map((c) => ({
      serialNumber: c.cert.serialNumber,
      revocationDate: new Date(Date.now() - DAY),
    })),
    signingAlgorithm: alg,
    signingKey: issuer.keys.privateKey,
  });
  return Buffer.from(crl.rawData);
}
