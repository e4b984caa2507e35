import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { isGatehouseError } from '../../common/errors.ts';
import { EphemeralSigner } from '../../signing/file-key-signer.ts';
import { keyIdOf } from '../../signing/security-act.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import type { ReferenceValues } from '../baseline.ts';
import { ReferenceValueService, signReferenceValues } from '../reference-values.ts';

const hex = (s: string, n: number) =>
  createHash(n === 48 ? 'sha384' : 'sha256')
    .update(s)
    .digest('hex');

describe('platform reference values in the signed bundle', () => {
  const store = SqliteStore.open(':memory:');
  const security = EphemeralSigner.generate();
  const service = new ReferenceValueService({
    store: store.attestation,
    trustedKeys: [{ keyId: keyIdOf(security.publicKeySpki()), publicKeyPem: security.publicKeyPem() }],
  });
  after(() => store.close());
  const measured: ReferenceValues = { agent: [hex('a', 32)], sandboxProfile: [hex('s', 32)], toolchain: {} };
  const platforms = {
    'sev-snp': {
      measurements: [hex('guest', 48)],
      minTcb: { bootloader: 3, tee: 0, snp: 14, microcode: 209 },
    },
    tdx: { mrtd: [hex('td', 48)], rtmr: { '1': [hex('kernel', 48)] } },
    azure: { attestationTypes: ['sevsnpvm' as const], measurements: [hex('cvm', 48)] },
    'nitro-tpm': { pcrs: { '4': [hex('boot', 48)] } },
    'gcp-vtpm': { pcrs: { '0': [hex('fw', 32)] }, projects: ['gatehouse-ci'] },
  };

  it('publishes, verifies and serves them exactly as signed', async () => {
    const values = { ...measured, platforms };
    await service.publish({ version: 1, values, ...(await signReferenceValues(1, values, security)) });
    const current = await service.current();
    assert.deepEqual(current.values.platforms, platforms);
  });

  it('keeps them when the installation is measured again', async () => {
    const next = { ...measured, agent: [hex('a2', 32)] };
    const published = await service.publishIfChanged(next, security);
    assert.equal(published?.version, 2);
    assert.deepEqual((await service.current()).values.platforms, platforms);
    assert.equal(await service.publishIfChanged(next, security), undefined);
  });

  it('refuses platform reference values that do not match their schema, naming the field', async () => {
    const bad = { ...measured, platforms: { 'sev-snp': { measurements: ['not hex'] } } };
    await assert.rejects(
      service.publish({
        version: 3,
        values: bad,
        ...(await signReferenceValues(3, bad as ReferenceValues, security)),
      }),
      (e) => isGatehouseError(e) && /platforms\.sev-snp\.measurements\.0/.test(e.message),
    );
    const unknown = { ...measured, platforms: { sgx: {} } };
    await assert.rejects(
      service.publish({
        version: 3,
        values: unknown,
        ...(await signReferenceValues(3, unknown as ReferenceValues, security)),
      }),
      (e) => isGatehouseError(e) && /platforms/.test(e.message),
    );
  });
});
