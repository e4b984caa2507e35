import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { tempDir } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { keyIdOf, type TrustedKey } from '../signing/security-act.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import {
  attestWithFreshKey,
  measuredSoftware,
  newSigningKey,
  refusedChecks,
  softwareEvidence,
} from '../testing/attestation.ts';
import { AttestationAuthority } from './authority.ts';
import type { ReferenceValues } from './baseline.ts';
import type { MeasuredBaseline } from './measurement.ts';
import { ReferenceValueService, referenceBundlePayload, signReferenceValues } from './reference-values.ts';

const trust = (s: EphemeralSigner): TrustedKey => ({
  keyId: keyIdOf(s.publicKeySpki()),
  publicKeyPem: s.publicKeyPem(),
});

describe('signed reference-value bundles', () => {
  const tmp = tempDir('rv');
  const dir = tmp.path;
  let store: SqliteStore;
  let service: ReferenceValueService;
  let baseline: MeasuredBaseline;
  let values: ReferenceValues;
  const security = EphemeralSigner.generate();
  const stranger = EphemeralSigner.generate();
  const jobId = 'job-rv';
  const nonce = randomBytes(32).toString('base64');

  before(async () => {
    await writeFile(join(dir, 'agent.ts'), 'export {};\n');
    store = SqliteStore.open(join(dir, 'db.sqlite'));
    service = new ReferenceValueService({ store: store.attestation, trustedKeys: [trust(security)] });
    ({ baseline, reference: values } = await measuredSoftware({
      toolchain: ['/bin/sh'],
      agentFiles: [join(dir, 'agent.ts')],
      jobId,
      nonce,
    }));
  });
  after(async () => {
    await store.close();
    tmp.cleanup();
  });

  const authority = () =>
    new AttestationAuthority({
      signingKey: newSigningKey(),
      keyId: 'k',
      issuer: 'https://gatehouse.test/attestation',
      referenceBundles: service,
      tokens: store.tokens,
    });
  const attest = (a: AttestationAuthority) =>
    attestWithFreshKey(a, { jobId, nonce, evidence: softwareEvidence(baseline) });

  it('fails closed while no bundle is published', async () => {
    assert.deepEqual(await refusedChecks(attest(authority())), ['REFERENCE_BUNDLE_INVALID']);
  });

  it('publishes version 1 signed by the security role, and tokens name it', async () => {
    const b = await service.publish({
      version: 1,
      values,
      ...(await signReferenceValues(1, values, security)),
    });
    assert.equal(b.version, 1);
    assert.match(b.policyId, /^gatehouse:reference-values:v1#sha256:[0-9a-f]{64}$/);
    const claims = decodeJwt((await attest(authority())).token) as {
      submods: Record<string, Record<string, unknown>>;
    };
    assert.equal(claims.submods.image?.['ear.appraisal-policy-id'], b.policyId);
  });

  it('refuses bad publications and stores nothing', async () => {
    const v2 = { ...values, agent: ['0'.repeat(64)] };
    const table: [string, () => Promise<unknown>, string][] = [
      [
        'a key that is not the security role',
        async () =>
          service.publish({ version: 2, values: v2, ...(await signReferenceValues(2, v2, stranger)) }),
        'SIGNATURE_INVALID',
      ],
      [
        'values other than those signed',
        async () =>
          service.publish({ version: 2, values: v2, ...(await signReferenceValues(2, values, security)) }),
        'SIGNATURE_INVALID',
      ],
      [
        'version 1 replayed as version 2 (a rollback)',
        async () =>
          service.publish({ version: 2, values, ...(await signReferenceValues(1, values, security)) }),
        'SIGNATURE_INVALID',
      ],
      [
        'a version that is not the next',
        async () =>
          service.publish({ version: 3, values: v2, ...(await signReferenceValues(3, v2, security)) }),
        'CONFLICT',
      ],
      [
        'a signed version that already exists',
        async () =>
          service.publish({ version: 1, values: v2, ...(await signReferenceValues(1, v2, security)) }),
        'CONFLICT',
      ],
      [
        'a digest that is not hex',
        async () => {
          const bad = { ...values, agent: ['XYZ'] };
          return service.publish({
            version: 2,
            values: bad,
            ...(await signReferenceValues(2, bad, security)),
          });
        },
        'BAD_INPUT',
      ],
      [
        'an empty toolchain list',
        async () => {
          const bad = { ...values, toolchain: { '/bin/sh': [] } };
          return service.publish({
            version: 2,
            values: bad,
            ...(await signReferenceValues(2, bad as never, security)),
          });
        },
        'BAD_INPUT',
      ],
      [
        'an extra field',
        async () => {
          const bad = { ...values, extra: 1 };
          return service.publish({
            version: 2,
            values: bad,
            ...(await signReferenceValues(2, bad, security)),
          });
        },
        'BAD_INPUT',
      ],
    ];
    for (const [name, run, code] of table) {
      await assert.rejects(run(), (e) => isGatehouseError(e, code as never), name);
    }
    assert.equal((await service.current()).version, 1);
    assert.equal((await store.attestation.referenceValueHistory()).length, 1);
  });

  it('publishes a new version only when the values changed', async () => {
    assert.equal(await service.publishIfChanged(values, security), undefined);
    const v2 = { ...values, agent: [...values.agent, 'f'.repeat(64)] };
    const b = await service.publishIfChanged(v2, security);
    assert.equal(b?.version, 2);
    assert.equal((await service.current()).version, 2);
    const claims = decodeJwt((await attest(authority())).token) as {
      submods: Record<string, Record<string, unknown>>;
    };
    assert.equal(claims.submods.image?.['ear.appraisal-policy-id'], b?.policyId);
  });

  it('fails closed, with no fallback to an older bundle, when the newest was altered in the database', async () => {
    const raw = new DatabaseSync(join(dir, 'db.sqlite'));
    try {
      // Someone with database access widens the newest bundle without the security key.
      raw.exec('DROP TRIGGER reference_value_bundles_no_update');
      const widened = { ...values, agent: [...values.agent, 'e'.repeat(64)] };
      raw
        .prepare('UPDATE reference_value_bundles SET payload = ? WHERE version = 2')
        .run(referenceBundlePayload(2, widened));
    } finally {
      raw.close();
    }
    const fresh = new ReferenceValueService({ store: store.attestation, trustedKeys: [trust(security)] });
    await assert.rejects(fresh.current(), (e) => isGatehouseError(e, 'SIGNATURE_INVALID'));
    const history = await fresh.history();
    assert.deepEqual(
      history.map((h) => [h.version, h.valid]),
      [
        [2, false],
        [1, true],
      ],
    );
    const a = new AttestationAuthority({
      signingKey: newSigningKey(),
      keyId: 'k',
      issuer: 'https://gatehouse.test/attestation',
      referenceBundles: fresh,
      tokens: store.tokens,
    });
    assert.deepEqual(await refusedChecks(attest(a)), ['REFERENCE_BUNDLE_INVALID']);
  });
});
