import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, tempDir } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { FileKeySigner } from '../signing/file-key-signer.ts';
import { defaultConfig } from './config.ts';
import { initHome } from './home.ts';
import { loadSecuritySigner, securityKeyPath } from './security-role.ts';

const SEALED = /^-----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----/;
const code = (c: string) => (e: unknown) => isGatehouseError(e) && e.code === c;

describe('the security key at rest', () => {
  const tmp = tempDir('security-key');
  const home = join(tmp.path, 'home');
  const keyPath = securityKeyPath(join(home, 'keys'));

  before(async () => {
    await initHome(home);
  });
  after(() => tmp.cleanup());

  it('seals it with the home key-encryption key and opens the home key by its path', async () => {
    assert.match(readFileSync(keyPath, 'utf8'), SEALED);
    // No platform CA key is made: vTPM EK certificates are issued inside the host TPM.
    assert.equal(existsSync(join(home, 'keys', 'platform-ca')), false);
    const signer = await loadSecuritySigner(keyPath);
    assert.equal(signer.publicKeyPem(), readFileSync(join(home, 'keys', 'security.pub.pem'), 'utf8'));
  });

  it('opens a sealed copy elsewhere with the given home, and refuses it without one', async () => {
    const copy = join(tmp.path, 'elsewhere', 'role.pem');
    await mkdir(join(tmp.path, 'elsewhere'));
    copyFileSync(keyPath, copy);
    await assert.doesNotReject(loadSecuritySigner(copy, { home }));
    const saved = process.env.GATEHOUSE_HOME;
    delete process.env.GATEHOUSE_HOME;
    try {
      await assert.rejects(loadSecuritySigner(copy), code('KEY_UNAVAILABLE'));
    } finally {
      if (saved !== undefined) process.env.GATEHOUSE_HOME = saved;
    }
  });

  it('accepts a plain key given with --key, and the CLI publishes with a sealed or plain one', async () => {
    const plain = join(tmp.path, 'plain.pem');
    await FileKeySigner.generate(plain, { kind: 'none' }, 'security');
    await assert.doesNotReject(loadSecuritySigner(plain, { home }));
    const values = join(tmp.path, 'values.json');
    writeFileSync(values, readFileSync(join(home, 'reference-values.json')));
    const copy = join(tmp.path, 'elsewhere', 'role.pem');
    // The home's sealed key, copied out and opened with the home's protection, is trusted.
    const ok = await cli([
      'attestation',
      'reference-values',
      'publish',
      values,
      '--key',
      copy,
      '--home',
      home,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    // A plain key opens too; it is not a trusted security key, so the control plane refuses it.
    const untrusted = await cli([
      'attestation',
      'reference-values',
      'publish',
      values,
      '--key',
      plain,
      '--home',
      home,
    ]);
    assert.notEqual(untrusted.code, 0);
    assert.doesNotMatch(untrusted.stderr, /sealed|encrypted|KEY_UNAVAILABLE/);
  });

  it('refuses the home key left plain where keys are sealed, until init seals it', async () => {
    const plain = join(tmp.path, 'plain.pem');
    const original = readFileSync(keyPath);
    try {
      copyFileSync(plain, keyPath);
      await assert.rejects(loadSecuritySigner(keyPath), code('BAD_CONFIG'));
      const created = await initHome(home);
      assert.ok(created.includes('keys/security.key.pem (sealed)'), created.join(', '));
      assert.match(readFileSync(keyPath, 'utf8'), SEALED);
      await assert.doesNotReject(loadSecuritySigner(keyPath));
    } finally {
      writeFileSync(keyPath, original, { mode: 0o600 });
    }
  });

  it('keeps plain keys in a home without a keys block', async () => {
    const legacy = join(tmp.path, 'legacy');
    await mkdir(legacy);
    const { keys: _, ...config } = defaultConfig();
    writeFileSync(join(legacy, 'config.json'), JSON.stringify(config));
    await initHome(legacy);
    const legacyKey = securityKeyPath(join(legacy, 'keys'));
    assert.match(readFileSync(legacyKey, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
    await assert.doesNotReject(loadSecuritySigner(legacyKey));
  });

  it('seals the security key with the passphrase when one is configured', async () => {
    const env = 'GATEHOUSE_TEST_SECURITY_PASSPHRASE';
    const pass = join(tmp.path, 'pass');
    await mkdir(pass);
    writeFileSync(
      join(pass, 'config.json'),
      JSON.stringify({
        ...defaultConfig(),
        keys: { kind: 'file', encryption: { kind: 'passphrase', passphraseEnv: env } },
      }),
    );
    process.env[env] = 'correct horse battery staple';
    try {
      await initHome(pass);
      const passKey = securityKeyPath(join(pass, 'keys'));
      const body = JSON.parse(
        Buffer.from(readFileSync(passKey, 'utf8').split('\n').slice(1, -2).join(''), 'base64').toString(
          'utf8',
        ),
      ) as { kdf: { name: string }; purpose: string };
      assert.equal(body.kdf.name, 'scrypt');
      assert.equal(body.purpose, 'security');
      await assert.doesNotReject(loadSecuritySigner(passKey));
      process.env[env] = 'a wrong passphrase, long enough';
      await assert.rejects(loadSecuritySigner(passKey), code('KEY_UNAVAILABLE'));
      delete process.env[env];
      await assert.rejects(loadSecuritySigner(passKey), code('KEY_UNAVAILABLE'));
    } finally {
      delete process.env[env];
    }
  });
});
