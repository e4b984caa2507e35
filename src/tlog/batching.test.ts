import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GatehouseError } from '../common/errors.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import type { Signer } from '../signing/signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { LogStore } from '../store/store.ts';
import { verifyCheckpoint } from './checkpoint.ts';
import { leafHash, rootHash, verifyInclusion } from './merkle.ts';
import { auditLog } from './monitor.ts';
import { TransparencyLog } from './transparency-log.ts';

const ORIGIN = 'gatehouse.test/log';
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-batching-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The log key, counting what it signs: SETs (canonical JSON) and checkpoints (notes). */
class CountingSigner implements Signer {
  readonly algorithm = 'ecdsa-p256-sha256' as const;
  readonly #inner = EphemeralSigner.generate();
  checkpoints = 0;
  sets = 0;
  publicKeySpki(): Uint8Array {
    return this.#inner.publicKeySpki();
  }
  publicKeyPem(): string {
    return this.#inner.publicKeyPem();
  }
  sign(data: Uint8Array): Promise<Uint8Array> {
    if (Buffer.from(data).toString('utf8').startsWith(`${ORIGIN}\n`)) this.checkpoints++;
    else this.sets++;
    return this.#inner.sign(data);
  }
}

const bodies = (n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => Buffer.from(`{"${tag}":${i}}`));

