import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SecretMasker } from './secret-mask.ts';

/** Push `text` through a fresh masker in the given pieces and collect everything it lets out. */
function streamed(secrets: string[], pieces: string[]): string {
  const m = new SecretMasker(secrets);
  const out = pieces.map((p) => m.push(Buffer.from(p)).toString());
  return out.join('') + m.end().toString();
}

/** Every way of cutting `text` into two or three pieces. */
function cuts(text: string): string[][] {
  const all: string[][] = [];
  for (let i = 0; i <= text.length; i++) {
    all.push([text.slice(0, i), text.slice(i)]);
    for (let j = i; j <= text.length; j++) all.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
  }
  return all;
}

describe('secret masking', () => {
  const secret = 'ghp_s3cr3tT0ken';

  it('replaces every occurrence of a secret by ***', () => {
    assert.equal(streamed([secret], [`a ${secret} b ${secret}${secret}\n`]), 'a *** b ******\n');
  });

  it('masks a secret however the stream is cut around it', () => {
    const text = `x=${secret};y=${secret.slice(0, 5)} ${secret}`;
    for (const pieces of cuts(text)) {
      const got = streamed([secret], pieces);
      assert.equal(got, 'x=***;y=ghp_s ***', JSON.stringify(pieces));
    }
  });

  it('masks a secret that arrives one byte at a time', () => {
    assert.equal(streamed([secret], [...`[${secret}]`]), '[***]');
  });

  it('lets out at once what cannot begin a secret, and holds back only a possible beginning', () => {
    const m = new SecretMasker([secret]);
    assert.equal(m.push(Buffer.from('building...\n')).toString(), 'building...\n');
    assert.equal(m.push(Buffer.from('token: ghp_')).toString(), 'token: ');
    assert.equal(m.push(Buffer.from('x\n')).toString(), 'ghp_x\n');
    assert.equal(m.end().toString(), '');
  });

  it('masks the longer of two secrets where one begins the other, also split between them', () => {
    const short = 'abcd1234';
    const long = 'abcd1234efgh5678';
    for (const pieces of cuts(`<${long}|${short}>`))
      assert.equal(streamed([short, long], pieces), '<***|***>', JSON.stringify(pieces));
  });

  it('masks overlapping secrets leftmost first', () => {
    assert.equal(streamed(['aaaa1', 'a1bbbb'], ['aaaa1bbbb']), '***bbbb');
  });

  it('masks a secret added later in what is still held back and from then on', () => {
    const m = new SecretMasker();
    const first = m.push(Buffer.from('before s3cr3t-value '));
    m.add('s3cr3t-value');
    const rest = m.push(Buffer.from('after s3cr3t-value')).toString() + m.end().toString();
    assert.equal(first.toString(), 'before s3cr3t-value ');
    assert.equal(rest, 'after ***');
  });

  it('ignores empty, short and repeated values', () => {
    const m = new SecretMasker(['', 'ab', 'abc', secret, secret]);
    assert.equal(m.size, 1);
    assert.equal(m.mask(Buffer.from('ab abc')).toString(), 'ab abc');
  });

  it('masks bytes that are not text, and a multi-byte secret split inside a character', () => {
    const key = 'clé-secrète-€';
    const bytes = Buffer.concat([Buffer.from([0, 0xff]), Buffer.from(key), Buffer.from([0xfe])]);
    for (let i = 0; i <= bytes.length; i++) {
      const m = new SecretMasker([key]);
      const got = Buffer.concat([m.push(bytes.subarray(0, i)), m.push(bytes.subarray(i)), m.end()]);
      assert.deepEqual(got, Buffer.concat([Buffer.from([0, 0xff]), Buffer.from('***'), Buffer.from([0xfe])]));
    }
  });

  it('masks a whole value at once without disturbing a stream', () => {
    const m = new SecretMasker([secret]);
    assert.equal(m.push(Buffer.from('ghp_')).toString(), '');
    assert.equal(m.mask(Buffer.from(`${secret}!`)).toString(), '***!');
    assert.equal(m.push(Buffer.from('s3cr3tT0ken')).toString() + m.end().toString(), '***');
  });
});
