import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { verifyPrehashedEcdsa } from './ecdsa-prehash.ts';

describe('ECDSA verification over a given digest', () => {
  for (const [curve, hash] of [
    ['P-256', 'sha256'],
    ['P-384', 'sha384'],
    ['P-384', 'sha256'],
  ] as const) {
    it(`agrees with node:crypto on ${curve} over ${hash} digests (property, 20 keys)`, () => {
      for (let i = 0; i < 20; i++) {
        const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
        const data = Buffer.from(`message ${i}`);
        const sig = sign(hash, data, privateKey);
        const digest = createHash(hash).update(data).digest();
        assert.equal(verifyPrehashedEcdsa(publicKey, digest, sig), true);
        const other = createHash(hash).update(`other ${i}`).digest();
        assert.equal(verifyPrehashedEcdsa(publicKey, other, sig), false);
      }
    });
  }

  it('refuses malformed and out-of-range signatures and other key types', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const digest = createHash('sha256').update('m').digest();
    const good = sign('sha256', Buffer.from('m'), privateKey);
    const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
    const seq = (r: Buffer, s: Buffer) => {
      const int = (b: Buffer) => Buffer.concat([Buffer.of(0x02, b.length + 1, 0), b]);
      const body = Buffer.concat([int(r), int(s)]);
      return Buffer.concat([Buffer.of(0x30, body.length), body]);
    };
    const cases: [string, Uint8Array][] = [
      ['empty', Buffer.alloc(0)],
      ['truncated', good.subarray(0, good.length - 3)],
      ['trailing bytes', Buffer.concat([good, Buffer.of(0)])],
      ['r = n', seq(n, Buffer.from('01', 'hex'))],
      ['s = 0', seq(Buffer.from('01', 'hex'), Buffer.from('00', 'hex'))],
      ['not a sequence', Buffer.of(0x04, 0x02, 0x01, 0x01)],
    ];
    for (const [name, sig] of cases) assert.equal(verifyPrehashedEcdsa(publicKey, digest, sig), false, name);
    const ed = generateKeyPairSync('ed25519').publicKey;
    assert.equal(verifyPrehashedEcdsa(ed, digest, good), false);
  });
});
