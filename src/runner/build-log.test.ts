import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { BUILD_LOG_MAX_BYTES, BuildLog, lastLines } from './build-log.ts';

describe('build log', () => {
  it('keeps a short log whole, with the digest of its bytes', () => {
    const log = new BuildLog();
    log.write(Buffer.from('one\n'));
    log.write(Buffer.from('two\n'));
    const got = log.end();
    assert.equal(got.bytes.toString(), 'one\ntwo\n');
    assert.equal(got.size, 8);
    assert.equal(got.truncated, false);
    assert.equal(got.sha256, createHash('sha256').update('one\ntwo\n').digest('hex'));
  });

  it('keeps the start and the end of a flood within the bound, marking how much was left out', () => {
    const log = new BuildLog();
    const line = (i: number) => `line ${String(i).padStart(6, '0')} ${'.'.repeat(50)}\n`;
    let written = 0;
    for (let i = 0; i < 50_000; i++) {
      const l = line(i);
      log.write(Buffer.from(l));
      written += l.length;
    }
    const got = log.end();
    assert.ok(got.size <= BUILD_LOG_MAX_BYTES, `${got.size} bytes`);
    assert.ok(got.size > BUILD_LOG_MAX_BYTES - 1024);
    assert.equal(got.truncated, true);
    const text = got.bytes.toString();
    assert.ok(text.startsWith(line(0)));
    assert.ok(text.endsWith(line(49_999)));
    const marker =
      /\n\[gatehouse: (\d+) bytes of build output left out here; the log keeps the first (\d+) and the last (\d+) bytes\]\n/.exec(
        text,
      );
    assert.ok(marker, 'the cut is marked');
    const [, dropped, head, tail] = marker.map(Number);
    assert.equal((dropped ?? 0) + (head ?? 0) + (tail ?? 0), written);
    assert.equal(got.sha256, createHash('sha256').update(got.bytes).digest('hex'));
  });

  it('masks before it bounds: a secret never survives in part at the cut', () => {
    const secret = 'tok-0123456789abcdef';
    const log = new BuildLog({ secrets: [secret], maxBytes: 1024 });
    for (let i = 0; i < 200; i++) log.write(Buffer.from(`${secret}\n`));
    const got = log.end();
    assert.ok(got.size <= 1024);
    assert.doesNotMatch(got.bytes.toString(), /tok-|0123456789/);
  });

  it('shows what it masked as it goes, and the rest at the end', () => {
    const shown: string[] = [];
    const log = new BuildLog({ secrets: ['hunter2-secret'], onOutput: (b) => shown.push(b.toString()) });
    log.write(Buffer.from('pass=hunter2'));
    log.write(Buffer.from('-secret ok\nend hunter'));
    assert.equal(shown.join(''), 'pass=*** ok\nend ');
    log.end();
    assert.equal(shown.join(''), 'pass=*** ok\nend hunter');
  });

  it('ignores output after it ended and ends once', () => {
    const log = new BuildLog();
    log.write(Buffer.from('a'));
    const first = log.end();
    log.write(Buffer.from('b'));
    assert.equal(log.end(), first);
    assert.equal(first.bytes.toString(), 'a');
  });

  it('gives the last lines of a log', () => {
    const text = Array.from({ length: 100 }, (_, i) => `l${i + 1}`).join('\n');
    assert.deepEqual(
      lastLines(`${text}\n`),
      Array.from({ length: 40 }, (_, i) => `l${i + 61}`),
    );
    assert.deepEqual(lastLines('only'), ['only']);
    assert.deepEqual(lastLines(''), []);
  });
});
