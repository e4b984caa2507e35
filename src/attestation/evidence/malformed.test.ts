import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  makeNitroChain,
  makeNitroDocument,
  makeSnpChain,
  makeSnpReport,
  makeTdxChain,
  makeTdxQuote,
} from '../../testing/platform-evidence.ts';
import { NitroTpmVerifier } from './nitro-tpm.ts';
import { SevSnpVerifier } from './sev-snp.ts';
import { TdxVerifier } from './tdx.ts';
import { type EvidenceVerifier, evidenceBinding, reportData64, type TrustAnchors } from './verifier.ts';

/** A small deterministic generator, so that a failure can be reproduced from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s / 0x1_0000_0000;
  };
}

// Property: whatever bytes arrive, a verifier returns an appraisal (never throws, never hangs),
// and a changed byte or a cut never yields an affirming one.
describe('platform evidence parsers under mutation', () => {
  const binding = evidenceBinding(Buffer.alloc(32, 7), createHash('sha256').update('k').digest('base64url'));
  const cases: {
    name: string;
    verifier: EvidenceVerifier;
    field: string;
    make: () => Promise<[object, TrustAnchors, unknown]>;
  }[] = [
    {
      name: 'SEV-SNP report',
      verifier: new SevSnpVerifier(),
      field: 'report',
      make: async () => {
        const c = await makeSnpChain();
        const m = createHash('sha384').update('g').digest();
        const report = await makeSnpReport(c, {
          reportData: reportData64(binding),
          measurement: m,
          chipId: c.chipId,
          tcb: c.tcb,
        });
        return [
          {
            kind: 'sev-snp',
            report: report.toString('base64'),
            vcek: c.vcek.der.toString('base64'),
            chain: [c.ask.der.toString('base64')],
          },
          { roots: [c.ark.cert] },
          { measurements: [m.toString('hex')] },
        ];
      },
    },
    {
      name: 'TDX quote',
      verifier: new TdxVerifier(),
      field: 'quote',
      make: async () => {
        const c = await makeTdxChain();
        const m = createHash('sha384').update('t').digest();
        const quote = await makeTdxQuote(c, { reportData: reportData64(binding), mrTd: m });
        return [
          { kind: 'tdx', quote: quote.toString('base64') },
          { roots: [c.root.cert] },
          { mrtd: [m.toString('hex')] },
        ];
      },
    },
    {
      name: 'NitroTPM document',
      verifier: new NitroTpmVerifier(),
      field: 'document',
      make: async () => {
        const c = await makeNitroChain();
        const p = createHash('sha384').update('p').digest();
        const doc = await makeNitroDocument(c, { nonce: binding, pcrs: new Map([[4, p]]) });
        return [
          { kind: 'nitro-tpm', document: doc.toString('base64') },
          { roots: [c.root.cert] },
          { pcrs: { '4': [p.toString('hex')] } },
        ];
      },
    },
  ];
  for (const c of cases) {
    let evidence: Record<string, string>;
    let anchors: TrustAnchors;
    let reference: unknown;
    before(async () => {
      const [e, a, r] = await c.make();
      evidence = e as Record<string, string>;
      anchors = a;
      reference = r;
    });
    const verify = (bytes: Buffer) =>
      c.verifier.verify(
        { ...evidence, [c.field]: bytes.toString('base64') },
        { binding, anchors, reference, now: new Date() },
      );

    it(`${c.name}: the genuine sample affirms`, async () => {
      const a = await c.verifier.verify(evidence, { binding, anchors, reference, now: new Date() });
      assert.deepEqual(a.failures, []);
    });

    it(`${c.name}: no flipped byte and no cut is affirmed, and none throws`, async () => {
      const genuine = Buffer.from(evidence[c.field] ?? '', 'base64');
      const next = rng(0x5eed + genuine.length);
      for (let i = 0; i < 240; i++) {
        const bytes = Buffer.from(genuine);
        if (i % 3 === 0) {
          const cut = Math.floor(next() * bytes.length);
          const a = await verify(bytes.subarray(0, cut));
          assert.equal(a.status, 'contraindicated', `cut at ${cut}`);
          continue;
        }
        const at = Math.floor(next() * bytes.length);
        const bit = 1 << Math.floor(next() * 8);
        bytes[at] = (bytes[at] ?? 0) ^ bit;
        const a = await verify(bytes);
        assert.equal(a.status, 'contraindicated', `byte ${at} bit ${bit} was affirmed`);
      }
    });
  }
});
