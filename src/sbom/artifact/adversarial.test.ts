import assert from 'node:assert/strict';
import { copyFile, existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { isGatehouseError } from '../../common/errors.ts';
import { catalogArtifact } from './catalog-artifact.ts';
import {
  layerTarGz,
  pairs,
  pkg,
  sh,
  tarHeader,
  tarOf,
  writeOciLayout,
  writeTree,
} from './fixtures.test-helper.ts';
import type { ArtifactLimits } from './limits.ts';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gatehouse-artifact-adversarial-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A zip of `files` made by the real zip tool. */
async function zipOf(name: string, files: Record<string, string | Buffer>, flags = '-qr'): Promise<string> {
  const dir = join(work, `${name}-src`);
  await writeTree(dir, files);
  const out = join(work, name);
  await sh('zip', [flags, out, '.'], dir);
  return out;
}

/** Nest `inner` in a new zip `levels` times. */
async function nest(inner: string, levels: number, copies: number): Promise<string> {
  let cur = inner;
  for (let i = 0; i < levels; i++) {
    const files: Record<string, Buffer> = {};
    const b = await readFile(cur);
    for (let k = 0; k < copies; k++) files[`n${i}-${k}.zip`] = b;
    cur = await zipOf(`nest-${levels}-${copies}-${i}.zip`, files);
  }
  return cur;
}

interface Case {
  name: string;
  make: () => Promise<string>;
  limits?: Partial<ArtifactLimits>;
  code: 'ARTIFACT_REFUSED' | 'BAD_INPUT';
  message: RegExp;
}

const CASES: Case[] = [
  {
    name: 'a 42.zip-style nest: 16 copies of 16 copies of 16 MiB of zeros',
    make: async () => nest(await zipOf('zeros.zip', { z: Buffer.alloc(16 * 1024 * 1024) }), 2, 16),
    code: 'ARTIFACT_REFUSED',
    message: /compression ratio limit of 200: nest-2-16-1\.zip!n1-\d+\.zip!n0-\d+\.zip$/,
  },
  {
    name: 'zips nested past the depth limit',
    make: async () => nest(await zipOf('leaf.zip', { 'package.json': pkg('deep', '1.0.0') }), 13, 1),
    code: 'ARTIFACT_REFUSED',
    message: /archive nesting depth 13 exceeds the limit of 12/,
  },
  {
    name: '10 GiB of zeros in a gzip stream (160 members of 64 MiB)',
    make: async () => {
      const member = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
      const out = join(work, 'zeros.gz');
      await writeFile(out, Buffer.concat(Array.from({ length: 160 }, () => member)));
      return out;
    },
    code: 'ARTIFACT_REFUSED',
    message: /compression ratio of \d+ .* exceeds the limit of 200: zeros\.gz$/,
  },
  {
    name: 'a zip entry that claims 100 bytes and inflates to 1 MiB',
    make: async () => {
      const path = await zipOf('liar.zip', {
        'package.json': JSON.stringify({ name: 'x', version: '1.0.0', pad: 'a'.repeat(1 << 20) }),
      });
      const b = await readFile(path);
      b.writeUInt32LE(100, 22); // the local header's uncompressed size
      const cd = b.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1'));
      b.writeUInt32LE(100, cd + 24); // the central directory's
      await writeFile(path, b);
      return path;
    },
    code: 'ARTIFACT_REFUSED',
    message: /zip entry inflating past its declared 100 B exceeds its declared size: liar\.zip!package\.json/,
  },
  {
    name: 'a zip64 directory declaring five million entries',
    make: async () => {
      const local = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(26)]);
      const rec = Buffer.alloc(56);
      rec.writeUInt32LE(0x06064b50, 0);
      rec.writeBigUInt64LE(44n, 4);
      rec.writeBigUInt64LE(5_000_000n, 24);
      rec.writeBigUInt64LE(5_000_000n, 32);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeBigUInt64LE(30n, 8);
      loc.writeUInt32LE(1, 16);
      const end = Buffer.alloc(22);
      end.writeUInt32LE(0x06054b50, 0);
      end.writeUInt16LE(0xffff, 8);
      end.writeUInt16LE(0xffff, 10);
      end.writeUInt32LE(0xffffffff, 12);
      end.writeUInt32LE(0xffffffff, 16);
      const out = join(work, 'millions.zip');
      await writeFile(out, Buffer.concat([local, rec, loc, end]));
      return out;
    },
    code: 'ARTIFACT_REFUSED',
    message: /zip central directory of 5000000 entries exceeds the entry limit: millions\.zip/,
  },
  {
    name: 'a tar of 5,000 entries past a limit of 1,000',
    make: async () => {
      const out = join(work, 'many.tar');
      await writeFile(out, tarOf(Array.from({ length: 5000 }, (_, i) => [`f${i}`, ''] as [string, string])));
      return out;
    },
    limits: { maxEntries: 1000 },
    code: 'ARTIFACT_REFUSED',
    message: /entries exceeds the limit of 1000: many\.tar/,
  },
  {
    name: 'a tar entry declaring 1 TiB inside a gzip stream',
    make: async () => {
      const out = join(work, 'huge.tar.gz');
      await writeFile(out, gzipSync(Buffer.concat([tarHeader('big.bin', 2 ** 40), Buffer.alloc(4096)])));
      return out;
    },
    code: 'ARTIFACT_REFUSED',
    message: /declared size 1024 GiB exceeds what is left of the limit of 16 GiB: huge\.tar\.gz!big\.bin/,
  },
  {
    name: 'a plain tar entry declaring more than the file holds',
    make: async () => {
      const out = join(work, 'short.tar');
      await writeFile(out, Buffer.concat([tarHeader('package.json', 10_000_000), Buffer.alloc(1024)]));
      return out;
    },
    code: 'BAD_INPUT',
    message: /tar entry 'package\.json' is truncated: short\.tar/,
  },
  {
    name: 'a pax header of 100 MiB',
    make: async () => {
      const out = join(work, 'pax.tar');
      await writeFile(
        out,
        Buffer.concat([tarHeader('PaxHeaders/x', 100 * 1024 * 1024, 'x'), Buffer.alloc(2048)]),
      );
      return out;
    },
    code: 'ARTIFACT_REFUSED',
    message: /tar extended header of 100 MiB at offset 0 exceeds the limit of 1 MiB: pax\.tar/,
  },
  {
    name: 'two zip entries sharing one compressed body (the overlapping bomb)',
    make: async () => {
      const path = await zipOf('overlap.zip', { a: 'x'.repeat(1000) });
      const b = await readFile(path);
      const cd = b.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1'));
      const eocd = b.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
      const record = b.subarray(cd, eocd);
      const end = Buffer.from(b.subarray(eocd));
      end.writeUInt16LE(2, 8);
      end.writeUInt16LE(2, 10);
      end.writeUInt32LE(record.length * 2, 12);
      await writeFile(path, Buffer.concat([b.subarray(0, eocd), record, end]));
      return path;
    },
    code: 'ARTIFACT_REFUSED',
    message: /zip entries sharing data/,
  },
  {
    name: 'a truncated tar.gz',
    make: async () => {
      await writeTree(join(work, 'trunc-src'), {
        'package.json': pkg('t', '1.0.0'),
        big: Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 251)),
      });
      await sh('tar', ['-czf', join(work, 'trunc.tar.gz'), '-C', join(work, 'trunc-src'), '.'], work);
      const b = await readFile(join(work, 'trunc.tar.gz'));
      await writeFile(join(work, 'trunc.tar.gz'), b.subarray(0, b.length >> 1));
      return join(work, 'trunc.tar.gz');
    },
    code: 'BAD_INPUT',
    message: /gzip data is corrupt or truncated .*: trunc\.tar\.gz|truncated/,
  },
  {
    name: 'a zip whose central directory is overwritten',
    make: async () => {
      const path = await zipOf('corrupt.zip', { 'package.json': pkg('c', '1.0.0') });
      const b = await readFile(path);
      b.fill(0x41, b.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1')), b.length);
      await writeFile(path, b);
      return path;
    },
    code: 'BAD_INPUT',
    message: /zip has no end of central directory record/,
  },
  {
    name: 'a tar header with a wrong checksum',
    make: async () => {
      const t = tarOf([['package.json', pkg('a', '1.0.0')]]);
      t[0] = 0x7a; // change the name after the checksum was computed
      const out = join(work, 'badsum.tar');
      await writeFile(out, t);
      return out;
    },
    code: 'BAD_INPUT',
    message: /bad checksum|not a file gatehouse/,
  },
  {
    name: 'a bzip2 artifact, which cannot be opened',
    make: async () => {
      const out = join(work, 'x.tar.bz2');
      await writeFile(out, Buffer.concat([Buffer.from('BZh91AY&SY', 'latin1'), Buffer.alloc(100)]));
      return out;
    },
    code: 'BAD_INPUT',
    message: /bzip2 compression is not supported: x\.tar\.bz2/,
  },
  {
    name: 'a package.json past the metadata limit',
    make: async () => {
      await writeTree(join(work, 'bigmeta'), {
        'package.json': JSON.stringify({ name: 'b', version: '1.0.0', pad: 'x'.repeat(5000) }),
      });
      return join(work, 'bigmeta');
    },
    limits: { maxMetadataBytes: 4096 },
    code: 'ARTIFACT_REFUSED',
    message: /metadata file of 4\.9 KiB exceeds the limit of 4 KiB: package\.json/,
  },
  {
    name: 'a zip in a tar.gz that needs more temporary space than allowed',
    make: async () => {
      const z = await zipOf('spill.zip', {
        'package.json': pkg('s', '1.0.0'),
        pad: Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) % 253)),
      });
      await mkdir(join(work, 'spill-src'), { recursive: true });
      await promisify(copyFile)(z, join(work, 'spill-src/inner.zip'));
      await sh('tar', ['-czf', join(work, 'spill.tar.gz'), '-C', join(work, 'spill-src'), '.'], work);
      return join(work, 'spill.tar.gz');
    },
    limits: { maxSpillBytes: 500 },
    code: 'ARTIFACT_REFUSED',
    message: /temporary copy of .* exceeds the temporary space left/,
  },
  {
    name: 'an image layer that does not match its digest',
    make: async () => {
      const layer = await layerTarGz(work, 'tampered', { 'package.json': pkg('t', '1.0.0') });
      const layout = join(work, 'tampered-layout');
      await writeOciLayout(layout, [layer]);
      const blobs = join(layout, 'blobs/sha256');
      const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      const manifest = JSON.parse(
        await readFile(join(blobs, (index.manifests[0]?.digest ?? '').slice(7)), 'utf8'),
      ) as {
        layers: { digest: string }[];
      };
      const lp = join(blobs, (manifest.layers[0]?.digest ?? '').slice(7));
      const other = await layerTarGz(work, 'other', { 'package.json': pkg('evil', '6.6.6') });
      const b = await readFile(other);
      // Same size, other bytes: only the digest can tell.
      const orig = await readFile(lp);
      await writeFile(
        lp,
        Buffer.concat([b, Buffer.alloc(Math.max(0, orig.length - b.length))]).subarray(0, orig.length),
      );
      return layout;
    },
    code: 'BAD_INPUT',
    message: /does not match its digest|corrupt/,
  },
];

