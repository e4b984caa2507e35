import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { sha256 } from '../common/encoding.ts';
import { buildBundle, parseBundle } from '../signing/bundle.ts';
import type { InternalCa } from '../signing/ca.ts';
import { signEnvelope } from '../signing/dsse.ts';
import { EphemeralSigner, FileKeySigner } from '../signing/file-key-signer.ts';
import { type HomeKeysConfig, initHomeKeys, openHomeKeys, rotateHomeKey } from '../signing/home-keys.ts';
import { INTOTO_PAYLOAD_TYPE, makeStatement, statementPayload } from '../signing/intoto.ts';
import { resolveKeyProtection } from '../signing/key-protection.ts';
import { loadTimestampAuthority, TimestampAuthority } from '../signing/rfc3161.ts';
import type { Signer } from '../signing/signer.ts';
import { buildTrustedRoot, parseTrustedRoot } from '../signing/trust-root.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { CtLog } from '../tlog/ct-log.ts';
import { dsseEntryBody, TransparencyLog } from '../tlog/transparency-log.ts';
import { parseSigstoreBundle } from './sigstore-bundle.ts';
import { verifySigstoreBundle } from './sigstore-verifier.ts';
import { verifyArtifactBundle } from './verify.ts';

const ORIGIN = 'gatehouse.test/log';
const CT_ORIGIN = 'gatehouse.test/ct';
const IDENTITY = 'https://gatehouse.test/projects/demo';
const ISSUER = 'https://gatehouse.test/attestation';
const CONFIG: HomeKeysConfig = { kind: 'file', encryption: { kind: 'kek-file', path: 'keys/kek' } };
const ARTIFACT = Buffer.from('artifact bytes\n');

const root = mkdtempSync(join(tmpdir(), 'gatehouse-time-'));
const keysDir = join(root, 'keys');
after(() => rmSync(root, { recursive: true, force: true }));

/** Sign ARTIFACT at time `at` with the given CA, log and CT keys and TSA: the gate's signing path. */
async function sign(ca: InternalCa, logSigner: Signer, ctSigner: Signer, tsa: TimestampAuthority, at: Date) {
  const store = SqliteStore.open(':memory:');
  const log = new TransparencyLog({ store: store.log, signer: logSigner, origin: ORIGIN, now: () => at });
  const ct = new CtLog({
    store: store.ct,
    signer: ctSigner,
    origin: CT_ORIGIN,
    acceptedRoots: () => [new X509Certificate(ca.rootPem()).raw],
    now: () => at,
  });
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await ca.issueLeaf(
    {
      publicKeySpki: leafKey.publicKeySpki(),
      identity: IDENTITY,
      issuer: ISSUER,
      notBefore: new Date(at.getTime() - 1000),
      validityMinutes: 10,
    },
    [ct],
  );
  const statement = makeStatement(
    [{ name: 'a', digest: { sha256: sha256(ARTIFACT).toString('hex') } }],
    'https://x.test/p',
    {},
  );
  const envelope = await signEnvelope(INTOTO_PAYLOAD_TYPE, statementPayload(statement), leafKey);
  const body = dsseEntryBody(envelope, certificatePem);
  const entry = await log.append(body);
  await log.append(Buffer.from('{"next":1}'));
  const proof = await log.inclusionProof(entry.index);
  const stamp = await tsa.timestamp(Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'));
  await store.close();
  return buildBundle({
    envelope,
    certificatePem,
    entry: { ...entry, body, proof },
    rfc3161Timestamps: [stamp],
  });
}

async function pastTsa(at: Date): Promise<TimestampAuthority> {
  const protection = await resolveKeyProtection(root, CONFIG.encryption);
  const { chainPem } = await loadTimestampAuthority(join(keysDir, 'tsa'), protection);
  const signer = await FileKeySigner.load(join(keysDir, 'tsa', 'tsa.key.pem'), protection, 'tsa');
  return new TimestampAuthority({ signer, certificatePem: chainPem[0] ?? '', now: () => at });
}

function sigstoreJs(trustedRoot: unknown, timestampThreshold: number): Verifier {
  // sigstore-js's defaults (one SCT, one tlog entry), with the timestamp threshold under test.
  return new Verifier(toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(JSON.stringify(trustedRoot)))), {
    timestampThreshold,
  });
}

