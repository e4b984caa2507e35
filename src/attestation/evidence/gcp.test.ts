import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../../../test/helpers.ts';
import { tpmToolsMissing } from '../../testing/attestation.ts';
import {
  type GcpChain,
  makeGcpAkCert,
  makeGcpChain,
  type TestCert,
} from '../../testing/platform-evidence.ts';
import { ensurePlatformCa } from '../../tpm/platform-ca.ts';
import { parseTpm2bPublic, publicKeyOf } from '../../tpm/structures.ts';
import { manufactureVtpm, VirtualTpm } from '../../tpm/swtpm.ts';
import { GcpVtpmVerifier, parseGceInstance } from './gcp.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding } from './verifier.ts';

// The quote is real (a swtpm vTPM's AK); the AK certificate is issued by a test CA standing in for
// Google's EK/AK CA, with the instance-identity extension in GCE's layout. No GCE VM was used.
describe('GCP Shielded VM vTPM quotes', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('gcp-vtpm');
  const binding = evidenceBinding(
    randomBytes(32),
    createHash('sha256').update('runner key').digest('base64url'),
  );
  const bootDigest = createHash('sha256').update('shim and grub').digest('hex');
  const zero = '00'.repeat(32);
  const pcr4 = createHash('sha256')
    .update(Buffer.alloc(32))
    .update(Buffer.from(bootDigest, 'hex'))
    .digest('hex');
  const instance = {
    zone: 'europe-west1-b',
    projectNumber: 123456789012n,
    projectId: 'gatehouse-ci',
    instanceId: 8453419872340987234n,
    instanceName: 'runner-1',
  };
  const reference = { pcrs: { '0': [zero], '4': [pcr4] }, projects: ['gatehouse-ci'] };
  const verifier = new GcpVtpmVerifier();
  let tpm: VirtualTpm;
  let chain: GcpChain;
  let other: GcpChain;
  let akPublic: Buffer;
  let akSpki: Buffer;
  let akCert: TestCert;

  before(async () => {
    await ensurePlatformCa(join(tmp.path, 'ca'));
    await manufactureVtpm(join(tmp.path, 'vtpm'), { platformCaDir: join(tmp.path, 'ca') });
    tpm = await VirtualTpm.start(join(tmp.path, 'vtpm'));
    await tpm.extend([{ pcr: 4, digest: bootDigest }]);
    akPublic = await tpm.akPublic();
    akSpki = publicKeyOf(parseTpm2bPublic(akPublic)).export({ format: 'der', type: 'spki' });
    chain = await makeGcpChain();
    other = await makeGcpChain();
    akCert = await makeGcpAkCert(chain, akSpki, instance);
  });
  after(async () => {
    await tpm?.destroy();
    tmp.cleanup();
  });

  const evidence = async (
    over: { cert?: TestCert; chain?: GcpChain; data?: Buffer; pcrs?: number[] } = {},
  ) => {
    const pcrs = over.pcrs ?? [0, 4];
    const q = await tpm.quote(over.data ?? binding, pcrs);
    const values: Record<string, string> = { '0': zero, '4': pcr4 };
    return {
      kind: 'gcp-vtpm',
      ak_cert: (over.cert ?? akCert).der.toString('base64'),
      chain: [(over.chain ?? chain).intermediate.der.toString('base64')],
      ak_public: akPublic.toString('base64'),
      quote: q.attest.toString('base64'),
      signature: q.signature.toString('base64'),
      pcrs: { sha256: Object.fromEntries(pcrs.map((p) => [String(p), values[String(p)] ?? zero])) },
    };
  };
  const run = (ev: unknown, over: { reference?: unknown } = {}) =>
    verifier.verify(ev, {
      binding,
      anchors: { roots: [chain.root.cert] },
      reference: 'reference' in over ? over.reference : reference,
      now: new Date(),
    });
  const checks = (a: { failures: readonly { check: string }[] }) => a.failures.map((f) => f.check);

  it('affirms a quote by a Google-certified AK of a production instance, bound to the nonce', async () => {
    const a = await run(await evidence());
    assert.deepEqual(a.failures, []);
    assert.equal(a.measurements.pcr4, pcr4);
    assert.deepEqual((a.claims.instance as { projectId: string }).projectId, 'gatehouse-ci');
  });

  it('reads the instance identity as GCE lays it out', async () => {
    const i = parseGceInstance(
      (await import('../../testing/platform-evidence.ts')).gceInstanceExtension(instance),
    );
    assert.equal(i.instanceId, '8453419872340987234');
    assert.equal(i.isProduction, true);
  });

  it('refuses a quote over another nonce', async () => {
    assert.deepEqual(checks(await run(await evidence({ data: randomBytes(32) }))), [C.binding]);
  });

  it('refuses an AK certificate from an untrusted CA, and one certifying another key', async () => {
    const foreign = await makeGcpAkCert(other, akSpki, instance);
    assert.ok(checks(await run(await evidence({ cert: foreign, chain: other }))).includes(C.chainUntrusted));
    const { publicKey } = await import('node:crypto').then((c) =>
      c.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
    );
    const wrong = await makeGcpAkCert(chain, publicKey.export({ format: 'der', type: 'spki' }), instance);
    assert.deepEqual(checks(await run(await evidence({ cert: wrong }))), [C.chainUntrusted]);
  });

  it('refuses an AK certificate without instance identity, of a non-production instance, or another project', async () => {
    assert.deepEqual(checks(await run(await evidence({ cert: await makeGcpAkCert(chain, akSpki, null) }))), [
      C.identity,
    ]);
    const dev = await makeGcpAkCert(chain, akSpki, { ...instance, isProduction: false });
    assert.deepEqual(checks(await run(await evidence({ cert: dev }))), [C.identity]);
    const elsewhere = await makeGcpAkCert(chain, akSpki, { ...instance, projectId: 'someone-else' });
    assert.deepEqual(checks(await run(await evidence({ cert: elsewhere }))), [C.identity]);
  });

  it('refuses a PCR value that is not a reference value, a PCR left out, and everything without reference values', async () => {
    const bad = { ...reference, pcrs: { ...reference.pcrs, '4': [zero] } };
    assert.deepEqual(checks(await run(await evidence(), { reference: bad })), [C.measurement]);
    assert.deepEqual(checks(await run(await evidence({ pcrs: [0] }))), [C.measurement]);
    assert.deepEqual(checks(await run(await evidence(), { reference: undefined })), [C.measurement]);
  });

  it('refuses a reported PCR value the quote does not cover, and a tampered quote', async () => {
    const ev = await evidence();
    const lie = { ...ev, pcrs: { sha256: { ...ev.pcrs.sha256, '4': zero } } };
    assert.ok(checks(await run(lie)).includes(C.measurement));
    const q = Buffer.from(ev.quote, 'base64');
    q[q.length - 1] = (q[q.length - 1] ?? 0) ^ 1;
    assert.ok(checks(await run({ ...ev, quote: q.toString('base64') })).includes(C.signature));
  });

  it('refuses malformed evidence naming the field', async () => {
    const ev = await evidence();
    for (const [bad, message] of [
      [{ ...ev, ak_cert: Buffer.alloc(10).toString('base64') }, /ak_cert/],
      [{ ...ev, ak_public: Buffer.alloc(4).toString('base64') }, /ak_public/],
      [{ ...ev, pcrs: { sha256: {} } }, /at least one PCR/],
      [{ ...ev, quote: Buffer.alloc(5000).toString('base64') }, /quote/],
    ] as const) {
      const a = await run(bad);
      assert.deepEqual(checks(a), [C.malformed]);
      assert.match(a.failures[0]?.message ?? '', message);
    }
  });
});
