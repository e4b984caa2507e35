import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { parseBundle } from './bundle.ts';
import { derUtf8String, FULCIO_OIDS, InternalCa } from './ca.ts';
import { parseEnvelope, preAuthEncoding, signEnvelope, verifyEnvelope } from './dsse.ts';
import { EphemeralSigner, FileKeySigner } from './file-key-signer.ts';

const tmp = () => mkdtemp(join(tmpdir(), 'gatehouse-signing-'));

describe('FileKeySigner', () => {
  it('writes a 0600 PKCS#8 key, loads it back and refuses to overwrite it', async () => {
    const path = join(await tmp(), 'k.pem');
    const a = await FileKeySigner.generate(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const b = await FileKeySigner.load(path);
    assert.deepEqual(b.publicKeySpki(), a.publicKeySpki());
    await assert.rejects(FileKeySigner.generate(path), (e: unknown) => isGatehouseError(e, 'CONFLICT'));
    assert.equal(JSON.stringify(b).includes('PRIVATE'), false);
  });

  it('names the file when the key is missing or malformed', async () => {
    const dir = await tmp();
    await assert.rejects(
      FileKeySigner.load(join(dir, 'none.pem')),
      (e: unknown) => isGatehouseError(e, 'NOT_FOUND') && e.where === join(dir, 'none.pem'),
    );
    const bad = join(dir, 'bad.pem');
    await writeFile(bad, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    await assert.rejects(
      FileKeySigner.load(bad),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG') && e.where === bad,
    );
  });
});

describe('DSSE', () => {
  it('encodes PAE with byte lengths', () => {
    assert.equal(preAuthEncoding('t/é', Buffer.from('hi')).toString(), 'DSSEv1 4 t/é 2 hi');
  });

  it('signs and verifies, and rejects another key or a changed payload', async () => {
    const key = EphemeralSigner.generate();
    const env = await signEnvelope('text/plain', Buffer.from('hello'), key);
    assert.equal(verifyEnvelope(env, key.publicKeyPem()).payload.toString(), 'hello');
    const no = (e: unknown) => isGatehouseError(e, 'SIGNATURE_INVALID');
    assert.throws(() => verifyEnvelope(env, EphemeralSigner.generate().publicKeySpki()), no);
    assert.throws(
      () => verifyEnvelope({ ...env, payload: Buffer.from('hellO').toString('base64') }, key.publicKeyPem()),
      no,
    );
    assert.throws(() => verifyEnvelope({ ...env, payloadType: 'text/html' }, key.publicKeyPem()), no);
  });

  it('parses untrusted envelopes strictly', () => {
    const ok = { payload: 'aGk=', payloadType: 't', signatures: [{ sig: 'AAAA' }] };
    assert.equal(parseEnvelope(ok).signatures[0]?.keyid, '');
    const cases: [string, unknown][] = [
      ['not JSON', '{'],
      ['no signatures', { ...ok, signatures: [] }],
      ['bad base64 payload', { ...ok, payload: 'a*b' }],
      ['unknown field', { ...ok, extra: 1 }],
      ['empty type', { ...ok, payloadType: '' }],
      ['empty sig', { ...ok, signatures: [{ sig: '' }] }],
    ];
    for (const [what, v] of cases)
      assert.throws(
        () => parseEnvelope(v),
        (e: unknown) => isGatehouseError(e, 'BAD_INPUT'),
        what,
      );
  });
});

describe('InternalCa', () => {
  it('issues a Fulcio-style leaf that chains to its root', async () => {
    const dir = await tmp();
    await InternalCa.create(dir, { name: 'test' });
    const ca = await InternalCa.load(dir);
    await assert.rejects(InternalCa.create(dir, { name: 'test' }), (e: unknown) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    const key = EphemeralSigner.generate();
    const pem = await ca.issueLeaf({
      publicKeySpki: key.publicKeySpki(),
      identity: 'https://gatehouse.test/p',
      issuer: 'https://gatehouse.test',
      extensions: { sourceRepositoryRef: 'refs/heads/main' },
    });
    const leaf = new X509Certificate(pem);
    const [inter, root] = ca.chainPem().map((p) => new X509Certificate(p)) as [
      X509Certificate,
      X509Certificate,
    ];
    assert.ok(leaf.verify(inter.publicKey) && inter.verify(root.publicKey) && root.verify(root.publicKey));
    assert.equal(leaf.subject, undefined);
    assert.equal(leaf.subjectAltName, 'URI:https://gatehouse.test/p');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.3']);
    assert.ok(leaf.publicKey.equals(createPublicKey(key.publicKeyPem())));
    assert.ok(leaf.validToDate.getTime() - leaf.validFromDate.getTime() === 10 * 60_000);
    const der = leaf.raw;
    for (const v of ['https://gatehouse.test', 'refs/heads/main'])
      assert.ok(der.includes(Buffer.from(derUtf8String(v))));
    assert.ok(FULCIO_OIDS.sourceRepositoryRef.endsWith('.14'));
    await assert.rejects(
      ca.issueLeaf({ publicKeySpki: key.publicKeySpki(), identity: 'not a uri', issuer: 'x' }),
      (e: unknown) => isGatehouseError(e, 'BAD_INPUT'),
    );
  });
});

describe('parseBundle', () => {
  it('refuses malformed bundles with BAD_BUNDLE naming the problem', () => {
    const cases: [string, unknown, RegExp][] = [
      ['not JSON', '{', /not JSON/],
      ['wrong media type', { mediaType: 'x' }, /mediaType/],
      [
        'no tlog entries',
        {
          mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
          verificationMaterial: { tlogEntries: [] },
        },
        /tlogEntries/,
      ],
    ];
    for (const [what, v, msg] of cases) {
      assert.throws(
        () => parseBundle(v, 'b.json'),
        (e: unknown) => isGatehouseError(e, 'BAD_BUNDLE') && msg.test(e.message) && e.where === 'b.json',
        what,
      );
    }
  });
});