describe('trusted time and key rotation', () => {
  let oldBundle: ReturnType<typeof buildBundle>;
  let oldRoot: ReturnType<typeof buildTrustedRoot>;
  // Two hours ago: the ten-minute leaf has long expired by the time it is verified.
  const then = new Date(Date.now() - 2 * 3600_000);

  before(async () => {
    await initHomeKeys(root, keysDir, CONFIG, new Date(then.getTime() - 3600_000));
    const keys = await openHomeKeys(root, keysDir, CONFIG);
    // Keys made "now" are not trusted two hours ago; back-date the windows as an older home would be.
    const input = keys.trustedRootInput(`https://${ORIGIN}`, () => `https://${CT_ORIGIN}`);
    const early = new Date(then.getTime() - 3600_000);
    for (const w of [input.ca, input.tlog, input.ctlogs ?? [], input.timestampAuthorities ?? []].flat())
      w.validFrom = early;
    oldRoot = buildTrustedRoot(input);
    oldBundle = await signBackdated(keys.ca, keys.logSigner, keys.ctSigner, then);
    keys.close();
  });

  async function signBackdated(ca: InternalCa, logSigner: Signer, ctSigner: Signer, at: Date) {
    return sign(ca, logSigner, ctSigner, await pastTsa(at), at);
  }

  it('carries an RFC 3161 timestamp from the gatehouse TSA, listed in the trusted root', () => {
    assert.equal(oldBundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps.length, 1);
    assert.equal(oldRoot.timestampAuthorities.length, 1);
  });

  it('verifies after the leaf certificate expired: gatehouse verify, the general verifier and sigstore-js (TSA counted)', () => {
    const parsed = parseBundle(oldBundle);
    const r = verifyArtifactBundle({
      artifactDigest: sha256(ARTIFACT),
      bundle: parsed,
      trustedRoot: oldRoot,
      identity: IDENTITY,
      issuer: ISSUER,
    });
    assert.equal(r.timestamps.length, 1);
    assert.ok(Math.abs((r.timestamps[0]?.getTime() ?? 0) - then.getTime()) < 2000);
    const g = verifySigstoreBundle({
      bundle: parseSigstoreBundle(oldBundle),
      trustedRoot: parseTrustedRoot(oldRoot),
      artifact: { bytes: ARTIFACT },
      identity: IDENTITY,
      issuer: ISSUER,
    });
    assert.equal(g.times.length, 2);
    // Threshold 2: sigstore-js must accept both the SET time and our TSA's timestamp.
    sigstoreJs(oldRoot, 2).verify(toSignedEntity(bundleFromJSON(oldBundle)), {
      subjectAlternativeName: IDENTITY,
    });
  });

  it('refuses a timestamp when the trusted root lists no TSA, over another signature, or truncated', async () => {
    const noTsa = { ...oldRoot, timestampAuthorities: [] };
    assert.throws(
      () =>
        verifyArtifactBundle({
          artifactDigest: sha256(ARTIFACT),
          bundle: parseBundle(oldBundle),
          trustedRoot: noTsa,
        }),
      { code: 'TIMESTAMP_INVALID' },
    );
    // A genuine timestamp from the trusted TSA, but of a different signature, cannot vouch for this one.
    const swapped = JSON.parse(JSON.stringify(oldBundle)) as typeof oldBundle;
    const other = await (await pastTsa(then)).timestamp(Buffer.from('another signature'));
    swapped.verificationMaterial.timestampVerificationData = {
      rfc3161Timestamps: [{ signedTimestamp: Buffer.from(other).toString('base64') }],
    };
    assert.throws(
      () =>
        verifyArtifactBundle({
          artifactDigest: sha256(ARTIFACT),
          bundle: parseBundle(swapped),
          trustedRoot: oldRoot,
        }),
      {
        code: 'TIMESTAMP_INVALID',
      },
    );
    // A truncated timestamp is refused, not skipped.
    const truncated = JSON.parse(JSON.stringify(oldBundle)) as typeof oldBundle;
    truncated.verificationMaterial.timestampVerificationData = {
      rfc3161Timestamps: [{ signedTimestamp: Buffer.from(other).subarray(0, 100).toString('base64') }],
    };
    assert.throws(
      () =>
        verifyArtifactBundle({
          artifactDigest: sha256(ARTIFACT),
          bundle: parseBundle(truncated),
          trustedRoot: oldRoot,
        }),
      {
        code: 'TIMESTAMP_INVALID',
      },
    );
  });

  it('rotates the log key, the CT log key, the CA and the TSA: old bundles keep verifying, new ones verify, windows show in the root', async () => {
    const rotation = new Date(Date.now() - 3600_000);
    for (const kind of ['log', 'ct', 'ca', 'tsa'] as const)
      await rotateHomeKey(root, keysDir, CONFIG, kind, rotation);
    const keys = await openHomeKeys(root, keysDir, CONFIG);
    try {
      const input = keys.trustedRootInput(`https://${ORIGIN}`, () => `https://${CT_ORIGIN}`);
      // The retired generations start when the old root said; back-date them the same way.
      const early = new Date(then.getTime() - 3600_000);
      for (const w of [input.ca, input.tlog, input.ctlogs ?? [], input.timestampAuthorities ?? []].flat()) {
        if (w.validTo !== undefined) w.validFrom = early;
      }
      const rotated = buildTrustedRoot(input);
      assert.equal(rotated.ctlogs.length, 2);
      assert.equal(rotated.ctlogs[0]?.publicKey.validFor.end, rotation.toISOString());
      assert.notEqual(rotated.ctlogs[0]?.logId.keyId, rotated.ctlogs[1]?.logId.keyId);
      assert.equal(rotated.tlogs.length, 2);
      assert.equal(rotated.certificateAuthorities.length, 2);
      assert.equal(rotated.timestampAuthorities.length, 2);
      assert.equal(rotated.tlogs[0]?.publicKey.validFor.end, rotation.toISOString());
      assert.equal(rotated.tlogs[1]?.publicKey.validFor.start, rotation.toISOString());
      // The old bundle, signed by retired keys, against the new root.
      verifyArtifactBundle({
        artifactDigest: sha256(ARTIFACT),
        bundle: parseBundle(oldBundle),
        trustedRoot: rotated,
        identity: IDENTITY,
      });
      sigstoreJs(rotated, 2).verify(toSignedEntity(bundleFromJSON(oldBundle)));
      // A new bundle, by the new generation.
      const fresh = await sign(
        keys.ca,
        keys.logSigner,
        keys.ctSigner,
        keys.tsa as TimestampAuthority,
        new Date(),
      );
      verifyArtifactBundle({
        artifactDigest: sha256(ARTIFACT),
        bundle: parseBundle(fresh),
        trustedRoot: rotated,
        identity: IDENTITY,
      });
      sigstoreJs(rotated, 2).verify(toSignedEntity(bundleFromJSON(fresh)));
      // A signature by a retired log key dated after its window closed is refused.
      const forged = await signBackdated(keys.ca, await retiredKey('log'), keys.ctSigner, new Date());
      assert.throws(
        () =>
          verifyArtifactBundle({
            artifactDigest: sha256(ARTIFACT),
            bundle: parseBundle(forged),
            trustedRoot: rotated,
          }),
        { code: 'LOG_PROOF_INVALID' },
      );
      // An SCT by the retired CT log key dated after its window closed is refused, by gatehouse
      // and by sigstore-js, though everything else in the bundle is current.
      const lateSct = await signBackdated(keys.ca, keys.logSigner, await retiredKey('ct'), new Date());
      assert.throws(
        () =>
          verifyArtifactBundle({
            artifactDigest: sha256(ARTIFACT),
            bundle: parseBundle(lateSct),
            trustedRoot: rotated,
          }),
        { code: 'CERTIFICATE_INVALID', message: /outside the CT log key's window/ },
      );
      assert.throws(() => sigstoreJs(rotated, 1).verify(toSignedEntity(bundleFromJSON(lateSct))), {
        code: 'CERTIFICATE_ERROR',
      });
    } finally {
      keys.close();
    }
  });
});

async function retiredKey(kind: 'log' | 'ct'): Promise<Signer> {
  const { readdirSync } = await import('node:fs');
  const dir = readdirSync(join(keysDir, 'retired')).find((d) => d.startsWith(`${kind}-`));
  const protection = await resolveKeyProtection(root, CONFIG.encryption);
  return FileKeySigner.load(join(keysDir, 'retired', dir ?? '', `${kind}.key.pem`), protection, kind);
}
