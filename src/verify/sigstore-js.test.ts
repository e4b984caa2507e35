import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import {
  clone,
  IDENTITY,
  ISSUER,
  makeWorld,
  type Signed,
  signArtifact,
  type World,
} from '../testing/signing-fixture.ts';

describe('interoperability with sigstore-js (@sigstore/verify)', () => {
  let world: World;
  let signed: Signed;
  let verifier: Verifier;
  before(async () => {
    world = await makeWorld();
    await world.log.append(Buffer.from('{"first":true}'));
    signed = await signArtifact(world);
    const trustMaterial = toTrustMaterial(TrustedRoot.fromJSON(clone(world.trustedRoot)));
    // sigstore-js's defaults: one SCT and one tlog entry required.
    verifier = new Verifier(trustMaterial);
  });

  it('verifies a gatehouse bundle against the gatehouse trusted root, with identity and issuer', () => {
    const signer = verifier.verify(toSignedEntity(bundleFromJSON(clone(signed.bundle))), {
      subjectAlternativeName: IDENTITY,
      extensions: { issuer: ISSUER },
    });
    assert.equal(signer.identity?.subjectAlternativeName, IDENTITY);
    assert.equal(signer.identity?.extensions?.issuer, ISSUER);
  });

  it('rejects a copy whose payload was changed after signing', () => {
    const b = clone(signed.bundle);
    const statement = JSON.parse(Buffer.from(b.dsseEnvelope?.payload ?? '', 'base64').toString());
    statement.subject[0].digest.sha256 = '0'.repeat(64);
    if (b.dsseEnvelope) b.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
    assert.throws(() => verifier.verify(toSignedEntity(bundleFromJSON(b))), { code: 'TLOG_BODY_ERROR' });
  });

  it('rejects a copy whose checkpoint was altered', () => {
    const b = clone(signed.bundle);
    const entry = b.verificationMaterial.tlogEntries[0];
    assert.ok(entry?.inclusionProof);
    entry.inclusionProof.checkpoint.envelope = entry.inclusionProof.checkpoint.envelope.replace(
      /\n(\d+)\n/,
      (_, n) => `\n${Number(n) + 1}\n`,
    );
    assert.throws(() => verifier.verify(toSignedEntity(bundleFromJSON(b))), {
      code: 'TLOG_INCLUSION_PROOF_ERROR',
    });
  });

  it('rejects the bundle for another identity', () => {
    assert.throws(
      () =>
        verifier.verify(toSignedEntity(bundleFromJSON(clone(signed.bundle))), {
          subjectAlternativeName: '^https://evil\\.test/',
        }),
      { code: 'UNTRUSTED_SIGNER_ERROR' },
    );
  });
});
