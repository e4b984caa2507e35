import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { keyHint, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import {
  leafHash,
  consistencyProof as proveConsistency,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
import { decisionEntryBody, TransparencyLog } from './transparency-log.ts';

const NAME = 'gatehouse.test/log';

describe('checkpoint signed notes', () => {
  const key = EphemeralSigner.generate();
  const other = EphemeralSigner.generate();
  const cp = { origin: NAME, treeSize: 5, rootHash: new Uint8Array(32).fill(7), extensions: [] };
  let note = '';
  before(async () => {
    note = await signCheckpoint(cp, key, NAME);
  });
  const verify = (text: string) => verifyCheckpoint(text, { name: NAME, spkiDer: key.publicKeySpki() });

  it('round-trips origin, size and root and uses the SPKI hash as key hint', () => {
    const got = verify(note);
    assert.equal(got.origin, NAME);
    assert.equal(got.treeSize, 5);
    assert.deepEqual(got.rootHash, cp.rootHash);
    const blob = Buffer.from(note.trimEnd().split(' ').at(-1) ?? '', 'base64');
    assert.deepEqual(new Uint8Array(blob.subarray(0, 4)), keyHint(key.publicKeySpki()));
    assert.match(note, /^gatehouse\.test\/log\n5\n[A-Za-z0-9+/]{43}=\n\n\u2014 gatehouse\.test\/log \S+\n$/);
  });

  it('accepts an extra cosignature by an unknown key next to the log signature', async () => {
    const co = (await signCheckpoint(cp, other, 'witness.test')).split('\n\n')[1] ?? '';
    verify(`${note}${co}`);
  });

  it('rejects adversarial notes', async () => {
    const [body = '', sigs = ''] = note.split('\n\n');
    const sigLine = sigs.trimEnd();
    const byOther = await signCheckpoint(cp, other, NAME);
    const cases: [string, string][] = [
      ['missing blank line', `${body}\n${sigs}`],
      ['no signatures', `${body}\n\n`],
      ['bad size', note.replace('\n5\n', '\n05\n')],
      ['negative size', note.replace('\n5\n', '\n-5\n')],
      ['changed size', note.replace('\n5\n', '\n6\n')],
      ['bad base64 root', note.replace(/\n([A-Za-z0-9+/]{43}=)\n/, '\n!!!notbase64\n')],
      ['short root', note.replace(/\n([A-Za-z0-9+/]{43}=)\n/, '\nAAAA\n')],
      ['bad base64 signature', `${body}\n\n\u2014 ${NAME} ***\n`],
      [
        'wrong key hint',
        `${body}\n\n\u2014 ${NAME} ${Buffer.concat([Buffer.from([1, 2, 3, 4]), Buffer.from(sigLine.split(' ')[2] ?? '', 'base64').subarray(4)]).toString('base64')}\n`,
      ],
      ['extra non-signature line', `${note}garbage\n`],
      ['empty line among signatures', `${body}\n\n${sigLine}\n\n`],
      ['missing final newline', note.trimEnd()],
      ['hyphen instead of em dash', note.replace('\u2014', '-')],
      ['signature by another key', byOther],
      ['wrong origin line', note.replace(`${NAME}\n5`, 'evil.test/log\n5')],
      ['carriage returns', note.replaceAll('\n', '\r\n')],
      ['empty', ''],
    ];
    for (const [what, text] of cases) {
      assert.throws(
        () => verify(text),
        (e: unknown) => isGatehouseError(e, 'CHECKPOINT_INVALID'),
        what,
      );
    }
  });
});

describe('TransparencyLog', () => {
  it('proves inclusion and consistency against its signed checkpoints', async () => {
    const key = EphemeralSigner.generate();
    const log = new TransparencyLog({ store: SqliteStore.open(':memory:').log, signer: key, origin: NAME });
    const bodies = Array.from({ length: 13 }, (_, i) => decisionEntryBody({ decision: i, outcome: 'allow' }));
    const appended = [];
    for (const b of bodies) appended.push(await log.append(b));
    assert.deepEqual(
      appended.map((a) => a.index),
      bodies.map((_, i) => i),
    );
    assert.equal(appended[0]?.logId, log.logId);
    for (const i of [0, 5, 12]) {
      const p = await log.inclusionProof(i);
      const cp = verifyCheckpoint(p.checkpoint, { name: NAME, spkiDer: key.publicKeySpki() }, NAME);
      assert.equal(cp.treeSize, 13);
      verifyInclusion(leafHash(bodies[i] as Uint8Array), i, p.treeSize, p.hashes, cp.rootHash);
    }
    const c = await log.consistencyProof(4, 13);
    verifyConsistency(4, 13, c.hashes, c.firstRoot, c.secondRoot);
    assert.deepEqual(c.hashes, proveConsistency(bodies.map(leafHash), 4));
    assert.deepEqual(c.secondRoot, rootHash(bodies.map(leafHash)));
  });

  it('refuses an entry outside the tree and an origin with spaces', async () => {
    const log = new TransparencyLog({
      store: SqliteStore.open(':memory:').log,
      signer: EphemeralSigner.generate(),
      origin: NAME,
    });
    await log.append(Buffer.from('x'));
    await assert.rejects(log.inclusionProof(1), (e: unknown) => isGatehouseError(e, 'NOT_FOUND'));
    await assert.rejects(log.inclusionProof(0, 2), (e: unknown) => isGatehouseError(e, 'BAD_INPUT'));
    assert.throws(
      () =>
        new TransparencyLog({
          store: SqliteStore.open(':memory:').log,
          signer: EphemeralSigner.generate(),
          origin: 'a b',
        }),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG'),
    );
  });

  it('writes a decision body as canonical JSON', () => {
    assert.equal(
      Buffer.from(decisionEntryBody({ b: 1, a: 'x' })).toString(),
      '{"apiVersion":"0.0.1","kind":"gatehouse-decision","spec":{"a":"x","b":1}}',
    );
  });
});
