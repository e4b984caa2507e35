import './reflect-metadata-shim.ts';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { FULCIO_OIDS, InternalCa } from './ca.ts';
import { EphemeralSigner } from './file-key-signer.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-leaf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('directly encoded leaf certificates', () => {
  it('read back, through a full X.509 parser, exactly the Fulcio-style fields', async () => {
    const ca = await InternalCa.create(dir, { name: 'leaf test' });
    const key = EphemeralSigner.generate();
    const notBefore = new Date('2026-01-02T03:04:05.678Z');
    const pem = await ca.issueLeaf({
      publicKeySpki: key.publicKeySpki(),
      identity: 'https://gatehouse.test/projects/app',
      issuer: 'https://gatehouse.test/attestation',
      notBefore,
      validityMinutes: 7,
      extensions: {
        sourceRepositoryUri: 'https://git.test/app',
        runInvocationUri: 'https://gatehouse.test/jobs/1',
      },
    });
    const leaf = new x509.X509Certificate(pem);
    const inter = new x509.X509Certificate(ca.intermediatePem());
    assert.ok(await leaf.verify({ publicKey: inter.publicKey, signatureOnly: true }));
    assert.equal(leaf.subject, '');
    assert.equal(leaf.issuer, inter.subject);
    assert.equal(leaf.notBefore.toISOString(), '2026-01-02T03:04:05.000Z');
    assert.equal(leaf.notAfter.getTime() - leaf.notBefore.getTime(), 7 * 60_000);
    assert.ok(/^[0-7]/.test(leaf.serialNumber) || leaf.serialNumber.startsWith('00'));
    const ext = (type: string) => leaf.extensions.find((e) => e.type === type);
    assert.equal(ext('2.5.29.15')?.critical, true);
    assert.equal(ext('2.5.29.17')?.critical, true);
    assert.equal(ext('2.5.29.37')?.critical, false);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    assert.deepEqual(san?.names.toJSON(), [{ type: 'url', value: 'https://gatehouse.test/projects/app' }]);
    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature);
    const ski = leaf.getExtension(x509.SubjectKeyIdentifierExtension);
    const expectedSki = await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey);
    assert.equal(ski?.keyId, expectedSki.keyId);
    const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension);
    assert.equal(aki?.keyId, inter.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    for (const oid of [
      FULCIO_OIDS.issuer,
      FULCIO_OIDS.issuerV1,
      FULCIO_OIDS.sourceRepositoryUri,
      FULCIO_OIDS.runInvocationUri,
    ]) {
      assert.ok(ext(oid), `extension ${oid}`);
    }
  });

  it('refuses a non-ASCII identity and a key that is not P-256', async () => {
    const ca = await InternalCa.load(dir);
    const key = EphemeralSigner.generate();
    await assert.rejects(
      ca.issueLeaf({ publicKeySpki: key.publicKeySpki(), identity: 'https://gätehouse.test/p', issuer: 'x' }),
      {
        code: 'BAD_INPUT',
      },
    );
    const { generateKeyPairSync } = await import('node:crypto');
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    await assert.rejects(
      ca.issueLeaf({ publicKeySpki: ed, identity: 'https://gatehouse.test/p', issuer: 'x' }),
      { code: 'BAD_INPUT' },
    );
  });
});

describe('leaf serial numbers', () => {
  it('encode minimally whatever the random bytes (100 leaves parse strictly)', async () => {
    const { X509Certificate } = await import('node:crypto');
    const ca = await InternalCa.load(dir);
    const key = EphemeralSigner.generate();
    for (let i = 0; i < 100; i++) {
      new X509Certificate(
        await ca.issueLeaf({ publicKeySpki: key.publicKeySpki(), identity: 'https://g.test/p', issuer: 'x' }),
      );
    }
  });
});
