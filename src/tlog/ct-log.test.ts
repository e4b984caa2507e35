import assert from 'node:assert/strict';
import { createPublicKey, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { parseBundle } from '../signing/bundle.ts';
import { InternalCa } from '../signing/ca.ts';
import {
  certificateParts,
  embeddedScts,
  encodeSct,
  issuerKeyHash,
  leafIndexOf,
  merkleTreeLeaf,
  PRECERT_POISON_OID,
  type PrecertificateLog,
  parseSct,
  SCT_LIST_OID,
  tbsWithout,
} from '../signing/ct.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { clone, makeWorld, type Signed, signArtifact, type World } from '../testing/signing-fixture.ts';
import { verifyArtifactBundle } from '../verify/verify.ts';
import { CtLog, parseTilePath, rfc6962NoteKeyId, tileIndexPath, treeHeadSignatureInput } from './ct-log.ts';
import { inclusionProof, leafHash, rootHash, verifyInclusion } from './merkle.ts';

function der(pem: string): Buffer {
  return new X509Certificate(pem).raw;
}

describe('certificate transparency log', () => {
  let world: World;
  let signed: Signed;
  before(async () => {
    world = await makeWorld();
    await world.log.append(Buffer.from('{"first":true}'));
    signed = await signArtifact(world);
  });

  function gatehouseVerify(s: Signed, root: unknown = world.trustedRoot) {
    return verifyArtifactBundle({
      artifactDigest: s.digest,
      bundle: parseBundle(s.bundle),
      trustedRoot: root,
    });
  }

  function sigstoreJs(s: Signed, root: unknown = world.trustedRoot) {
    const verifier = new Verifier(toTrustMaterial(TrustedRoot.fromJSON(clone(root))));
    return verifier.verify(toSignedEntity(bundleFromJSON(clone(s.bundle))));
  }

  it('embeds one SCT by the trusted CT log, with its leaf index, and no poison', async () => {
    const leaf = der(signed.certificatePem);
    const scts = embeddedScts(leaf);
    assert.equal(scts?.length, 1);
    const [sct] = scts ?? [];
    assert.ok(sct);
    assert.deepEqual(sct.logId, world.ct.logId);
    assert.equal(sct.version, 0);
    assert.equal(leafIndexOf(sct.extensions), (await world.ct.size()) - 1);
    const exts = certificateParts(leaf).extensions;
    assert.equal(exts.filter((e) => e.oid === PRECERT_POISON_OID).length, 0);
    assert.equal(exts.at(-1)?.oid, SCT_LIST_OID, 'the SCT list takes the place the poison had');
    gatehouseVerify(signed);
    sigstoreJs(signed);
  });

  it('logs the precertificate: the leaf hash at the SCT index is the one the SCT signed, provable in the tree', async () => {
    const leaf = der(signed.certificatePem);
    const [sct] = embeddedScts(leaf) ?? [];
    assert.ok(sct);
    const index = leafIndexOf(sct.extensions) ?? -1;
    const issuer = new X509Certificate(world.ca.intermediatePem());
    const expected = leafHash(
      merkleTreeLeaf({
        timestamp: sct.timestamp,
        type: 'precert',
        signed: tbsWithout(leaf, SCT_LIST_OID),
        issuerKeyHash: issuerKeyHash(issuer.publicKey.export({ format: 'der', type: 'spki' })),
        extensions: sct.extensions,
      }),
    );
    const size = await world.ct.size();
    const tile = await world.ct.tile({ level: 0, index: 0, width: size });
    const leaves = Array.from({ length: size }, (_, i) => new Uint8Array(tile.subarray(i * 32, i * 32 + 32)));
    assert.deepEqual(leaves[index], expected);
    const root = await world.ct.rootHash(size);
    assert.deepEqual(root, rootHash(leaves));
    verifyInclusion(expected, index, size, inclusionProof(leaves, index), root);
    // The data tile holds the TileLeaf: the TimestampedEntry, then the precertificate itself.
    const data = await world.ct.tile({ level: 'data', index: 0, width: size });
    assert.ok(data.length > 0);
    const precertLeafDer = data.subarray(0, 8).readBigUInt64BE(0);
    assert.equal(precertLeafDer, sct.timestamp);
    const issuerFp = Buffer.from(data.subarray(data.length - 64, data.length - 32)).toString('hex');
    assert.deepEqual(Buffer.from(await world.ct.issuer(issuerFp)), der(world.ca.intermediatePem()));
  });

  it('signs a Static CT checkpoint whose RFC 6962 tree head signature verifies with the log key', async () => {
    const note = await world.ct.checkpoint();
    const [body = '', sigs = ''] = note.split('\n\n');
    const [origin, size, root] = body.split('\n');
    assert.equal(origin, world.ct.origin);
    assert.equal(Number(size), await world.ct.size());
    const line = /^\u2014 (\S+) (\S+)\n$/.exec(sigs);
    assert.equal(line?.[1], world.ct.origin);
    const blob = Buffer.from(line?.[2] ?? '', 'base64');
    assert.deepEqual(blob.subarray(0, 4), rfc6962NoteKeyId(world.ct.origin, world.ct.logId));
    const ts = blob.readBigUInt64BE(4);
    assert.deepEqual([blob[12], blob[13]], [4, 3], 'sha256, ecdsa');
    const sig = blob.subarray(16, 16 + blob.readUInt16BE(14));
    const key = createPublicKey({
      key: Buffer.from(world.ctKey.publicKeySpki()),
      format: 'der',
      type: 'spki',
    });
    const input = treeHeadSignatureInput(ts, Number(size), Buffer.from(root ?? '', 'base64'));
    assert.ok(cryptoVerify('sha256', input, key, sig));
  });

  it('encodes and parses tile paths as c2sp.org/tlog-tiles does', () => {
    assert.equal(tileIndexPath(1234067), 'x001/x234/067');
    assert.equal(tileIndexPath(5), '005');
    assert.deepEqual(parseTilePath('0/x001/x234/067'), { level: 0, index: 1234067, width: 256 });
    assert.deepEqual(parseTilePath('data/000.p/7'), { level: 'data', index: 0, width: 7 });
    for (const bad of ['6/000', '0/1', '0/000.p/0', '0/000.p/256', '0/../000', 'data/x1/000'])
      assert.throws(() => parseTilePath(bad), { code: 'BAD_INPUT' }, bad);
  });

  it('refuses tiles beyond the tree', async () => {
    const size = await world.ct.size();
    await assert.rejects(world.ct.tile({ level: 0, index: 0, width: size + 1 }), { code: 'NOT_FOUND' });
    await assert.rejects(world.ct.tile({ level: 1, index: 0, width: 1 }), { code: 'NOT_FOUND' });
  });

  describe('what the log refuses', () => {
    async function precertChain(ca: InternalCa): Promise<Buffer[]> {
      let chain: Buffer[] = [];
      const capture: PrecertificateLog = {
        addPreChain: async (c) => {
          chain = [...c];
          return world.ct.addPreChain(c);
        },
      };
      await ca.issueLeaf(
        {
          publicKeySpki: EphemeralSigner.generate().publicKeySpki(),
          identity: 'https://g.test/p',
          issuer: 'x',
        },
        [capture],
      );
      return chain;
    }

    it('a chain from a CA it does not accept', async () => {
      const other = await InternalCa.create(await mkdtemp(join(tmpdir(), 'gatehouse-ct-other-')), {
        name: 'o',
      });
      await assert.rejects(
        other.issueLeaf(
          {
            publicKeySpki: EphemeralSigner.generate().publicKeySpki(),
            identity: 'https://g.test/p',
            issuer: 'x',
          },
          [world.ct],
        ),
        { code: 'BAD_INPUT', message: /root this log accepts/ },
      );
    });

    it('a final certificate sent as a precertificate, and a precertificate sent as a certificate', async () => {
      await assert.rejects(
        world.ct.addPreChain([der(signed.certificatePem), der(world.ca.intermediatePem())]),
        {
          message: /poison/,
        },
      );
      const chain = await precertChain(world.ca);
      await assert.rejects(world.ct.addChainJson('x509', chain), { message: /add-pre-chain/ });
    });

    it('a precertificate whose signature is not its issuer’s', async () => {
      const chain = await precertChain(world.ca);
      const tampered = Buffer.from(chain[0] ?? []);
      tampered[tampered.length - 5] = (tampered[tampered.length - 5] ?? 0) ^ 0xff;
      await assert.rejects(world.ct.addPreChain([tampered, ...chain.slice(1)]), {
        message: /not signed by certificate 1|not a DER/,
      });
      // A leaf in the issuer's place.
      await assert.rejects(world.ct.addPreChain([chain[0] ?? Buffer.alloc(0), der(signed.certificatePem)]), {
        code: 'BAD_INPUT',
      });
    });

    it('anything once the shard is retired', async () => {
      const retired = new CtLog({
        store: SqliteStore.open(':memory:').ct,
        signer: world.ctKey,
        origin: 'gatehouse.test/ct/old',
        acceptedRoots: () => [der(world.ca.rootPem())],
        readOnly: true,
      });
      await assert.rejects(retired.addPreChain(await precertChain(world.ca)), { code: 'CONFLICT' });
    });
  });

  describe('the verifier refuses leaves the log did not vouch for (gatehouse verify and sigstore-js)', () => {
    function refused(s: Signed, message: RegExp) {
      assert.throws(() => gatehouseVerify(s), { code: 'CERTIFICATE_INVALID', message });
      assert.throws(() => sigstoreJs(s), { code: 'CERTIFICATE_ERROR' });
    }

    it('a leaf with no SCT (issued around the log)', async () => {
      refused(await signArtifact(world, { ctLogs: [] }), /no signed certificate timestamps/);
    });

    it('a leaf whose SCT comes from a CT log the root does not trust', async () => {
      const rogue = new CtLog({
        store: SqliteStore.open(':memory:').ct,
        signer: EphemeralSigner.generate(),
        origin: 'rogue.test/ct',
        acceptedRoots: () => [der(world.ca.rootPem())],
      });
      refused(await signArtifact(world, { ctLogs: [rogue] }), /not a trusted CT log/);
    });

    it('a leaf whose SCT names the trusted log but was signed by another key (forged)', async () => {
      const forger = EphemeralSigner.generate();
      const rogue = new CtLog({
        store: SqliteStore.open(':memory:').ct,
        signer: forger,
        origin: 'rogue.test/ct',
        acceptedRoots: () => [der(world.ca.rootPem())],
      });
      const forging: PrecertificateLog = {
        addPreChain: async (chain) => {
          const sct = parseSct(await rogue.addPreChain(chain));
          return encodeSct({ ...sct, logId: world.ct.logId });
        },
      };
      refused(await signArtifact(world, { ctLogs: [forging] }), /signature does not verify/);
    });

    it('a leaf carrying a genuine SCT of another certificate (replayed)', async () => {
      const genuine = embeddedScts(der(signed.certificatePem))?.[0];
      assert.ok(genuine);
      const replaying: PrecertificateLog = {
        addPreChain: async () =>
          encodeSct({
            logId: genuine.logId,
            timestamp: genuine.timestamp,
            extensions: genuine.extensions,
            signature: genuine.signature,
          }),
      };
      refused(await signArtifact(world, { ctLogs: [replaying] }), /signature does not verify/);
    });

    it('copies of one log’s SCT do not count as two logs', async () => {
      const twice = await signArtifact(world, { ctLogs: [world.ct, world.ct] });
      assert.equal(embeddedScts(der(twice.certificatePem))?.length, 2);
      gatehouseVerify(twice);
      const { verifyScts } = await import('../verify/sct.ts');
      const { parseTrustedRoot } = await import('../signing/trust-root.ts');
      assert.throws(
        () =>
          verifyScts(
            new X509Certificate(twice.certificatePem),
            new X509Certificate(world.ca.intermediatePem()),
            parseTrustedRoot(world.trustedRoot).ctlogs,
            2,
          ),
        { code: 'CERTIFICATE_INVALID', message: /1 of 2/ },
      );
    });

    it('a valid SCT outside the CT key window in the root', async () => {
      const root = clone(world.trustedRoot);
      const log = (root.ctlogs as { publicKey: { validFor: { start: string; end?: string } } }[])[0];
      assert.ok(log);
      log.publicKey.validFor = {
        start: new Date(Date.now() - 7200_000).toISOString(),
        end: new Date(Date.now() - 3600_000).toISOString(),
      };
      assert.throws(() => gatehouseVerify(signed, root), { code: 'CERTIFICATE_INVALID', message: /window/ });
      assert.throws(() => sigstoreJs(signed, root), { code: 'CERTIFICATE_ERROR' });
    });
  });
});
