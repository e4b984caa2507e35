import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createWitnessServer } from '../server/witness-server.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { cosign, formatVkey, parseVkey, verifiedCosignatures, verifyWitnessQuorum } from './cosignature.ts';
import { TransparencyLog } from './transparency-log.ts';
import { originHash, Witness } from './witness.ts';
import { LogWitnessing } from './witness-client.ts';

const ORIGIN = 'gatehouse.test/log';

function witnessKeyPair(name: string) {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { name, privateKey, key: parseVkey(formatVkey(name, createPublicKey(privateKey))) };
}

describe('witnessed checkpoints (c2sp.org/tlog-witness, tlog-cosignature)', () => {
  const logKey = EphemeralSigner.generate();
  const logStore = SqliteStore.open(':memory:');
  const log = new TransparencyLog({
    store: logStore.log,
    signer: logKey,
    origin: ORIGIN,
    cosignatures: logStore.cosignatures,
  });
  const w = witnessKeyPair('witness.test/w1');
  const witnessStore = SqliteStore.open(':memory:');
  const witness = new Witness({
    name: w.name,
    key: w.privateKey,
    logs: [{ origin: ORIGIN, key: { name: ORIGIN, spkiDer: logKey.publicKeySpki() } }],
    store: witnessStore.witness,
  });
  let server: Server;
  let url = '';
  let witnessing: LogWitnessing;

  before(async () => {
    server = createWitnessServer(witness);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    witnessing = new LogWitnessing({
      log,
      cosignatures: logStore.cosignatures,
      witnesses: [{ url, key: w.key }],
    });
    for (let i = 0; i < 3; i++) await log.append(Buffer.from(`{"entry":${i}}`));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  async function post(body: string): Promise<{ status: number; text: string; type: string | null }> {
    const r = await fetch(`${url}/add-checkpoint`, { method: 'POST', body });
    return { status: r.status, text: await r.text(), type: r.headers.get('content-type') };
  }

  it('cosigns a first checkpoint; the log keeps the cosignature and every checkpoint of that tree carries it', async () => {
    const round = await witnessing.cosign(3);
    assert.deepEqual(round.results, [{ witness: w.name, cosigned: true }]);
    assert.equal(round.treeSize, 3);
    const note = await log.checkpoint(3);
    const found = verifyWitnessQuorum(note, [w.key], 1);
    assert.equal(found[0]?.key.name, w.name);
    // The inclusion proof's checkpoint (what a bundle carries) too.
    verifyWitnessQuorum((await log.inclusionProof(1, 3)).checkpoint, [w.key], 1);
    // The witness serves its latest view, with the log's signature and its own.
    const r = await fetch(`${url}/${originHash(ORIGIN)}/checkpoint`);
    assert.equal(r.status, 200);
    verifyWitnessQuorum(await r.text(), [w.key], 1);
  });

  it('cosigns a grown tree with the consistency proof from the size it cosigned', async () => {
    await log.append(Buffer.from('{"entry":3}'));
    await log.append(Buffer.from('{"entry":4}'));
    const round = await witnessing.cosign(5);
    assert.equal(round.treeSize, 5);
    assert.equal(round.results[0]?.cosigned, true, round.results[0]?.problem);
    verifyWitnessQuorum(await log.checkpoint(5), [w.key], 1);
    // A tree the witness never saw carries no cosignature, and a verifier requiring one refuses it.
    await log.append(Buffer.from('{"entry":5}'));
    await assert.rejects(async () => verifyWitnessQuorum(await log.checkpoint(6), [w.key], 1), {
      code: 'CHECKPOINT_INVALID',
      message: /0 of the 1 required/,
    });
    // A round already done for a large enough tree is reused: no second request.
    assert.equal((await witnessing.cosign(4)).treeSize, 5);
  });

  it('refuses a forked log signed with the genuine key: no cosignature, its state unchanged', async () => {
    // Same key and origin, the same first four entries, then a different fifth: a split view.
    const forkStore = SqliteStore.open(':memory:');
    const fork = new TransparencyLog({
      store: forkStore.log,
      signer: logKey,
      origin: ORIGIN,
      cosignatures: forkStore.cosignatures,
    });
    for (let i = 0; i < 4; i++) await fork.append(Buffer.from(`{"entry":${i}}`));
    await fork.append(Buffer.from('{"entry":"forged"}'));
    await fork.append(Buffer.from('{"entry":5}'));
    const forked = new LogWitnessing({
      log: fork,
      cosignatures: forkStore.cosignatures,
      witnesses: [{ url, key: w.key }],
    });
    const round = await forked.cosign(6);
    assert.equal(round.results[0]?.cosigned, false);
    assert.match(round.results[0]?.problem ?? '', /422.*fork/);
    assert.deepEqual(await forkStore.cosignatures.forTreeSize(6), []);
    const state = await witnessStore.witness.get(ORIGIN);
    assert.equal(state?.treeSize, 5);
    assert.deepEqual(Buffer.from(state?.rootHash ?? []), Buffer.from((await log.rootHash(5)).rootHash));
    // The same size with another root is refused as well.
    const cp5 = await fork.checkpoint(5);
    const same = await post(`old 5\n\n${cp5}`);
    assert.equal(same.status, 422);
  });

  describe('answers the protocol’s statuses', () => {
    it('409 with its size as text/x.tlog.size for a wrong old size', async () => {
      const r = await post(`old 2\n\n${await log.checkpoint(6)}`);
      assert.equal(r.status, 409);
      assert.equal(r.text, '5\n');
      assert.equal(r.type, 'text/x.tlog.size');
    });

    it('404 for a log it does not know, 403 without a valid signature by the log key', async () => {
      const other = new TransparencyLog({
        store: SqliteStore.open(':memory:').log,
        signer: EphemeralSigner.generate(),
        origin: 'other.test/log',
      });
      await other.append(Buffer.from('x'));
      assert.equal((await post(`old 0\n\n${await other.checkpoint()}`)).status, 404);
      const impostor = new TransparencyLog({
        store: SqliteStore.open(':memory:').log,
        signer: EphemeralSigner.generate(),
        origin: ORIGIN,
      });
      await impostor.append(Buffer.from('x'));
      assert.equal((await post(`old 0\n\n${await impostor.checkpoint()}`)).status, 403);
      // The genuine key's hint and name, a broken signature.
      const genuine = await log.checkpoint(6);
      const broken = genuine.replace(
        /(\u2014 \S+ )(\S{10})/,
        (_, p: string, b: string) => `${p}${b.split('').reverse().join('')}`,
      );
      assert.equal((await post(`old 5\n\n${broken}`)).status, 403);
    });

    it('400 for an old size above the checkpoint, a malformed body or too many proof lines', async () => {
      assert.equal((await post(`old 9\n\n${await log.checkpoint(6)}`)).status, 400);
      assert.equal((await post(`old x\n\n${await log.checkpoint(6)}`)).status, 400);
      assert.equal((await post('no blank line')).status, 400);
      const lines = Array.from({ length: 64 }, () => `${Buffer.alloc(32).toString('base64')}\n`).join('');
      assert.equal((await post(`old 5\n${lines}\n${await log.checkpoint(6)}`)).status, 400);
      assert.equal((await fetch(`${url}/add-checkpoint`)).status, 405);
    });

    it('422 for a bad consistency proof', async () => {
      const proof = (await log.consistencyProof(5, 6)).hashes.map((h) => {
        const b = Buffer.from(h);
        b[0] = (b[0] ?? 0) ^ 1;
        return `${b.toString('base64')}\n`;
      });
      assert.equal((await post(`old 5\n${proof.join('')}\n${await log.checkpoint(6)}`)).status, 422);
    });

    it('one of two racing requests from the same size wins; the other gets 409', async () => {
      const proof = (await log.consistencyProof(5, 6)).hashes.map(
        (h) => `${Buffer.from(h).toString('base64')}\n`,
      );
      const body = `old 5\n${proof.join('')}\n${await log.checkpoint(6)}`;
      const answers = await Promise.all([post(body), post(body), post(body)]);
      assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409, 409]);
      assert.equal((await witnessStore.witness.get(ORIGIN))?.treeSize, 6);
    });
  });

  describe('cosignature verification', () => {
    it('refuses a forged line under the witness’s name and key ID, and one copied from another tree', async () => {
      const note = await log.checkpoint(5);
      const line = note.trimEnd().split('\n').at(-1) ?? '';
      const forger = generateKeyPairSync('ed25519').privateKey;
      const body = note.slice(0, note.indexOf('\n\n') + 1);
      const forged = cosign(body, w.name, forger, 1_700_000_000);
      // Same name, the real witness's key ID, the forger's signature.
      const blob = Buffer.from(forged.split(' ')[2] ?? '', 'base64');
      w.key.keyId.copy(blob, 0);
      const withForged = `${note.slice(0, note.lastIndexOf(line))}\u2014 ${w.name} ${blob.toString('base64')}\n`;
      assert.throws(() => verifiedCosignatures(withForged, [w.key]), { code: 'CHECKPOINT_INVALID' });
      // The genuine cosignature of size 5 moved onto the checkpoint of size 6.
      const moved = `${await log.checkpoint(6)}${line}\n`;
      assert.throws(() => verifiedCosignatures(moved, [w.key]), { code: 'CHECKPOINT_INVALID' });
      // Dated in the future.
      const future = `${note.slice(0, note.lastIndexOf(line))}${cosign(body, w.name, w.privateKey, Math.floor(Date.now() / 1000) + 3600)}\n`;
      assert.throws(() => verifiedCosignatures(future, [w.key]), { message: /future/ });
    });

    it('counts distinct witnesses: a quorum of two is not met by one witness', async () => {
      const w2 = witnessKeyPair('witness.test/w2');
      const note = await log.checkpoint(5);
      assert.throws(() => verifyWitnessQuorum(note, [w.key, w2.key], 2), {
        code: 'CHECKPOINT_INVALID',
        message: /1 of the 2 required.*witness\.test\/w2/,
      });
      const body = note.slice(0, note.indexOf('\n\n') + 1);
      const both = `${note}${cosign(body, w2.name, w2.privateKey, Math.floor(Date.now() / 1000))}\n`;
      assert.equal(verifyWitnessQuorum(both, [w.key, w2.key], 2).length, 2);
    });

    it('parses verifier keys strictly', () => {
      assert.throws(() => parseVkey('witness.test/w1+00000000+AAAA'), { code: 'BAD_INPUT' });
      const name = w.name;
      const b64 = w.key.vkey.slice(name.length + 10);
      assert.throws(() => parseVkey(`${name}+deadbeef+${b64}`), { message: /key ID/ });
      assert.throws(() => parseVkey(`other+${w.key.keyId.toString('hex')}+${b64}`), { message: /key ID/ });
      assert.equal(parseVkey(w.key.vkey).name, w.name);
    });
  });
});