/** A log store whose `append` is `append`, the rest the real store's. */
function withAppend(real: LogStore, append: LogStore['append']): LogStore {
  return new Proxy(real, {
    get(target, property) {
      if (property === 'append') return append;
      const value = Reflect.get(target, property) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Check an inclusion proof as a verifier would: the checkpoint's signature, then the path to its root. */
function verifyProof(
  signer: Signer,
  body: Uint8Array,
  proof: Awaited<ReturnType<TransparencyLog['inclusionProof']>>,
): number {
  const cp = verifyCheckpoint(proof.checkpoint, { name: ORIGIN, spkiDer: signer.publicKeySpki() }, ORIGIN);
  assert.equal(cp.treeSize, proof.treeSize);
  assert.deepEqual(cp.rootHash, proof.rootHash);
  verifyInclusion(leafHash(body), proof.logIndex, cp.treeSize, proof.hashes, cp.rootHash);
  return cp.treeSize;
}

describe('log batches', () => {
  it('covers many concurrent appends with one checkpoint signature, and each proof verifies against it', async () => {
    const store = SqliteStore.open(join(dir, 'one-batch.db'));
    const signer = new CountingSigner();
    const log = new TransparencyLog({ store: store.log, signer, origin: ORIGIN });
    const sent = bodies(50, 'a');
    const appended = await Promise.all(sent.map((b) => log.append(b)));
    assert.deepEqual(
      appended.map((e) => e.index),
      sent.map((_, i) => i),
    );
    // Fifty entries submitted in one tick: one batch, one checkpoint; every entry keeps its own SET.
    assert.equal(signer.checkpoints, 1);
    assert.equal(signer.sets, 50);
    const sizes = new Set<number>();
    for (const [i, e] of appended.entries())
      sizes.add(verifyProof(signer, sent[i] as Uint8Array, await log.inclusionProof(e.index)));
    assert.deepEqual([...sizes], [50]);
    // The proofs reuse the batch's note: nothing more was signed for them.
    assert.equal(signer.checkpoints, 1);
    await store.close();
  });

  it('splits a burst into batches of at most maxEntries, each under its own signed checkpoint', async () => {
    const store = SqliteStore.open(':memory:');
    const signer = new CountingSigner();
    const log = new TransparencyLog({
      store: store.log,
      signer,
      origin: ORIGIN,
      batching: { maxEntries: 4 },
    });
    const sent = bodies(10, 'b');
    const appended = await Promise.all(sent.map((b) => log.append(b)));
    assert.equal(signer.checkpoints, 3);
    for (const [i, e] of appended.entries())
      verifyProof(signer, sent[i] as Uint8Array, await log.inclusionProof(e.index));
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(sent.map(leafHash)));
    await store.close();
  });

  it('audits as one growing log across batches, appended at once and one by one', async () => {
    const store = SqliteStore.open(join(dir, 'audit.db'));
    const signer = new CountingSigner();
    const log = new TransparencyLog({
      store: store.log,
      signer,
      origin: ORIGIN,
      batching: { maxEntries: 7 },
    });
    const key = { name: ORIGIN, spkiDer: signer.publicKeySpki() };
    const statePath = join(dir, 'audit-state.json');
    // The log as `gatehouse log audit` reads it through the control plane (hex hashes).
    const audited = {
      checkpoint: () => log.checkpoint(),
      consistencyProof: async (first: number, second: number) => ({
        hashes: (await log.consistencyProof(first, second)).hashes.map((h) => Buffer.from(h).toString('hex')),
      }),
    };
    assert.equal((await auditLog({ log: audited, key, statePath })).status, 'first');
    for (let round = 0; round < 4; round++) {
      await Promise.all(bodies(5 + round * 6, `c${round}`).map((b) => log.append(b)));
      await log.append(Buffer.from(`{"alone":${round}}`));
      const result = await auditLog({ log: audited, key, statePath });
      assert.equal(result.status, 'grew');
      assert.equal(result.treeSize, await log.size());
    }
    await store.close();
  });

  it('answers an append only once its batch is in the store', async () => {
    const store = SqliteStore.open(':memory:');
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    // The store's write of the batch waits until the test lets it through.
    const slow = withAppend(store.log, async (...args) => {
      await held;
      return store.log.append(...args);
    });
    const log = new TransparencyLog({ store: slow, signer: EphemeralSigner.generate(), origin: ORIGIN });
    let answered = 0;
    const appends = bodies(5, 'd').map((b) => log.append(b).then(() => answered++));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(answered, 0, 'no append is answered while its batch is not written');
    assert.equal(await store.log.size(), 0);
    release();
    await Promise.all(appends);
    assert.equal(answered, 5);
    assert.equal(await store.log.size(), 5);
    await store.close();
  });

  it('fails every append of a batch the store refuses, and goes on without a gap', async () => {
    const store = SqliteStore.open(':memory:');
    let failNext = true;
    const flaky = withAppend(store.log, (...args) => {
      if (failNext) {
        failNext = false;
        return Promise.reject(new GatehouseError('STORE_ERROR', 'disk full'));
      }
      return store.log.append(...args);
    });
    const signer = new CountingSigner();
    const log = new TransparencyLog({ store: flaky, signer, origin: ORIGIN });
    const results = await Promise.allSettled(bodies(6, 'e').map((b) => log.append(b)));

    assert.deepEqual(
      results.map((r) => r.status),
      Array(6).fill('rejected'),
    );
    assert.equal(signer.sets, 0, 'no timestamp is signed for an entry that is not in the log');
    const next = await log.append(Buffer.from('{"after":"failure"}'));
    assert.equal(next.index, 0);
    verifyProof(signer, Buffer.from('{"after":"failure"}'), await log.inclusionProof(0));
    await store.close();
  });

  it('never answers a proof with the note of another tree of the same size', async () => {
    // The store under a running log is swapped for one holding other entries at the same size (an
    // attacker's rewrite, a careless restore): the note kept for the old root must not be handed
    // out for the new tree.
    const signer = new CountingSigner();
    const a = SqliteStore.open(':memory:');
    const b = SqliteStore.open(':memory:');
    let current: LogStore = a.log;
    const swappable = new Proxy(a.log, {
      get(_, property) {
        const value = Reflect.get(current, property) as unknown;
        return typeof value === 'function' ? value.bind(current) : value;
      },
    });
    const log = new TransparencyLog({ store: swappable, signer, origin: ORIGIN });
    await Promise.all(bodies(3, 'f').map((x) => log.append(x)));
    const before = await log.inclusionProof(1);
    const other = new TransparencyLog({ store: b.log, signer: EphemeralSigner.generate(), origin: ORIGIN });
    await Promise.all(bodies(3, 'g').map((x) => other.append(x)));
    current = b.log;
    const after = await log.inclusionProof(1);
    assert.equal(after.treeSize, 3);
    assert.notEqual(after.checkpoint, before.checkpoint);
    const cp = verifyCheckpoint(after.checkpoint, { name: ORIGIN, spkiDer: signer.publicKeySpki() });
    assert.deepEqual(cp.rootHash, rootHash(bodies(3, 'g').map(leafHash)));
    // The old entry does not verify against the new tree's checkpoint.
    assert.throws(() => verifyProof(signer, bodies(3, 'f')[1] as Uint8Array, after));
    await a.close();
    await b.close();
  });

  it('loses no acknowledged entry when the process is killed in the middle of batches', async () => {
    const path = join(dir, 'crash.db');
    const store = new URL('../store/sqlite-store.ts', import.meta.url).href;
    const tlog = new URL('./transparency-log.ts', import.meta.url).href;
    const signing = new URL('../signing/file-key-signer.ts', import.meta.url).href;
    // The child appends in waves of 25 at once and prints each index as soon as it is answered.
    const code = `
      import { SqliteStore } from ${JSON.stringify(store)};
      import { TransparencyLog } from ${JSON.stringify(tlog)};
      import { EphemeralSigner } from ${JSON.stringify(signing)};
      const s = SqliteStore.open(${JSON.stringify(path)});
      const log = new TransparencyLog({ store: s.log, signer: EphemeralSigner.generate(), origin: ${JSON.stringify(ORIGIN)} });
      let n = 0;
      await Promise.all(Array.from({ length: 25 }, async () => {
        for (;;) {
          const body = Buffer.from(JSON.stringify({ crash: n++ }));
          const e = await log.append(body);
          process.stdout.write('ack ' + e.index + ' ' + body.toString('hex') + '\\n');
        }
      }));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<number, string>();
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`too few acknowledgements: ${err}`)), 60_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const line of lines) {
          const [, index, hex] = line.split(' ');
          acked.set(Number(index), hex ?? '');
        }
        if (acked.size >= 400) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => {
        if (acked.size < 400) reject(new Error(`the child exited early: ${err}`));
      });
    });
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r),
    );
    const reopened = SqliteStore.open(path);
    const size = await reopened.log.size();
    assert.ok(size >= acked.size, `${size} entries for ${acked.size} acknowledged`);
    for (const [index, hex] of acked) {
      const entry = await reopened.log.get(index);
      assert.equal(Buffer.from(entry?.body ?? []).toString('hex'), hex, `acknowledged entry ${index}`);
    }
    // The tree over what survived is whole: its stored nodes give the root of its leaves.
    const log = new TransparencyLog({
      store: reopened.log,
      signer: EphemeralSigner.generate(),
      origin: ORIGIN,
    });
    assert.deepEqual((await log.rootHash()).rootHash, rootHash(await reopened.log.leafHashes(0, size)));
    await reopened.close();
  });
});
