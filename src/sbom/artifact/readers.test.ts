import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import { BinaryScanner } from './binary-scanner.ts';
import { ByteStream, FileRange } from './byte-stream.ts';
import { CargoAuditableScan, cargoAuditableComponents } from './cargo-auditable.ts';
import { sh, writeTree } from './fixtures.test-helper.ts';
import { GoBuildInfoScan, goBuildInfoComponents } from './go-buildinfo.ts';
import { readTar } from './tar-reader.ts';
import { ZipArchive } from './zip-reader.ts';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gatehouse-artifact-readers-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function uvarint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A binary-like buffer with Go 1.18+ inline build info and cargo auditable data at given offsets. */
function binaryWith(goAt: number, cargoAt: number, size: number): Buffer {
  const b = Buffer.alloc(size, 0x90);
  const start = Buffer.from('3077af0c9274080241e1c107e6d618e6', 'hex');
  const end = Buffer.from('f932433186182072008242104116d8f2', 'hex');
  const mod = Buffer.concat([
    start,
    Buffer.from('path\tx\nmod\tx\t(devel)\t\ndep\tgolang.org/x/sys\tv0.26.0\th1:a=\n'),
    end,
  ]);
  const version = Buffer.from('go1.23.4');
  const header = Buffer.concat([
    Buffer.from('\xff Go buildinf:', 'latin1'),
    Buffer.from([8, 2]),
    Buffer.alloc(16),
  ]);
  Buffer.concat([header, uvarint(version.length), version, uvarint(mod.length), mod]).copy(b, goAt);
  deflateSync(
    Buffer.from(JSON.stringify({ packages: [{ name: 'libc', version: '0.2.155', source: 'crates.io' }] })),
    {
      level: 7,
    },
  ).copy(b, cargoAt);
  return b;
}

/** A small deterministic PRNG (mulberry32), so that a failing split can be replayed. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('the binary scanner', () => {
  it('finds Go build info and cargo auditable data however the stream is cut into chunks', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const size = 20_000 + Math.floor(r() * 20_000);
      const goAt = Math.floor(r() * (size / 2 - 400));
      const cargoAt = size / 2 + Math.floor(r() * (size / 2 - 400));
      const bytes = binaryWith(goAt, Math.floor(cargoAt), size);
      const go = new GoBuildInfoScan();
      const cargo = new CargoAuditableScan();
      const s = new BinaryScanner([...go.rules(1 << 20), ...cargo.rules(1 << 20)], {
        maxCapture: (1 << 20) + 64,
        maxOpenCaptures: 64,
      });
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + Math.floor(r() * (r() < 0.3 ? 8 : 3000));
        s.push(bytes.subarray(at, at + n));
        at += n;
      }
      s.end();
      const info = go.result();
      assert.ok(info !== undefined, `seed ${seed}: no Go build info`);
      assert.deepEqual(
        goBuildInfoComponents(info).map((c) => c.purl),
        ['pkg:golang/golang.org/x/sys@v0.26.0', 'pkg:golang/stdlib@1.23.4'],
        `seed ${seed}`,
      );
      assert.deepEqual(
        cargoAuditableComponents(cargo.result() ?? '')?.map((c) => c.purl),
        ['pkg:cargo/libc@0.2.155'],
        `seed ${seed}`,
      );
    }
  });

  it('ignores a Go magic string with no valid header after it, and zlib-looking bytes that are not audit data', () => {
    const bytes = Buffer.concat([
      Buffer.from('\xff Go buildinf:', 'latin1'),
      Buffer.from([99, 2]),
      Buffer.alloc(100, 0x78),
    ]);
    const go = new GoBuildInfoScan();
    const cargo = new CargoAuditableScan();
    const s = new BinaryScanner([...go.rules(1 << 20), ...cargo.rules(1 << 20)], {
      maxCapture: 1 << 21,
      maxOpenCaptures: 64,
    });
    s.push(Buffer.concat([bytes, deflateSync(Buffer.from('{"not":"audit"}'))]));
    s.end();
    assert.equal(go.result(), undefined);
    assert.equal(cargo.result(), undefined);
  });

  it('applies a Go module replacement, and leaves out one replaced by a local directory', () => {
    const comps = goBuildInfoComponents({
      modinfo:
        'path\tapp\nmod\tapp\tv1.0.0\t\ndep\tgithub.com/a/b\tv1.0.0\th1:x=\n=>\tgithub.com/fork/b\tv1.0.1\th1:y=\ndep\tlocal.dev/c\tv0.0.0\n=>\t../c\t\t\n',
    });
    assert.deepEqual(
      comps.map((c) => `${c.name}@${c.version}`),
      ['app@v1.0.0', 'github.com/fork/b@v1.0.1'],
    );
  });
});

describe('the tar reader', () => {
  it('reads GNU long names and pax paths as the real tar writes them', async () => {
    const long = `${'d'.repeat(120)}/${'n'.repeat(150)}.txt`;
    await writeTree(join(work, 'long'), { [long]: 'hello' });
    for (const format of ['gnu', 'pax']) {
      const out = join(work, `long-${format}.tar`);
      await sh('tar', [`--format=${format}`, '-cf', out, '-C', join(work, 'long'), '.'], work);
      const fh = await open(out);
      try {
        const st = await fh.stat();
        const names: [string, string][] = [];
        for await (const e of readTar(new FileRange(fh, 0, st.size, () => undefined).stream(), out, {
          maxHeaderBytes: 1 << 20,
        })) {
          if (e.type === 'file') names.push([e.name, (await e.body.read(100)).toString()]);
        }
        assert.deepEqual(names, [[`./${long}`, 'hello']], format);
      } finally {
        await fh.close();
      }
    }
  });

  it('stops cleanly at an archive with no end blocks, and calls a cut-off entry truncated', async () => {
    const body = Buffer.from('abc');
    const { tarHeader } = await import('./fixtures.test-helper.ts');
    const whole = Buffer.concat([tarHeader('a', 3), body, Buffer.alloc(509)]);
    const read = async (b: Buffer) => {
      const out: string[] = [];
      for await (const e of readTar(
        ByteStream.from(
          (async function* () {
            yield b;
          })(),
        ),
        't',
        { maxHeaderBytes: 1024 },
      ))
        out.push(e.name);
      return out;
    };
    assert.deepEqual(await read(whole), ['a']);
    await assert.rejects(read(whole.subarray(0, 514)), /truncated/);
  });
});

describe('the zip reader', () => {
  it('reads a zip with data prepended (a self-extracting launcher) through its central directory', async () => {
    await writeTree(join(work, 'sfx'), { 'a.txt': 'alpha' });
    await sh('zip', ['-q', join(work, 'plain.zip'), 'a.txt'], join(work, 'sfx'));
    await sh('bash', ['-c', `printf '#!/bin/sh\\nexit 0\\n' | cat - plain.zip > sfx.zip`], work);
    const fh = await open(join(work, 'sfx.zip'));
    try {
      const st = await fh.stat();
      const zip = await ZipArchive.open(new FileRange(fh, 0, st.size, () => undefined), 'sfx.zip', {
        maxEntries: 10,
        maxEntryRatio: 200,
        ratioFloorBytes: 1 << 20,
      });
      const names: string[] = [];
      for await (const e of zip.entries()) {
        const s = await zip.open(e, e.name, () => undefined);
        names.push(`${e.name}=${(await s.read(100)).toString()}`);
        assert.equal(await s.next(), undefined);
      }
      assert.deepEqual(names, ['a.txt=alpha']);
    } finally {
      await fh.close();
    }
  });
});
