/**
 * The console page's own verifiers (plain browser modules, run here under Node's WebCrypto, the
 * same API Chromium gives the page): the RFC 6962 Merkle proofs against the log's own prover, the
 * checkpoint signature, and the triage act the page signs against the server's verifier.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { EphemeralSigner } from '../../signing/file-key-signer.ts';
import { keyIdOf, verifySecurityAct } from '../../signing/security-act.ts';
import { signCheckpoint } from '../../tlog/checkpoint.ts';
import { consistencyProof, inclusionProof, rootHash, leafHash as serverLeafHash } from '../../tlog/merkle.ts';
import { triageAct as serverTriageAct } from '../../triage/triage-service.ts';
import { actDigest, loadSigningKey, signAct, triageAct } from './assets/act.js';
import { leafHash, verifyConsistency, verifyInclusion } from './assets/merkle.js';
import { verifyCheckpoint } from './assets/note.js';
import { buildLogOfBundle, entryRecordsPayload, sha256Hex } from './assets/provenance.js';

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => new TextEncoder().encode(`entry ${i}`));

describe('the console page verifiers', () => {
  it('hash leaves as the log does', async () => {
    const e = randomBytes(40);
    assert.deepEqual(await leafHash(e), serverLeafHash(e));
  });

  it('verify every inclusion proof of trees up to 33 leaves, and refuse each altered one', async () => {
    for (let n = 1; n <= 33; n++) {
      const entries = leavesOf(n);
      const hashes = entries.map(serverLeafHash);
      const root = rootHash(hashes);
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(hashes, i);
        const leaf = hashes[i] ?? new Uint8Array();
        await verifyInclusion(i, n, await leafHash(entries[i] ?? new Uint8Array()), proof, root);
        if (n > 1) {
          await assert.rejects(verifyInclusion((i + 1) % n, n, leaf, proof, root), 'another index');
          const bent = proof.map((p, k) => (k === 0 ? p.map((b, j) => (j === 0 ? b ^ 1 : b)) : p));
          await assert.rejects(verifyInclusion(i, n, leaf, bent, root), 'an altered path');
          await assert.rejects(verifyInclusion(i, n, leaf, [...proof, root], root), 'a longer path');
        }
      }
    }
  });

  it('verify every consistency proof of trees up to 24 leaves, and refuse a rewritten history', async () => {
    for (let m = 1; m <= 24; m++) {
      for (let n = m; n <= 24; n++) {
        const hashes = leavesOf(n).map(serverLeafHash);
        const first = rootHash(hashes.slice(0, m));
        const second = rootHash(hashes);
        const proof = consistencyProof(hashes, m);
        await verifyConsistency(m, n, first, second, proof);
        if (m < n) {
          // The same sizes, but a first tree whose leaf 0 was changed: a log that rewrote itself.
          const rewritten = rootHash([serverLeafHash(new Uint8Array([9])), ...hashes.slice(1, m)]);
          await assert.rejects(verifyConsistency(m, n, rewritten, second, proof));
          await assert.rejects(verifyConsistency(m, n, first, second, proof.slice(1)));
        }
      }
    }
  });

  it('verify a checkpoint with the trusted root key only', async () => {
    const signer = EphemeralSigner.generate();
    const hashes = leavesOf(5).map(serverLeafHash);
    const note = await signCheckpoint(
      { origin: 'gatehouse.test/log', treeSize: 5, rootHash: rootHash(hashes), extensions: [] },
      signer,
      'gatehouse.test/log',
    );
    const key = Buffer.from(signer.publicKeySpki()).toString('base64');
    const cp = await verifyCheckpoint(note, [key]);
    assert.equal(cp.treeSize, 5);
    assert.deepEqual(cp.rootHash, rootHash(hashes));
    const other = Buffer.from(EphemeralSigner.generate().publicKeySpki()).toString('base64');
    await assert.rejects(verifyCheckpoint(note, [other]), /no signature/);
    await assert.rejects(verifyCheckpoint(note.replace('\n5\n', '\n6\n'), [key]), /does not verify/);
  });

  it('sign a triage act the server accepts, and only that act', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const spki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
    const trusted = [
      { keyId: keyIdOf(spki), publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString() },
    ];
    const { key, keyId } = await loadSigningKey(pem);
    assert.equal(keyId, keyIdOf(spki));
    const reason = 'false positive: CVE in a test-only dependency, «ü»';
    const act = triageAct('dec-1', 'release', reason);
    const signature = await signAct(act, key);
    const server = serverTriageAct({ decisionId: 'dec-1', action: 'release', reason });
    assert.equal(verifySecurityAct(server, { signature, keyId }, trusted), keyId);
    assert.match(await actDigest(act), /^[0-9a-f]{64}$/);
    // The same signature for another decision or action is refused.
    for (const other of [
      serverTriageAct({ decisionId: 'dec-2', action: 'release', reason }),
      serverTriageAct({ decisionId: 'dec-1', action: 'reject', reason }),
    ])
      assert.throws(() => verifySecurityAct(other, { signature, keyId }, trusted), {
        code: 'SIGNATURE_INVALID',
      });
    await assert.rejects(
      loadSigningKey(publicKey.export({ format: 'pem', type: 'spki' }).toString()),
      /PKCS#8/,
    );
  });

  describe("the build log's check against the provenance", () => {
    const digest = 'a'.repeat(64);
    const statement = (
      over: Record<string, unknown> = {},
      byproducts: unknown[] = [{ name: 'build.log', digest: { sha256: digest } }],
    ) => ({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [],
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: { buildDefinition: {}, runDetails: { byproducts } },
      ...over,
    });
    const bundleOf = (st: unknown, o: { payloadType?: string; entries?: unknown[] } = {}) => ({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { tlogEntries: o.entries ?? [{ logIndex: '7' }] },
      dsseEnvelope: {
        payloadType: o.payloadType ?? 'application/vnd.in-toto+json',
        payload: Buffer.from(JSON.stringify(st)).toString('base64'),
        signatures: [],
      },
    });

    it("reads the build.log digest, the bundle's log index and the statement's hash", async () => {
      const b = bundleOf(statement());
      const named = await buildLogOfBundle(b);
      const payload = Buffer.from(b.dsseEnvelope.payload, 'base64');
      assert.deepEqual(named, { digest, logIndex: 7, payloadSha256: await sha256Hex(payload) });
      const entry = (value: string, kind = 'dsse') =>
        new TextEncoder().encode(
          JSON.stringify({ kind, spec: { payloadHash: { algorithm: 'sha256', value } } }),
        );
      assert.ok(entryRecordsPayload(entry(named.payloadSha256), named.payloadSha256));
      assert.ok(!entryRecordsPayload(entry(named.payloadSha256, 'hashedrekord'), named.payloadSha256));
      assert.ok(!entryRecordsPayload(entry('0'.repeat(64)), named.payloadSha256));
      assert.equal((await buildLogOfBundle(bundleOf(statement({}, [])))).digest, null, 'no log named');
    });

    it('refuses a bundle that is not a provenance with one build log and one log entry', async () => {
      const bad: [string, unknown][] = [
        ['no envelope', { verificationMaterial: {} }],
        ['another payload type', bundleOf(statement(), { payloadType: 'text/plain' })],
        [
          'another predicate',
          bundleOf(statement({ predicateType: 'https://slsa.dev/verification_summary/v1' })),
        ],
        [
          'two build logs',
          bundleOf(
            statement({}, [
              { name: 'build.log', digest: { sha256: digest } },
              { name: 'build.log', digest: { sha256: 'b'.repeat(64) } },
            ]),
          ),
        ],
        [
          'a digest that is no SHA-256',
          bundleOf(statement({}, [{ name: 'build.log', digest: { sha256: 'x' } }])),
        ],
        ['no log entry', bundleOf(statement(), { entries: [] })],
        ['two log entries', bundleOf(statement(), { entries: [{ logIndex: '1' }, { logIndex: '2' }] })],
        ['a negative index', bundleOf(statement(), { entries: [{ logIndex: '-1' }] })],
      ];
      for (const [what, b] of bad) await assert.rejects(buildLogOfBundle(b), Error, what);
    });
  });
});
