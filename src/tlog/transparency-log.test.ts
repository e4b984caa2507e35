import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import {
  consistencyProof,
  inclusionProof,
  leafHash,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
import { type AuditedLog, auditLog } from './monitor.ts';
import { decisionEntryBody, TransparencyLog } from './transparency-log.ts';

const ORIGIN = 'gatehouse.test/log';
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tlog-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const key = EphemeralSigner.generate();
const checkpointKey = { name: ORIGIN, spkiDer: key.publicKeySpki() };

/** The log of this test's key and origin over a store. */
function logOver(store: SqliteStore): TransparencyLog {
  return new TransparencyLog({ store: store.log, signer: key, origin: ORIGIN });
}

function bodies(n: number, tag = 'e'): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`{"${tag}":${i}}`));
}

describe('transparency log with stored interior nodes', () => {
  it('gives the same roots and proofs as the tree rebuilt from every leaf, at every size to 70', async () => {
    const store = SqliteStore.open(':memory:');
    const log = logOver(store);
    const leaves: Uint8Array[] = [];
    for (const b of bodies(70)) {
      await log.append(b);
      leaves.push(leafHash(b));
      const n = leaves.length;
      assert.deepEqual((await log.rootHash()).rootHash, rootHash(leaves));
      // A spread of indices and first sizes per tree size, not all n² of them.
      for (const i of new Set([0, n - 1, Math.floor(n / 2), (n * 7) % n])) {
        const p = await log.inclusionProof(i);
        assert.deepEqual(p.hashes, inclusionProof(leaves, i));
        verifyInclusion(leaves[i] as Uint8Array, i, n, p.hashes, p.rootHash);
      }
      for (const m of new Set([1, n, Math.ceil(n / 3), n - 1].filter((x) => x >= 1))) {
        const c = await log.consistencyProof(m, n);
        assert.deepEqual(c.hashes, consistencyProof(leaves, m));
        verifyConsistency(m, n, c.hashes, c.firstRoot, c.secondRoot);
      }
    }
    await store.close();
  });

  it('survives a restart with its nodes, and keeps growing consistently', async () => {
    const path = join(dir, 'restart.db');
    let store = SqliteStore.open(path);
    let log = logOver(store);
    for (const b of bodies(13)) await log.append(b);
    const before = await log.rootHash();
    await store.close();
    store = SqliteStore.open(path);
    log = logOver(store);
    assert.deepEqual(await log.rootHash(), before);
    await log.append(Buffer.from('{"after":1}'));
    const c = await log.consistencyProof(13, 14);
    verifyConsistency(13, 14, c.hashes, before.rootHash, c.secondRoot);
    await store.close();
  });

  it('logs every decision kind, including release and revoke', async () => {
    const store = SqliteStore.open(':memory:');
    const log = logOver(store);
    for (const outcome of ['allow', 'deny', 'quarantine', 'release', 'revoke']) {
      const e = await log.append(decisionEntryBody({ outcome, subject: 'sha256:00', policyDigest: 'ab' }));
      const stored = await store.log.get(e.index);
      assert.match(Buffer.from(stored?.body ?? []).toString(), new RegExp(`"outcome":"${outcome}"`));
    }
    assert.equal(await log.size(), 5);
    await store.close();
  });

  it('refuses to rewrite nodes or entries in the database itself', async () => {
    const store = SqliteStore.open(join(dir, 'immutable.db'));
    const log = logOver(store);
    for (const b of bodies(4)) await log.append(b);
    await store.close();
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dir, 'immutable.db'));
    assert.throws(() => db.exec('UPDATE log_nodes SET hash = zeroblob(32)'), /immutable/);
    assert.throws(() => db.exec('DELETE FROM log_nodes'), /immutable/);
    db.close();
  });
});

describe('transparency log appends and stored nodes', () => {
  it('fills in the nodes of a log written before they were stored, then keeps growing consistently', async () => {
    const path = join(dir, 'legacy.db');
    let store = SqliteStore.open(path);
    let log = logOver(store);
    const leaves: Uint8Array[] = [];
    for (const b of bodies(13)) {
      await log.append(b);
      leaves.push(leafHash(b));
    }
    await store.close();
    // What a database from before migration 5 looked like: entries, no interior nodes.
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(path);
    db.exec('DROP TRIGGER log_nodes_no_delete; DELETE FROM log_nodes');
    db.close();
    store = SqliteStore.open(path);
    assert.equal(await store.log.nodeCount(), 0);
    log = logOver(store);
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(leaves));
    assert.equal(await store.log.nodeCount(), 10);
    const p = await log.inclusionProof(5);
    assert.deepEqual(p.hashes, inclusionProof(leaves, 5));
    await log.append(Buffer.from('{"after":1}'));
    leaves.push(leafHash(Buffer.from('{"after":1}')));
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(leaves));
    await store.close();
  });

  it('gives concurrent appends consecutive indices in the order of the calls', async () => {
    const store = SqliteStore.open(':memory:');
    const log = logOver(store);
    const appended = await Promise.all(bodies(9).map((b) => log.append(b)));
    assert.deepEqual(
      appended.map((e) => e.index),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(bodies(9).map(leafHash)));
    await store.close();
  });

  it('starts an append over when another writer took its index first', async () => {
    const store = SqliteStore.open(':memory:');
    const log = logOver(store);
    const other = logOver(store);
    const [a, b] = await Promise.all([
      log.append(Buffer.from('{"a":1}')),
      other.append(Buffer.from('{"b":1}')),
    ]);
    assert.deepEqual([a.index, b.index].sort(), [0, 1]);
    const stored = await store.log.leafHashes(0, 2);
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(stored));
    await store.close();
  });
});

