import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  makeCrl,
  makeSnpChain,
  makeSnpReport,
  RSA_PSS_384,
  type SnpChain,
  type SnpReportFields,
} from '../../testing/platform-evidence.ts';
import { parseCrl } from './revocation.ts';
import { decodeTcb, encodeTcb, parseSnpReport, SevSnpVerifier } from './sev-snp.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding, reportData64 } from './verifier.ts';

// Sample evidence only: a test ARK/ASK/VCEK chain and reports built to the SEV-SNP ABI layout.
// No AMD-signed report is available offline; none of this ran on SEV-SNP hardware.
describe('SEV-SNP attestation reports', () => {
  const nonce = randomBytes(32);
  const jkt = createHash('sha256').update('runner key').digest('base64url');
  const binding = evidenceBinding(nonce, jkt);
  const measurement = createHash('sha384').update('guest image').digest();
  const reference = { measurements: [measurement.toString('hex')] };
  const verifier = new SevSnpVerifier();
  let chain: SnpChain;
  let other: SnpChain;

  before(async () => {
    chain = await makeSnpChain();
    other = await makeSnpChain({ chipId: createHash('sha512').update('another chip').digest() });
  });

  const fields = (over: Partial<SnpReportFields> = {}): SnpReportFields => ({
    reportData: reportData64(binding),
    measurement,
    chipId: chain.chipId,
    tcb: chain.tcb,
    ...over,
  });
  const evidence = async (over: Partial<SnpReportFields> = {}, c: SnpChain = chain) => ({
    kind: 'sev-snp',
    report: (await makeSnpReport(c, fields(over))).toString('base64'),
    vcek: c.vcek.der.toString('base64'),
    chain: [c.ask.der.toString('base64')],
  });
  const run = (ev: unknown, over: { roots?: SnpChain; reference?: unknown } = {}) =>
    verifier.verify(ev, {
      binding,
      anchors: { roots: [(over.roots ?? chain).ark.cert] },
      reference: 'reference' in over ? over.reference : reference,
      now: new Date(),
    });
  const checks = (a: { failures: readonly { check: string }[] }) => a.failures.map((f) => f.check);

  it('affirms a report signed by a VCEK chaining to the trusted ARK, bound to the nonce', async () => {
    for (const version of [2, 3]) {
      const a = await run(await evidence({ version }));
      assert.deepEqual(a.failures, []);
      assert.equal(a.status, 'affirming');
      assert.equal(a.measurements.measurement, measurement.toString('hex'));
      assert.equal(a.trustworthinessVector.hardware, 2);
      assert.equal(a.claims.chip_id, chain.chipId.toString('hex'));
    }
  });

  it('reads the fields at their ABI offsets', async () => {
    const r = parseSnpReport(await makeSnpReport(chain, fields({ vmpl: 1, version: 3 })));
    assert.equal(r.version, 3);
    assert.equal(r.vmpl, 1);
    assert.deepEqual(r.reportedTcb, chain.tcb);
    assert.equal(r.cpuidFamily, 0x19);
  });

  it('decodes TCB_VERSION in the Milan/Genoa layout, and Turin’s with its FMC level', () => {
    const milan = { bootloader: 3, tee: 0, snp: 14, microcode: 209 };
    assert.equal(encodeTcb(milan), 0xd10e000000000003n);
    assert.deepEqual(decodeTcb(0xd10e000000000003n, 0x19), milan);
    const turin = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 };
    assert.deepEqual(decodeTcb(encodeTcb(turin, 0x1a), 0x1a), turin);
    assert.equal(encodeTcb(turin, 0x1a), 0x0500000004030201n);
  });

  it('refuses a report bound to another nonce or runner key', async () => {
    const a = await run(await evidence({ reportData: reportData64(evidenceBinding(randomBytes(32), jkt)) }));
    assert.deepEqual(checks(a), [C.binding]);
    assert.equal(a.status, 'contraindicated');
    assert.equal(a.trustworthinessVector['instance-identity'], 96);
  });

  it('refuses a debuggable guest', async () => {
    const a = await run(await evidence({ policy: 0x30000n | (1n << 19n) }));
    assert.deepEqual(checks(a), [C.debug]);
  });

  it('refuses a guest that allows a migration agent unless the reference values do', async () => {
    const ev = await evidence({ policy: 0x30000n | (1n << 18n) });
    assert.deepEqual(checks(await run(ev)), [C.debug]);
    assert.deepEqual(checks(await run(ev, { reference: { ...reference, allowMigrationAgent: true } })), []);
  });

  it('refuses a measurement that is not a reference value, and everything when none are published', async () => {
    const a = await run(await evidence({ measurement: createHash('sha384').update('other').digest() }));
    assert.deepEqual(checks(a), [C.measurement]);
    assert.match(a.failures[0]?.message ?? '', /not a reference value/);
    assert.deepEqual(checks(await run(await evidence(), { reference: undefined })), [C.measurement]);
  });

  it('refuses a VCEK chaining to an untrusted ARK', async () => {
    const a = await run(await evidence({}, other), { roots: chain });
    assert.ok(checks(a).includes(C.chainUntrusted), checks(a).join());
  });

  it('refuses a chain that carries its own self-made ARK in place of the trusted one', async () => {
    const ev = {
      ...(await evidence({}, other)),
      chain: [other.ask.der.toString('base64'), other.ark.der.toString('base64')],
    };
    assert.ok(checks(await run(ev, { roots: chain })).includes(C.chainUntrusted));
  });

  it('refuses a report signed by another chip’s VCEK', async () => {
    const ev = await evidence({}, other);
    const swapped = { ...ev, vcek: chain.vcek.der.toString('base64') };
    const a = await run(swapped);
    assert.ok(checks(a).includes(C.signature), checks(a).join());
  });

  it('refuses a tampered report, signature or signing-key field', async () => {
    const ev = await evidence();
    const bytes = Buffer.from(ev.report, 'base64');
    bytes[0x90] = (bytes[0x90] ?? 0) ^ 1; // MEASUREMENT
    assert.ok(checks(await run({ ...ev, report: bytes.toString('base64') })).includes(C.signature));
    const sig = Buffer.from(ev.report, 'base64');
    sig[0x2a0] = (sig[0x2a0] ?? 0) ^ 1;
    assert.deepEqual(checks(await run({ ...ev, report: sig.toString('base64') })), [C.signature]);
    const reserved = await evidence({ signingKey: 2 });
    assert.ok(checks(await run(reserved)).includes(C.chainUntrusted));
  });

  it('refuses a chain whose ASK or VCEK is revoked by its issuer’s CRL, and one whose CRL is out of date', async () => {
    const ev = await evidence();
    const crl = async (issuer: typeof chain.ark, revoked: (typeof chain.ark)[], next?: Date) =>
      parseCrl(await makeCrl(issuer, RSA_PSS_384, revoked, next), 'test CRL');
    const withCrls = (crls: Awaited<ReturnType<typeof crl>>[]) =>
      verifier.verify(ev, {
        binding,
        anchors: { roots: [chain.ark.cert], crls },
        reference,
        now: new Date(),
      });
    assert.deepEqual(checks(await withCrls([await crl(chain.ark, []), await crl(chain.ask, [])])), []);
    const askRevoked = await withCrls([await crl(chain.ark, [chain.ask])]);
    assert.deepEqual(checks(askRevoked), [C.chainUntrusted]);
    assert.match(askRevoked.failures[0]?.message ?? '', /SEV-Milan.*revoked/);
    assert.deepEqual(checks(await withCrls([await crl(chain.ask, [chain.vcek])])), [C.chainUntrusted]);
    const stale = await withCrls([await crl(chain.ask, [], new Date(Date.now() - 60_000))]);
    assert.match(stale.failures[0]?.message ?? '', /due for renewal/);
    // A CRL naming the ARK but signed by another key revokes nothing.
    const forged = await crl({ ...other.ark, cert: chain.ark.cert }, [chain.ask]);
    assert.deepEqual(checks(await withCrls([forged])), []);
  });

  it('accepts a VLEK-signed report only from a provider the reference values name', async () => {
    const provider = await makeSnpChain({ ark: chain.ark, vlekCsp: 'gatehouse-cloud' });
    const ev = await evidence({ signingKey: 1 }, provider);
    assert.deepEqual(checks(await run(ev)), [C.identity]);
    const allowed = { ...reference, vlekCspIds: ['gatehouse-cloud'] };
    const a = await run(ev, { reference: allowed });
    assert.deepEqual(a.failures, []);
    assert.equal(a.claims.csp_id, 'gatehouse-cloud');
    assert.deepEqual(checks(await run(ev, { reference: { ...reference, vlekCspIds: ['other'] } })), [
      C.identity,
    ]);
    // A VCEK cannot pass for a VLEK, nor a VLEK for a VCEK.
    assert.ok(
      checks(await run(await evidence({ signingKey: 1 }), { reference: allowed })).includes(C.chainUntrusted),
    );
    assert.ok(
      checks(await run(await evidence({ signingKey: 0 }, provider), { reference: allowed })).includes(
        C.identity,
      ),
    );
  });

  it('refuses a report whose TCB is not the one the VCEK was issued for, or below the minimum', async () => {
    const a = await run(await evidence({ tcb: { ...chain.tcb, snp: 13 } }));
    assert.ok(checks(a).includes(C.tcb));
    const min = { ...reference, minTcb: { bootloader: 3, tee: 0, snp: 15, microcode: 209 } };
    assert.deepEqual(checks(await run(await evidence(), { reference: min })), [C.tcb]);
  });

  it('refuses a report naming another chip, or none', async () => {
    assert.deepEqual(checks(await run(await evidence({ chipId: randomBytes(64) }))), [C.identity]);
    assert.deepEqual(checks(await run(await evidence({ maskChipKey: true }))), [C.identity]);
  });

  it('refuses a report from a VMPL the reference values do not allow', async () => {
    assert.deepEqual(checks(await run(await evidence({ vmpl: 2 }))), [C.measurement]);
  });

  const set = (r: Buffer, f: (b: Buffer) => void) => {
    f(r);
    return r;
  };
  const malformed: [string, (r: Buffer) => Buffer, RegExp][] = [
    ['truncated', (r) => r.subarray(0, 0x200), /0x200 bytes|512 bytes.*truncated/],
    ['oversized', (r) => Buffer.concat([r, Buffer.alloc(1)]), /oversized/],
    ['empty', () => Buffer.alloc(0), /evidence|report/],
    ['version 4', (r) => set(r, (b) => b.writeUInt32LE(4, 0)), /VERSION at offset 0x0 is 4/],
    ['reserved signer bits', (r) => set(r, (b) => b.writeUInt32LE(0x100, 0x48)), /offset 0x48/],
    ['a 385-bit R', (r) => set(r, (b) => b.writeUInt8(1, 0x2a0 + 71)), /R at offset 0x2A0/],
  ];
  for (const [name, mutate, message] of malformed)
    it(`refuses a malformed report (${name}) naming where`, async () => {
      const ev = await evidence();
      const bytes = mutate(Buffer.from(ev.report, 'base64'));
      const a = await run({ ...ev, report: bytes.toString('base64') });
      assert.deepEqual(checks(a), [C.malformed]);
      assert.match(a.failures[0]?.message ?? '', message);
    });

  it('refuses evidence of the wrong shape without reading it', async () => {
    for (const bad of [
      null,
      'x',
      { kind: 'sev-snp' },
      { ...(await evidence()), extra: 1 },
      { ...(await evidence()), report: '!!' },
    ]) {
      const a = await run(bad);
      assert.deepEqual(checks(a), [C.malformed]);
    }
  });
});
