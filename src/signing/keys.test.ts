import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, verify, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EphemeralSigner, FileKeySigner, readPrivateKeyFile } from './file-key-signer.ts';
import { initHomeKeys, openHomeKeys } from './home-keys.ts';
import { type KeyProtection, openPrivateKey, sealPrivateKey } from './key-file.ts';
import { resolveKeyProtection } from './key-protection.ts';
import { Pkcs11Signer } from './pkcs11-signer.ts';
import { verifyTimestamp } from './rfc3161.ts';
import { buildTrustedRoot, parseTrustedRoot } from './trust-root.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const kek: KeyProtection = { kind: 'kek', kek: randomBytes(32) };

function verifies(spki: Uint8Array, data: Buffer, sig: Uint8Array): boolean {
  return verify(
    'sha256',
    data,
    createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }),
    sig,
  );
}

describe('key files encrypted at rest', () => {
  it('seals with the key-encryption key, holds no PKCS#8 in clear, and signs after reloading', async () => {
    const path = join(dir, 'log.key');
    const signer = await FileKeySigner.generate(path, kek, 'log');
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^-----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----/);
    assert.doesNotMatch(text, /PRIVATE KEY-----\n[A-Za-z0-9+/]{20}.*\n-----END PRIVATE KEY/);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const again = await FileKeySigner.load(path, kek, 'log');
    assert.deepEqual(again.publicKeySpki(), signer.publicKeySpki());
    const data = Buffer.from('checkpoint');
    assert.ok(verifies(signer.publicKeySpki(), data, await again.sign(data)));
  });

  it('seals with a passphrase (scrypt) and opens only with it', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sealed = sealPrivateKey(
      privateKey,
      { kind: 'passphrase', passphrase: 'correct horse battery' },
      'ca',
    );
    const opened = openPrivateKey(sealed, { kind: 'passphrase', passphrase: 'correct horse battery' }, 'ca');
    assert.ok(createPublicKey(opened).equals(createPublicKey(privateKey)));
    assert.throws(
      () => openPrivateKey(sealed, { kind: 'passphrase', passphrase: 'wrong horse battery' }, 'ca'),
      { code: 'KEY_UNAVAILABLE' },
    );
  });

  describe('refuses', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sealed = sealPrivateKey(privateKey, kek, 'log');
    const body = (s: string) =>
      JSON.parse(Buffer.from(s.split('\n').slice(1, -2).join(''), 'base64').toString()) as Record<
        string,
        unknown
      >;
    const rewrap = (o: unknown) =>
      `-----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----\n${Buffer.from(JSON.stringify(o)).toString('base64')}\n-----END GATEHOUSE ENCRYPTED PRIVATE KEY-----\n`;
    const cases: [string, () => unknown, string][] = [
      [
        'a wrong key-encryption key',
        () => openPrivateKey(sealed, { kind: 'kek', kek: randomBytes(32) }, 'log'),
        'KEY_UNAVAILABLE',
      ],
      ['a missing secret', () => openPrivateKey(sealed, { kind: 'none' }, 'log'), 'KEY_UNAVAILABLE'],
      [
        'a passphrase where the KEK sealed it',
        () => openPrivateKey(sealed, { kind: 'passphrase', passphrase: 'x'.repeat(12) }, 'log'),
        'KEY_UNAVAILABLE',
      ],
      ['a file sealed for another purpose', () => openPrivateKey(sealed, kek, 'ca'), 'BAD_CONFIG'],
      [
        'a relabelled purpose (header is authenticated)',
        () => openPrivateKey(rewrap({ ...body(sealed), purpose: 'ca' }), kek, 'ca'),
        'KEY_UNAVAILABLE',
      ],
      [
        'a flipped ciphertext byte',
        () => {
          const b = body(sealed);
          const c = Buffer.from(b.ciphertext as string, 'base64');
          c[5] = (c[5] ?? 0) ^ 1;
          return openPrivateKey(rewrap({ ...b, ciphertext: c.toString('base64') }), kek, 'log');
        },
        'KEY_UNAVAILABLE',
      ],
      [
        'a weakened scrypt cost',
        () =>
          openPrivateKey(
            rewrap({ ...body(sealed), kdf: { name: 'scrypt', salt: 'AAAA', N: 2, r: 1, p: 1 } }),
            kek,
            'log',
          ),
        'BAD_CONFIG',
      ],
      ['a truncated file', () => openPrivateKey(sealed.slice(0, 80), kek, 'log'), 'BAD_CONFIG'],
      ['garbage', () => openPrivateKey('not a key', kek, 'log'), 'BAD_CONFIG'],
      [
        'a short passphrase when sealing',
        () => sealPrivateKey(privateKey, { kind: 'passphrase', passphrase: 'short' }, 'x'),
        'BAD_CONFIG',
      ],
    ];
    for (const [name, fn, code] of cases) it(name, () => assert.throws(fn, { code }));

    it('a plain PKCS#8 file where the home requires encryption', async () => {
      const path = join(dir, 'plain.key');
      writeFileSync(path, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      await assert.rejects(FileKeySigner.load(path, kek), { code: 'BAD_CONFIG' });
      await assert.rejects(readPrivateKeyFile(path, kek, 'attestation'), { code: 'BAD_CONFIG' });
      assert.ok(await FileKeySigner.load(path));
    });
  });

  it('creates the key-encryption key file once, mode 0600, and reads a passphrase from the environment', async () => {
    const first = await resolveKeyProtection(dir, { kind: 'kek-file', path: 'kek' }, { create: true });
    const second = await resolveKeyProtection(dir, { kind: 'kek-file', path: 'kek' });
    assert.deepEqual(first, second);
    assert.equal(statSync(join(dir, 'kek')).mode & 0o777, 0o600);
    await assert.rejects(
      resolveKeyProtection(dir, { kind: 'passphrase', passphraseEnv: 'GH_TEST_PASS' }, { env: {} }),
      {
        code: 'KEY_UNAVAILABLE',
      },
    );
    const p = await resolveKeyProtection(
      dir,
      { kind: 'passphrase', passphraseEnv: 'GH_TEST_PASS' },
      { env: { GH_TEST_PASS: 'p'.repeat(16) } },
    );
    assert.equal(p.kind, 'passphrase');
    await assert.rejects(resolveKeyProtection(join(dir, 'nowhere'), { kind: 'kek-file', path: 'kek' }), {
      code: 'KEY_UNAVAILABLE',
    });
  });
});

const SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so';
const hsmSkip = existsSync(SOFTHSM) ? false : 'SoftHSM2 is not installed';

describe('PKCS#11 signer (SoftHSM2)', { skip: hsmSkip }, () => {
  const pin = '246810';
  before(() => {
    const tokens = join(dir, 'tokens');
    execFileSync('mkdir', ['-p', tokens]);
    writeFileSync(
      join(dir, 'softhsm2.conf'),
      `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
    );
    process.env.SOFTHSM2_CONF = join(dir, 'softhsm2.conf');
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', 'gatehouse-test', '--pin', pin, '--so-pin', '13579111'],
      {
        env: process.env,
        stdio: 'ignore',
      },
    );
  });

  it('generates a non-extractable P-256 key in the token and signs verifiable ECDSA', async () => {
    const signer = Pkcs11Signer.open({
      module: SOFTHSM,
      token: 'gatehouse-test',
      label: 'gh-log',
      pin,
      create: true,
    });
    try {
      const data = Buffer.from('a checkpoint body\n');
      const sig = await signer.sign(data);
      assert.ok(verifies(signer.publicKeySpki(), data, sig));
      assert.ok(
        createPublicKey(signer.publicKeyPem()).equals(
          createPublicKey({ key: Buffer.from(signer.publicKeySpki()), format: 'der', type: 'spki' }),
        ),
      );
      assert.equal(JSON.stringify(signer), '{"algorithm":"ecdsa-p256-sha256","label":"gh-log"}');
      // Many concurrent signatures on one session all verify.
      const sigs = await Promise.all(
        Array.from({ length: 20 }, (_, i) => signer.sign(Buffer.from(String(i)))),
      );
      for (const [i, s] of sigs.entries())
        assert.ok(verifies(signer.publicKeySpki(), Buffer.from(String(i)), s));
    } finally {
      signer.close();
    }
  });

  it('finds the same key again by label after closing', () => {
    const a = Pkcs11Signer.open({
      module: SOFTHSM,
      token: 'gatehouse-test',
      label: 'gh-ca',
      pin,
      create: true,
    });
    const spki = a.publicKeySpki();
    a.close();
    const b = Pkcs11Signer.open({ module: SOFTHSM, token: 'gatehouse-test', label: 'gh-ca', pin });
    assert.deepEqual(b.publicKeySpki(), spki);
    b.close();
  });

  it('holds the CA intermediate, log and TSA keys in the token: certificates, checkpoints and timestamps verify', async () => {
    const home = join(dir, 'hsm-home');
    const config = {
      kind: 'pkcs11' as const,
      module: SOFTHSM,
      token: 'gatehouse-test',
      label: 'home',
      pinEnv: 'GH_TEST_HSM_PIN',
      encryption: { kind: 'kek-file' as const, path: 'kek' },
    };
    process.env.GH_TEST_HSM_PIN = pin;
    try {
      await initHomeKeys(home, join(home, 'keys'), config);
      // No file holds the HSM-resident keys.
      assert.equal(existsSync(join(home, 'keys', 'log.key.pem')), false);
      assert.equal(existsSync(join(home, 'keys', 'ca', 'intermediate.key.pem')), false);
      assert.equal(existsSync(join(home, 'keys', 'tsa', 'tsa.key.pem')), false);
      const keys = await openHomeKeys(home, join(home, 'keys'), config);
      try {
        assert.ok(keys.logSigner instanceof Pkcs11Signer);
        const leafKey = EphemeralSigner.generate();
        const leaf = new X509Certificate(
          await keys.ca.issueLeaf({
            publicKeySpki: leafKey.publicKeySpki(),
            identity: 'https://gh.test/p',
            issuer: 'https://gh.test',
          }),
        );
        assert.ok(leaf.verify(new X509Certificate(keys.ca.intermediatePem()).publicKey));
        const root = parseTrustedRoot(buildTrustedRoot(keys.trustedRootInput('https://gh.test/log')));
        assert.ok(keys.tsa);
        const stamp = await keys.tsa.timestamp(Buffer.from('sig'));
        verifyTimestamp(stamp, Buffer.from('sig'), root.timestampAuthorities);
        assert.deepEqual(root.tlogs[0]?.spkiDer, Buffer.from(keys.logSigner.publicKeySpki()));
      } finally {
        keys.close();
      }
      delete process.env.GH_TEST_HSM_PIN;
      await assert.rejects(openHomeKeys(home, join(home, 'keys'), config), { code: 'KEY_UNAVAILABLE' });
    } finally {
      delete process.env.GH_TEST_HSM_PIN;
    }
  });

  it('refuses a wrong PIN, an unknown token and a missing key, naming none of the secrets', () => {
    assert.throws(
      () => Pkcs11Signer.open({ module: SOFTHSM, token: 'gatehouse-test', label: 'gh-log', pin: '000000' }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'KEY_UNAVAILABLE');
        assert.doesNotMatch(e.message, /000000/);
        return true;
      },
    );
    assert.throws(() => Pkcs11Signer.open({ module: SOFTHSM, token: 'no-such-token', label: 'x', pin }), {
      code: 'KEY_UNAVAILABLE',
    });
    assert.throws(
      () => Pkcs11Signer.open({ module: SOFTHSM, token: 'gatehouse-test', label: 'absent', pin }),
      { code: 'KEY_UNAVAILABLE' },
    );
    assert.throws(() => Pkcs11Signer.open({ module: '/nonexistent/lib.so', token: 't', label: 'x', pin }), {
      code: 'KEY_UNAVAILABLE',
    });
  });
});