/** A log in its own store, and a monitor's reader of it. */
async function world(path: string) {
  const store = SqliteStore.open(path);
  const log = logOver(store);
  const reader: AuditedLog = {
    checkpoint: () => log.checkpoint(),
    consistencyProof: async (a, b) => {
      const p = await log.consistencyProof(a, b);
      return { hashes: p.hashes.map((h) => Buffer.from(h).toString('hex')) };
    },
  };
  return { store, log, reader };
}

describe('log audit (monitor)', () => {
  it('remembers the first checkpoint, accepts growth with a proof, and an unchanged log', async () => {
    const state = join(dir, 'audit-ok.json');
    const w = await world(':memory:');
    for (const b of bodies(5)) await w.log.append(b);
    assert.equal((await auditLog({ log: w.reader, key: checkpointKey, statePath: state })).status, 'first');
    assert.equal(
      (await auditLog({ log: w.reader, key: checkpointKey, statePath: state })).status,
      'unchanged',
    );
    for (const b of bodies(9, 'more')) await w.log.append(b);
    const r = await auditLog({ log: w.reader, key: checkpointKey, statePath: state });
    assert.deepEqual([r.status, r.previousSize, r.treeSize], ['grew', 5, 14]);
    await w.store.close();
  });

  it('refuses a fork: another history signed by the same key, at a larger and at the same size', async () => {
    const state = join(dir, 'audit-fork.json');
    const honest = await world(':memory:');
    for (const b of bodies(6)) await honest.log.append(b);
    await auditLog({ log: honest.reader, key: checkpointKey, statePath: state });
    const remembered = readFileSync(state, 'utf8');
    const fork = await world(':memory:');
    for (const b of bodies(6, 'forged')) await fork.log.append(b);
    await assert.rejects(auditLog({ log: fork.reader, key: checkpointKey, statePath: state }), {
      code: 'LOG_INCONSISTENT',
    });
    for (const b of bodies(3, 'x')) await fork.log.append(b);
    await assert.rejects(auditLog({ log: fork.reader, key: checkpointKey, statePath: state }), {
      code: 'LOG_INCONSISTENT',
    });
    // The trusted checkpoint is kept, so the alarm repeats.
    assert.equal(readFileSync(state, 'utf8'), remembered);
    await honest.store.close();
    await fork.store.close();
  });

  it('refuses a log that shrank, a checkpoint by another key, a forged proof and a malformed state', async () => {
    const state = join(dir, 'audit-bad.json');
    const w = await world(':memory:');
    for (const b of bodies(8)) await w.log.append(b);
    await auditLog({ log: w.reader, key: checkpointKey, statePath: state });
    const small: AuditedLog = { ...w.reader, checkpoint: () => w.log.checkpoint(4) };
    await assert.rejects(auditLog({ log: small, key: checkpointKey, statePath: state }), {
      code: 'LOG_INCONSISTENT',
    });
    const other = { name: ORIGIN, spkiDer: EphemeralSigner.generate().publicKeySpki() };
    await assert.rejects(auditLog({ log: w.reader, key: other, statePath: state }), {
      code: 'CHECKPOINT_INVALID',
    });
    await w.log.append(Buffer.from('{"n":9}'));
    const forged: AuditedLog = { ...w.reader, consistencyProof: async () => ({ hashes: ['00'.repeat(32)] }) };
    await assert.rejects(auditLog({ log: forged, key: checkpointKey, statePath: state }), {
      code: 'LOG_INCONSISTENT',
    });
    const junk: AuditedLog = { ...w.reader, consistencyProof: async () => ({ hashes: 'nope' }) };
    await assert.rejects(auditLog({ log: junk, key: checkpointKey, statePath: state }), {
      code: 'LOG_INCONSISTENT',
    });
    writeFileSync(state, '{"version":1}');
    await assert.rejects(auditLog({ log: w.reader, key: checkpointKey, statePath: state }), {
      code: 'BAD_INPUT',
    });
    await w.store.close();
  });
});
