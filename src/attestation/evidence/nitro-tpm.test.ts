import assert from 'node:assert/strict';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  EC_P384,
  makeNitroChain,
  makeNitroDocument,
  type NitroChain,
} from '../../testing/platform-evidence.ts';
import { decodeCbor, encodeCbor } from './cbor.ts';
import { NitroTpmVerifier } from './nitro-tpm.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding } from './verifier.ts';

// Sample evidence only: a test Nitro root/intermediate/leaf chain and documents built to the
// NitroTPM attestation document format. No AWS-signed document is available offline.
describe('AWS NitroTPM attestation documents', () => {
  const binding = evidenceBinding(
    randomBytes(32),
    createHash('sha256').update('runner key').digest('base64url'),
  );
  const pcr4 = createHash('sha384').update('boot loader').digest();
  const pcr7 = createHash('sha384').update('secure boot').digest();
  const pcrs = new Map([
    [0, Buffer.alloc(48)],
    [4, pcr4],
    [7, pcr7],
  ]);
  const reference = { pcrs: { '4': [pcr4.toString('hex')], '7': [pcr7.toString('hex')] } };
  const verifier = new NitroTpmVerifier();
  let chain: NitroChain;
  let other: NitroChain;

  before(async () => {
    chain = await makeNitroChain();
    other = await makeNitroChain();
  });

  const doc = async (over: Partial<Parameters<typeof makeNitroDocument>[1]> = {}, c = chain) => ({
    kind: 'nitro-tpm',
    document: (await makeNitroDocument(c, { nonce: binding, pcrs, ...over })).toString('base64'),
  });
  const run = (ev: unknown, over: { roots?: NitroChain; reference?: unknown } = {}) =>
    verifier.verify(ev, {
      binding,
      anchors: { roots: [(over.roots ?? chain).root.cert] },
      reference: 'reference' in over ? over.reference : reference,
      now: new Date(),
    });
  const checks = (a: { failures: readonly { check: string }[] }) => a.failures.map((f) => f.check);

  it('affirms a document signed by a certificate chaining to the trusted root, bound to the nonce', async () => {
    const a = await run(await doc());
    assert.deepEqual(a.failures, []);
    assert.equal(a.measurements.pcr4, pcr4.toString('hex'));
    assert.equal(a.claims.module_id, 'i-0test-nitrotpm');
  });

  it('refuses a document without the nonce, or with another', async () => {
    assert.deepEqual(checks(await run(await doc({ nonce: null }))), [C.binding]);
    assert.deepEqual(checks(await run(await doc({ nonce: randomBytes(32) }))), [C.binding]);
  });

  it('refuses a PCR that is not a reference value, a missing one, and everything without reference values', async () => {
    assert.deepEqual(checks(await run(await doc({ pcrs: new Map([...pcrs, [7, randomBytes(48)]]) }))), [
      C.measurement,
    ]);
    assert.deepEqual(checks(await run(await doc({ pcrs: new Map([[4, pcr4]]) }))), [C.measurement]);
    assert.deepEqual(checks(await run(await doc(), { reference: undefined })), [C.measurement]);
  });

  it('refuses a chain to an untrusted root, even one the document bundles', async () => {
    assert.ok(checks(await run(await doc({}, other))).includes(C.chainUntrusted));
  });

  it('refuses a document signed by another key', async () => {
    const k = (await webcrypto.subtle.generateKey(EC_P384, true, ['sign'])) as webcrypto.CryptoKeyPair;
    assert.deepEqual(checks(await run(await doc({ signer: k.privateKey }))), [C.signature]);
  });

  it('refuses a tampered payload', async () => {
    const ev = await doc();
    const cose = decodeCbor(Buffer.from(ev.document, 'base64'), 't') as { tag: number; value: Buffer[] };
    const payload = Buffer.from(cose.value[2] ?? Buffer.alloc(0));
    const at = payload.indexOf(pcr7);
    payload[at] = (payload[at] ?? 0) ^ 1;
    const tampered = encodeCbor({
      tag: 18,
      value: [cose.value[0] ?? Buffer.alloc(0), new Map(), payload, cose.value[3] ?? Buffer.alloc(0)],
    });
    assert.ok(checks(await run({ ...ev, document: tampered.toString('base64') })).includes(C.signature));
  });

  it('refuses a stale document', async () => {
    assert.deepEqual(checks(await run(await doc({ timestamp: Date.now() - 3_600_000 }))), [C.freshness]);
  });

  it('refuses a Nitro Enclaves document in place of a NitroTPM one', async () => {
    const a = await run(await doc({ enclave: true }));
    assert.deepEqual(checks(a), [C.malformed]);
    assert.match(a.failures[0]?.message ?? '', /Nitro Enclaves document/);
  });

  const malformed: [string, Buffer, RegExp][] = [
    [
      'a cut byte string',
      Buffer.from([0x84, 0x43, 0xa1, 0x01]),
      /truncated: 3 bytes needed, 2 remain at offset 2/,
    ],
    ['a cut array', Buffer.from([0xd2, 0x84, 0x44]), /length beyond the input at offset 1/],
    ['indefinite length', Buffer.from([0x9f, 0xff]), /indefinite.*offset 0/],
    ['a float', Buffer.from([0xfb, 0, 0, 0, 0, 0, 0, 0, 0]), /float.*offset 0/],
    ['trailing bytes', Buffer.from([0x80, 0x00]), /1 bytes after the item at offset 1/],
    ['a huge length', Buffer.from([0x5a, 0xff, 0xff, 0xff, 0xff]), /length beyond the input/],
    ['deep nesting', Buffer.alloc(20, 0x81), /nesting deeper/],
    ['not COSE', encodeCbor(['a']), /not an array of 4/],
    ['another tag', encodeCbor({ tag: 98, value: [] }), /tag 98/],
    [
      'a repeated key',
      Buffer.concat([Buffer.from([0xa2]), encodeCbor(1), encodeCbor(1), encodeCbor(1), encodeCbor(2)]),
      /repeated map key/,
    ],
  ];
  for (const [name, bytes, message] of malformed)
    it(`refuses a malformed document (${name}) naming where`, async () => {
      const a = await run({ kind: 'nitro-tpm', document: bytes.toString('base64') });
      assert.deepEqual(checks(a), [C.malformed]);
      assert.match(a.failures[0]?.message ?? '', message);
    });

  it('refuses a genuine document cut short', async () => {
    const ev = await doc();
    const cut = Buffer.from(ev.document, 'base64').subarray(0, 600);
    const a = await run({ ...ev, document: cut.toString('base64') });
    assert.deepEqual(checks(a), [C.malformed]);
    assert.match(a.failures[0]?.message ?? '', /(truncated|beyond the input).* at offset \d+/);
  });

  it('refuses an oversized document unread', async () => {
    const a = await run({ kind: 'nitro-tpm', document: Buffer.alloc(30_000).toString('base64') });
    assert.deepEqual(checks(a), [C.malformed]);
  });
});