describe('adversarial artifacts are refused cleanly, never a crash, an OOM or a full disk', () => {
  for (const c of CASES)
    it(`refuses ${c.name} with ${c.code}`, async () => {
      const path = await c.make();
      const temp = await mkdtemp(join(work, 'tmp-'));
      const before = process.memoryUsage().rss;
      await assert.rejects(
        catalogArtifact({ name: path.slice(path.lastIndexOf('/') + 1), path, tempDir: temp }, c.limits),
        (e: unknown) => {
          assert.ok(isGatehouseError(e, c.code), `expected ${c.code}, got ${String(e)}`);
          assert.match(e.message, c.message);
          return true;
        },
      );
      // Temporary copies are gone, and memory did not grow with what the bomb claims.
      assert.deepEqual(await readdir(temp), []);
      assert.ok(process.memoryUsage().rss - before < 512 * 1024 * 1024, 'memory grew past 512 MiB');
    });

  it('reads names that climb out of the archive as paths inside it, and writes nothing', async () => {
    const out = join(work, 'climb.tar');
    await writeFile(
      out,
      tarOf([
        ['../../climbed/package.json', pkg('climbed', '1.0.0')],
        ['/abs/package.json', pkg('absolute', '2.0.0')],
        ['./a/../../b/package.json', pkg('dotted', '3.0.0')],
      ]),
    );
    const temp = await mkdtemp(join(work, 'tmp-'));
    const r = await catalogArtifact({ name: 'climb.tar', path: out, tempDir: temp });
    assert.deepEqual(
      r.components.map((c) => [c.name, c.evidence.path]),
      [
        ['absolute', 'abs/package.json'],
        ['climbed', 'climbed/package.json'],
        ['dotted', 'b/package.json'],
      ],
    );
    assert.ok(!existsSync(join(work, '..', 'climbed')) && !existsSync('/abs'));
    assert.deepEqual(await readdir(temp), []);
  });

  it('does not follow symlinks out of a directory or round a loop, reads hard links once, never opens a FIFO', async () => {
    const outside = join(work, 'outside');
    await writeTree(outside, { 'package.json': pkg('outside', '9.9.9') });
    const d = join(work, 'links');
    await writeTree(d, { 'a/package.json': pkg('linked', '1.0.0') });
    await mkdir(join(d, 'b'));
    await link(join(d, 'a/package.json'), join(d, 'b/package.json'));
    await symlink(outside, join(d, 'escape'));
    await symlink('.', join(d, 'loop'));
    await symlink(join(outside, 'package.json'), join(d, 'package.json'));
    await sh('mkfifo', [join(d, 'pipe')], d);
    const r = await catalogArtifact({ name: 'links', path: d });
    assert.deepEqual(pairs(r.components), ['linked@1.0.0']);
    assert.equal(r.stats.files, 1);
  });

  it('notes a package.json that is not JSON and a corrupt zip inside a tar, and catalogues the rest', async () => {
    const d = join(work, 'mixed');
    await writeTree(d, {
      'fixtures/package.json': '{ "name": "broken", ',
      'good/package.json': pkg('good', '1.0.0'),
      'broken.zip': Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200, 1)]),
    });
    await sh('tar', ['-cf', join(work, 'mixed.tar'), '-C', d, '.'], work);
    const r = await catalogArtifact({ name: 'mixed.tar', path: join(work, 'mixed.tar') });
    assert.deepEqual(pairs(r.components), ['good@1.0.0']);
    assert.deepEqual(
      r.skipped.map((s) => [s.path, s.archive, s.reason.replace(/\(.*\)/, '()')]).sort(),
      [
        ['broken.zip', ['mixed.tar'], 'zip has no end of central directory record (): mixed.tar!broken.zip'],
        ['fixtures/package.json', ['mixed.tar'], 'package.json is not JSON ()'],
      ].sort(),
    );
  });
});
