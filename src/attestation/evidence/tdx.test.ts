import assert from 'node:assert/strict';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  EC_P256,
  makeCrl,
  makeTdxChain,
  makeTdxQuote,
  type TdxChain,
  type TdxQuoteFields,
} from '../../testing/platform-evidence.ts';
import { parseCrl } from './revocation.ts';
import { parseTdxQuote, TdxVerifier } from './tdx.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding, reportData64 } from './verifier.ts';

// Sample evidence only: a test SGX root/Platform CA/PCK chain and quotes built to the TDX v4
// quote layout. No Intel-signed quote is available offline; none of this ran on TDX hardware.
describe('Intel TDX quotes', () => {
  const binding = evidenceBinding(
    randomBytes(32),
    createHash('sha256').update('runner key').digest('base64url'),
  );
  const mrTd = createHash('sha384').update('td image').digest();
  const rtmr1 = createHash('sha384').update('kernel').digest();
  const reference = { mrtd: [mrTd.toString('hex')], rtmr: { '1': [rtmr1.toString('hex')] } };
  const verifier = new TdxVerifier();
  let chain: TdxChain;
  let other: TdxChain;

  before(async () => {
    chain = await makeTdxChain();
    other = await makeTdxChain();
  });

  const fields = (over: Partial<TdxQuoteFields> = {}): TdxQuoteFields => ({
    reportData: reportData64(binding),
    mrTd,
    rtmrs: [Buffer.alloc(48), rtmr1, Buffer.alloc(48), Buffer.alloc(48)],
    ...over,
  });
  const evidence = async (over: Partial<TdxQuoteFields> = {}, c: TdxChain = chain) => ({
    kind: 'tdx',
    quote: (await makeTdxQuote(c, fields(over))).toString('base64'),
  });
  const run = (ev: unknown, over: { roots?: TdxChain; reference?: unknown } = {}) =>
    verifier.verify(ev, {
      binding,
      anchors: { roots: [(over.roots ?? chain).root.cert] },
      reference: 'reference' in over ? over.reference : reference,
      now: new Date(),
    });
  const checks = (a: { failures: readonly { check: string }[] }) => a.failures.map((f) => f.check);

  it('affirms a quote whose PCK chains to the trusted root, bound to the nonce', async () => {
    const a = await run(await evidence());
    assert.deepEqual(a.failures, []);
    assert.equal(a.status, 'affirming');
    assert.equal(a.measurements.mrtd, mrTd.toString('hex'));
    assert.equal(a.measurements.rtmr1, rtmr1.toString('hex'));
  });

  it('reads the body at its offsets', async () => {
    const q = parseTdxQuote(await makeTdxQuote(chain, fields({ tdAttributes: 1n })));
    assert.equal(q.tdAttributes, 1n);
    assert.deepEqual(q.mrTd, mrTd);
    assert.deepEqual(q.reportData, reportData64(binding));
  });

  it('refuses a quote bound to another nonce', async () => {
    assert.deepEqual(checks(await run(await evidence({ reportData: randomBytes(64) }))), [C.binding]);
  });

  it('refuses a debuggable TD', async () => {
    assert.deepEqual(checks(await run(await evidence({ tdAttributes: 1n }))), [C.debug]);
  });

  it('refuses an MRTD or RTMR that is not a reference value, and everything without reference values', async () => {
    assert.deepEqual(checks(await run(await evidence({ mrTd: randomBytes(48) }))), [C.measurement]);
    const rtmrs = [Buffer.alloc(48), randomBytes(48), Buffer.alloc(48), Buffer.alloc(48)];
    assert.deepEqual(checks(await run(await evidence({ rtmrs }))), [C.measurement]);
    assert.deepEqual(checks(await run(await evidence(), { reference: undefined })), [C.measurement]);
  });

  it('refuses a PCK chain to an untrusted root', async () => {
    assert.ok(checks(await run(await evidence({}, other))).includes(C.chainUntrusted));
  });

  it('refuses a QE report signed by a key other than the PCK’s', async () => {
    const attacker = (await webcrypto.subtle.generateKey(EC_P256, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    assert.deepEqual(checks(await run(await evidence({ qeSigner: attacker.privateKey }))), [C.signature]);
  });

  it('refuses a quote whose attestation key the QE report does not bind', async () => {
    const attacker = (await webcrypto.subtle.generateKey(EC_P256, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    assert.deepEqual(checks(await run(await evidence({ boundKey: attacker }))), [C.signature]);
  });

  it('refuses a PCK its Platform CA revoked (the PCK CRL)', async () => {
    const ev = await evidence();
    const crl = parseCrl(await makeCrl(chain.platformCa, EC_P256, [chain.pck]), 'PCK CRL');
    const a = await verifier.verify(ev, {
      binding,
      anchors: { roots: [chain.root.cert], crls: [crl] },
      reference,
      now: new Date(),
    });
    assert.deepEqual(checks(a), [C.chainUntrusted]);
    assert.match(a.failures[0]?.message ?? '', /PCK Certificate.*revoked/);
  });

  it('refuses a tampered body', async () => {
    const ev = await evidence();
    const bytes = Buffer.from(ev.quote, 'base64');
    bytes[0x30 + 0x88] = (bytes[0x30 + 0x88] ?? 0) ^ 1; // MRTD
    assert.ok(checks(await run({ ...ev, quote: bytes.toString('base64') })).includes(C.signature));
  });

  it('refuses a TEE TCB or Quoting Enclave below the minimum', async () => {
    const ref = { ...reference, minTeeTcbSvn: '04000000000000000000000000000000' };
    assert.deepEqual(checks(await run(await evidence(), { reference: ref })), [C.tcb]);
    const qe = {
      mrsigner: '8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff',
      isvprodid: 1,
      minIsvsvn: 9,
    };
    assert.deepEqual(checks(await run(await evidence(), { reference: { ...reference, qe } })), [C.tcb]);
    assert.deepEqual(
      checks(await run(await evidence(), { reference: { ...reference, qe: { ...qe, minIsvsvn: 8 } } })),
      [],
    );
  });

  const set = (r: Buffer, f: (b: Buffer) => void) => {
    f(r);
    return r;
  };
  const malformed: [string, (q: Buffer) => Buffer, RegExp][] = [
    ['truncated in the body', (q) => q.subarray(0, 0x100), /truncated.*offset 0x278/],
    ['truncated in the signature data', (q) => q.subarray(0, q.length - 10), /truncated/],
    ['trailing bytes', (q) => Buffer.concat([q, Buffer.alloc(3)]), /trailing bytes/],
    ['version 3', (q) => set(q, (b) => b.writeUInt16LE(3, 0)), /version at offset 0x0 is 3/],
    ['an SGX quote', (q) => set(q, (b) => b.writeUInt32LE(0, 4)), /tee_type at offset 0x4/],
    [
      'wrong certification data type',
      (q) => set(q, (b) => b.writeUInt16LE(5, 0x27c + 128)),
      /certification data type at offset 0x2fc is 5/,
    ],
    [
      'an inflated QE auth size',
      (q) => set(q, (b) => b.writeUInt16LE(0xffff, 0x27c + 134 + 0x180 + 64)),
      /truncated|size/,
    ],
    ['oversized', (q) => Buffer.concat([q, Buffer.alloc(40_000)]), /oversized|characters|Too big/i],
  ];
  for (const [name, mutate, message] of malformed)
    it(`refuses a malformed quote (${name}) naming where`, async () => {
      const ev = await evidence();
      const a = await run({ ...ev, quote: mutate(Buffer.from(ev.quote, 'base64')).toString('base64') });
      assert.deepEqual(checks(a), [C.malformed]);
      assert.match(a.failures[0]?.message ?? '', message);
    });

  it('refuses a PCK chain with text that is not a certificate', async () => {
    const pem = `${chain.pck.cert.toString()}garbage\n${chain.root.cert.toString()}`;
    const a = await run(await evidence({ pem }));
    assert.deepEqual(checks(a), [C.malformed]);
  });
});
