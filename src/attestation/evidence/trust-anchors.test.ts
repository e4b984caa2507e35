import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { tempDir } from '../../../test/helpers.ts';
import { isGatehouseError } from '../../common/errors.ts';
import { makeAzureProvider, makeCrl, makeSnpChain, RSA_PSS_384 } from '../../testing/platform-evidence.ts';
import { addPlatformAnchor, platformAnchorsLoader, platformRootsDir } from './trust-anchors.ts';

describe('platform trust anchors in a home', () => {
  const tmp = tempDir('platform-roots');
  after(() => tmp.cleanup());

  it('reads the CA certificates of a kind and the Azure provider, skipping what does not parse', async () => {
    const load = platformAnchorsLoader(tmp.path);
    assert.deepEqual(load('sev-snp').roots, []);
    const snp = await makeSnpChain();
    const dir = join(platformRootsDir(tmp.path), 'sev-snp');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'ark-milan.pem'), snp.ark.cert.toString());
    writeFileSync(join(dir, 'vcek.pem'), snp.vcek.cert.toString()); // not a CA: trusts nothing
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
    assert.deepEqual(
      load('sev-snp').roots.map((c) => c.fingerprint256),
      [snp.ark.cert.fingerprint256],
    );
    assert.deepEqual(load('sev-snp').crls, []);
    writeFileSync(join(dir, 'ark.crl'), await makeCrl(snp.ark, RSA_PSS_384, [snp.ask]));
    writeFileSync(join(dir, 'junk.crl'), 'not a CRL');
    assert.equal(load('sev-snp').crls?.length, 1);
    assert.deepEqual(load('tdx').roots, []);
    const provider = await makeAzureProvider();
    mkdirSync(join(platformRootsDir(tmp.path), 'azure'));
    const file = join(platformRootsDir(tmp.path), 'azure', 'provider.json');
    writeFileSync(file, JSON.stringify({ issuer: 'not a url', jwks: provider.jwks }));
    assert.equal(load('azure').issuer, undefined);
    writeFileSync(file, JSON.stringify({ issuer: provider.issuer, jwks: provider.jwks }));
    assert.equal(load('azure').issuer, provider.issuer);
    assert.equal(load('azure').jwks?.keys.length, 1);
  });

  it('installs a root, a CRL and a provider by command, refusing what the kind does not take', async () => {
    const home = join(tmp.path, 'cli-home');
    const snp = await makeSnpChain();
    const files = join(tmp.path, 'files');
    mkdirSync(files, { recursive: true });
    const write = (name: string, data: string | Buffer) => {
      writeFileSync(join(files, name), data);
      return join(files, name);
    };
    const ark = write('ark.pem', snp.ark.cert.toString());
    const first = await addPlatformAnchor(home, 'sev-snp', ark);
    assert.equal(first.added, true);
    assert.match(first.what, /ARK-Milan/);
    assert.equal((await addPlatformAnchor(home, 'sev-snp', ark)).added, false);
    assert.equal((await addPlatformAnchor(home, 'sev-snp', write('ark.der', snp.ark.der))).added, false);
    const crl = await addPlatformAnchor(
      home,
      'sev-snp',
      write('ask.crl', await makeCrl(snp.ark, RSA_PSS_384, [snp.ask])),
    );
    assert.match(crl.name, /\.crl$/);
    const load = platformAnchorsLoader(home);
    assert.equal(load('sev-snp').roots.length, 1);
    assert.equal(load('sev-snp').crls?.length, 1);
    for (const [file, kind] of [
      [write('vcek.pem', snp.vcek.cert.toString()), 'sev-snp'],
      [write('junk.bin', 'junk'), 'tdx'],
      [write('provider.json', '{"issuer":"x"}'), 'azure'],
    ] as const)
      await assert.rejects(
        addPlatformAnchor(home, kind, file),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
        file,
      );
    const provider = await makeAzureProvider();
    const good = write('good.json', JSON.stringify({ issuer: provider.issuer, jwks: provider.jwks }));
    assert.equal((await addPlatformAnchor(home, 'azure', good)).what, provider.issuer);
    assert.equal(load('azure').issuer, provider.issuer);
  });
});
