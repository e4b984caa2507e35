import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { defaultConfig, parseConfig } from '../home/config.ts';
import { OciDistributionRegistry } from './oci-distribution-registry.ts';
import { OciLayoutRegistry } from './oci-layout-registry.ts';
import { credentialsFromEnv, registryFromConfig, registryOption } from './registry-config.ts';

describe('registry configuration', () => {
  let home = '';
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'gatehouse-regcfg-'));
    await writeFile(join(home, 'registry-password'), 's3cret\n', { mode: 0o600 });
  });
  after(() => rm(home, { recursive: true, force: true }));

  const distribution = {
    kind: 'oci-distribution' as const,
    url: 'https://registry.example',
    repositoryPrefix: 'gatehouse/promoted',
    quarantinePrefix: 'gatehouse/quarantine',
    auth: { kind: 'basic' as const, username: 'ci', passwordFile: 'registry-password' },
  };

  it('accepts both kinds in config.json and builds the matching adapter', () => {
    const config = parseConfig(JSON.stringify({ ...defaultConfig(), registry: distribution }), 'config.json');
    const registry = registryFromConfig(config.registry, home);
    assert.ok(registry instanceof OciDistributionRegistry);
    assert.equal(registry.repositoryUri('promoted', 'app'), 'oci://registry.example/gatehouse/promoted/app');
    assert.ok(registryFromConfig(defaultConfig().registry, home) instanceof OciLayoutRegistry);
  });

  const bad: [string, unknown][] = [
    ['a password in the config', { ...distribution, auth: { kind: 'basic', username: 'ci', password: 'x' } }],
    ['an ftp URL', { ...distribution, url: 'ftp://registry.example' }],
    ['a prefix with capitals', { ...distribution, repositoryPrefix: 'Gatehouse' }],
    ['an unknown kind', { kind: 's3', bucket: 'x' }],
  ];
  for (const [what, registry] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => parseConfig(JSON.stringify({ ...defaultConfig(), registry }), 'config.json'),
        (e) => isGatehouseError(e, 'BAD_CONFIG'),
      );
    });
  }

  it('refuses a missing password file and overlapping prefixes', () => {
    assert.throws(
      () =>
        registryFromConfig({ ...distribution, auth: { ...distribution.auth, passwordFile: 'nope' } }, home),
      (e) => isGatehouseError(e, 'BAD_CONFIG') && !/s3cret/.test(String(e)),
    );
    assert.throws(
      () =>
        registryFromConfig(
          { ...distribution, quarantinePrefix: 'gatehouse/promoted/q', auth: { kind: 'anonymous' } },
          home,
        ),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
  });

  it('takes --registry only without --server, and credentials only when both are set', () => {
    assert.deepEqual(registryOption(undefined, undefined), {});
    assert.ok(registryOption('http://127.0.0.1:5000', undefined).registry instanceof OciDistributionRegistry);
    assert.throws(
      () => registryOption('http://127.0.0.1:5000', 'http://127.0.0.1:8700'),
      (e) => isGatehouseError(e, 'BAD_INPUT'),
    );
    assert.equal(credentialsFromEnv({ GATEHOUSE_REGISTRY_USERNAME: 'u' }), undefined);
    assert.deepEqual(
      credentialsFromEnv({ GATEHOUSE_REGISTRY_USERNAME: 'u', GATEHOUSE_REGISTRY_PASSWORD: 'p' }),
      {
        username: 'u',
        password: 'p',
      },
    );
  });
});
