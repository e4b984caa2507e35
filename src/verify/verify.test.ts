import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { sha256 } from '../common/encoding.ts';
import { type ErrorCode, isGatehouseError } from '../common/errors.ts';
import { parseBundle } from '../signing/bundle.ts';
import { InternalCa } from '../signing/ca.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import {
  clone,
  IDENTITY,
  ISSUER,
  makeWorld,
  ORIGIN,
  type Signed,
  signArtifact,
  type World,
} from '../testing/signing-fixture.ts';
import { TransparencyLog } from '../tlog/transparency-log.ts';
import { verifyArtifactBundle } from './verify.ts';

const rejects = (code: ErrorCode, run: () => unknown, what?: string): void => {
  assert.throws(run, (e: unknown) => {
    assert.ok(
      isGatehouseError(e, code),
      `${what ?? ''} expected ${code}, got ${String((e as { code?: string }).code)}: ${String(e)}`,
    );
    return true;
  });
};

describe('verifyArtifactBundle', () => {
  let world: World;
  let signed: Signed;
  before(async () => {
    world = await makeWorld();
    signed = await signArtifact(world);
  });

  const verify = (bundle: unknown, extra: { identity?: string; issuer?: string; digest?: Buffer } = {}) =>
    verifyArtifactBundle({
      artifactDigest: extra.digest ?? signed.digest,
      bundle: parseBundle(bundle),
      trustedRoot: world.trustedRoot,
      identity: extra.identity ?? IDENTITY,
      issuer: extra.issuer ?? ISSUER,
    });

  it('accepts the whole path: CA, leaf, DSSE, log, bundle', () => {
    const result = verify(signed.bundle);
    assert.equal(result.identity, IDENTITY);
    assert.equal(result.issuer, ISSUER);
    assert.equal(result.predicateType, 'https://slsa.dev/provenance/v1');
    assert.equal(result.subjects[0]?.digest.sha256, signed.digest.toString('hex'));
    assert.equal(result.logIndex, 0);
  });

  it('rejects an artifact changed after signing', () => {
    rejects('SUBJECT_MISMATCH', () => verify(signed.bundle, { digest: sha256('another artifact') }));
  });

  it('rejects the wrong identity and the wrong issuer', () => {
    rejects('IDENTITY_MISMATCH', () =>
      verify(signed.bundle, { identity: 'https://gatehouse.test/projects/other' }),
    );
    rejects('IDENTITY_MISMATCH', () => verify(signed.bundle, { issuer: 'https://evil.test' }));
  });

  it('rejects a changed log entry body, SET, proof hash or index', () => {
    const entry = () => {
      const b = clone(signed.bundle);
      const e = b.verificationMaterial.tlogEntries[0];
      assert.ok(e?.inclusionProof && e.inclusionPromise);
      return { b, e, p: e.inclusionProof, s: e.inclusionPromise };
    };
    const flipB64 = (s: string) => {
      const buf = Buffer.from(s, 'base64');
      buf[buf.length - 1] = (buf[buf.length - 1] ?? 0) ^ 1;
      return buf.toString('base64');
    };
    const cases: [string, ErrorCode, (x: ReturnType<typeof entry>) => void][] = [
      ['body', 'LOG_PROOF_INVALID', ({ e }) => (e.canonicalizedBody = flipB64(e.canonicalizedBody))],
      ['SET', 'LOG_PROOF_INVALID', ({ s }) => (s.signedEntryTimestamp = flipB64(s.signedEntryTimestamp))],
      [
        'integrated time',
        'LOG_PROOF_INVALID',
        ({ e }) => (e.integratedTime = String(Number(e.integratedTime) + 1)),
      ],
      ['proof hash', 'LOG_PROOF_INVALID', ({ p }) => (p.hashes = p.hashes.map(flipB64))],
      ['proof index', 'LOG_PROOF_INVALID', ({ p }) => (p.logIndex = '1')],
      ['proof root', 'CHECKPOINT_INVALID', ({ p }) => (p.rootHash = flipB64(p.rootHash))],
      ['log id', 'LOG_PROOF_INVALID', ({ e }) => (e.logId.keyId = flipB64(e.logId.keyId))],
    ];
    for (const [what, code, tamper] of cases) {
      const x = entry();
      tamper(x);
      rejects(code, () => verify(x.b), what);
    }
  });

  it('rejects an envelope signed by a key that is not in the certificate', async () => {
    const forged = await signArtifact(world, { envelopeSigner: EphemeralSigner.generate() });
    rejects('SIGNATURE_INVALID', () => verify(forged.bundle, { digest: forged.digest }));
  });

  it('rejects a certificate from another CA', async () => {
    const other = await InternalCa.create(await mkdtemp(join(tmpdir(), 'gatehouse-other-ca-')), {
      name: 'other',
    });
    // Not logged either: the world's CT log takes only its own CA's chains.
    const foreign = await signArtifact(world, { ca: other, ctLogs: [] });
    rejects('CERTIFICATE_INVALID', () => verify(foreign.bundle, { digest: foreign.digest }));
  });

  it('rejects a checkpoint signed by another key', async () => {
    const rogueLog = new TransparencyLog({
      store: SqliteStore.open(':memory:').log,
      signer: EphemeralSigner.generate(),
      origin: ORIGIN,
    });
    const b = clone(signed.bundle);
    const e = b.verificationMaterial.tlogEntries[0];
    assert.ok(e?.inclusionProof);
    // Same tree content, so only the signature differs.
    for (let i = 0; i < Number(e.inclusionProof.treeSize); i++) {
      const body = i === 0 ? Buffer.from(e.canonicalizedBody, 'base64') : Buffer.from('{"other":true}');
      await rogueLog.append(body);
    }
    e.inclusionProof.checkpoint.envelope = await rogueLog.checkpoint();
    rejects('CHECKPOINT_INVALID', () => verify(b));
  });

  it('rejects a leaf that had expired when the log integrated the entry', async () => {
    // The CT log refuses an expired precertificate; the verifier must refuse the leaf on its own.
    const expired = await signArtifact(world, {
      notBefore: new Date(Date.now() - 30 * 60_000),
      validityMinutes: 10,
      ctLogs: [],
    });
    rejects('CERTIFICATE_INVALID', () => verify(expired.bundle, { digest: expired.digest }));
  });

  it('rejects a bundle whose trusted root does not know the log', () => {
    const root = clone(world.trustedRoot);
    root.tlogs = [];
    rejects('LOG_PROOF_INVALID', () =>
      verifyArtifactBundle({
        artifactDigest: signed.digest,
        bundle: parseBundle(signed.bundle),
        trustedRoot: root,
      }),
    );
  });
});
