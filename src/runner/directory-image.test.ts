import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFile,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  realpath,
  rm,
  stat,
  symlink,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { sandboxProfileDigest } from '../attestation/measurement.ts';
import { sha256Hex } from '../common/encoding.ts';
import { type GatehouseError, isGatehouseError } from '../common/errors.ts';
import { defaultConfig, parseConfig } from '../home/config.ts';
import { shellConfig } from '../testing/runner-contract.ts';
import { BubblewrapRunner } from './bubblewrap-runner.ts';
import {
  DirectoryImage,
  imageDir,
  importImage,
  listImages,
  mirrorFromAptSources,
} from './directory-image.ts';
import { bubblewrapRunnerFromConfig, homeImagesDir, runnerFromConfig } from './from-config.ts';
import { detectHostLayout } from './host-layout.ts';
import type { RunnerInstance, SandboxProfile } from './runner.ts';
import { bubblewrapSandboxProfile } from './sandbox-profile.ts';

const execFileAsync = promisify(execFile);
const MARKER_PATH = 'usr/share/gatehouse-image-marker';

/**
 * A tiny root file system: /usr/bin/sh with the libraries ldd names for it, merged-/usr links
 * (bin, lib, lib64 → usr/…), a marker file, and a FIFO (which an import leaves out).
 */
async function tinyRootfs(dir: string, marker: string): Promise<void> {
  const into = async (hostPath: string, rel: string) => {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await copyFile(await realpath(hostPath), join(dir, rel));
    await chmod(join(dir, rel), 0o755);
  };
  await into('/usr/bin/sh', 'usr/bin/sh');
  const { stdout } = await execFileAsync('ldd', [await realpath('/usr/bin/sh')]);
  for (const m of stdout.matchAll(/(\/\S+) \(0x/g)) {
    const p = m[1] as string;
    await into(p, p.startsWith('/usr/') ? p.slice(1) : `usr${p}`);
  }
  for (const d of ['bin', 'lib', 'lib64']) {
    await mkdir(join(dir, 'usr', d), { recursive: true });
    await symlink(`usr/${d}`, join(dir, d));
  }
  await mkdir(dirname(join(dir, MARKER_PATH)), { recursive: true });
  await writeFile(join(dir, MARKER_PATH), `${marker}\n`, { mode: 0o644 });
  await execFileAsync('mkfifo', [join(dir, 'fifo')]);
}

const rejectsUnverified = async (p: Promise<unknown>, what: RegExp) => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isGatehouseError(e) && e.code === 'IMAGE_UNVERIFIED', String(e));
    assert.match((e as GatehouseError).message, what);
    return true;
  });
};

describe('directory images', () => {
  let work: string;
  let source: string;
  let home: string;
  let digest: string;
  let marker: string;
  let buildSource: string;
  const instances: RunnerInstance[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'gatehouse-dirimage-'));
    source = join(work, 'src-rootfs');
    home = join(work, 'home');
    buildSource = join(work, 'build-src');
    await mkdir(source);
    await mkdir(buildSource);
    marker = `image-marker-${randomBytes(8).toString('hex')}`;
    await tinyRootfs(source, marker);
    digest = (await importImage(source, homeImagesDir(home))).digest;
  });
  after(async () => {
    for (const i of instances) await i.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it('imports a root file system by the digest of its stored manifest, leaving special files out', async () => {
    assert.match(digest, /^[0-9a-f]{64}$/);
    const dir = imageDir(homeImagesDir(home), digest);
    assert.equal(sha256Hex(await readFile(join(dir, 'manifest.json'))), digest);
    await assert.rejects(stat(join(dir, 'rootfs', 'fifo')), { code: 'ENOENT' });
    assert.equal(await readFile(join(dir, 'rootfs', MARKER_PATH), 'utf8'), `${marker}\n`);
    const again = await importImage(source, homeImagesDir(home));
    assert.equal(again.digest, digest);
    assert.equal(again.skipped, 1);
    const listed = await listImages(homeImagesDir(home));
    assert.deepEqual(
      listed.map((i) => i.digest),
      [`sha256:${digest}`],
    );
    assert.equal(
      await new DirectoryImage({ imagesDir: homeImagesDir(home), digest: `sha256:${digest}` })
        .verify()
        .then((r) => r.digest),
      digest,
    );
  });

  it('refuses a source that is not a directory, and a malformed digest', async () => {
    await assert.rejects(importImage(join(source, MARKER_PATH), join(work, 'other')), { code: 'BAD_INPUT' });
    await assert.rejects(importImage(join(work, 'absent'), join(work, 'other')), { code: 'BAD_INPUT' });
    for (const bad of [
      '',
      'sha256:',
      'sha256:XYZ',
      `sha512:${'a'.repeat(64)}`,
      'a'.repeat(63),
      `../${'a'.repeat(64)}`,
    ]) {
      assert.throws(() => new DirectoryImage({ imagesDir: work, digest: bad }), { code: 'BAD_INPUT' }, bad);
    }
  });

  it('runs a build on the image: it sees the image /usr, not the host /usr', async () => {
    const config = parseConfig(
      JSON.stringify({
        ...defaultConfig(),
        runner: { ...defaultConfig().runner, image: { kind: 'directory', digest: `sha256:${digest}` } },
      }),
      'config.json',
    );
    const runner = runnerFromConfig(config.runner, home);
    const instance = await runner.provision({
      jobId: `dirimage-${process.pid}`,
      sourceDir: buildSource,
      config: shellConfig(
        `read m < /${MARKER_PATH}; echo "saw $m"; if test -e /usr/bin/node; then echo host-usr-visible; fi; echo "$m" > out.txt`,
      ),
    });
    instances.push(instance);
    assert.deepEqual((instance.sandboxProfile as SandboxProfile).image, { kind: 'directory', digest });
    const result = await instance.build();
    assert.equal(result.exitCode, 0, result.stderrTail);
    assert.match(result.stdoutTail, new RegExp(`saw ${marker}`));
    assert.doesNotMatch(result.stdoutTail, /host-usr-visible/);
  });

  it('puts the image digest into the sandbox profile digest', async () => {
    const layout = await detectHostLayout();
    const config = shellConfig('true');
    const a = bubblewrapSandboxProfile(config, layout, { image: { kind: 'directory', digest } });
    const b = bubblewrapSandboxProfile(config, layout, {
      image: { kind: 'directory', digest: 'b'.repeat(64) },
    });
    assert.notEqual(sandboxProfileDigest(a), sandboxProfileDigest(b));
    const runner = new BubblewrapRunner({
      image: new DirectoryImage({ imagesDir: homeImagesDir(home), digest }),
    });
    const profile = await runner.profileFor(config);
    assert.deepEqual(profile.image, { kind: 'directory', digest });
    const usr = profile.mounts.find((m) => m.dest === '/usr');
    assert.deepEqual(usr, {
      kind: 'ro-bind',
      dest: '/usr',
      source: join(imageDir(homeImagesDir(home), digest), 'rootfs', 'usr'),
    });
  });

  describe('tampering makes the next use refuse with IMAGE_UNVERIFIED', () => {
    const table: { name: string; change: (rootfs: string) => Promise<void>; names: RegExp }[] = [
      {
        name: 'a changed file',
        change: (r) => appendFile(join(r, MARKER_PATH), 'x'),
        names: /usr\/share\/gatehouse-image-marker was changed/,
      },
      {
        name: 'a file changed in place with its size and mtime put back',
        change: async (r) => {
          const p = join(r, MARKER_PATH);
          const s = await stat(p);
          const text = await readFile(p, 'utf8');
          await writeFile(
            p,
            text.replace(/^./, (c) => (c === 'i' ? 'j' : 'i')),
          );
          await utimes(p, s.atime, s.mtime);
        },
        names: /was changed/,
      },
      {
        name: 'an added file',
        change: (r) => writeFile(join(r, 'usr', 'bin', 'extra'), 'x'),
        names: /usr\/bin\/extra was added/,
      },
      {
        name: 'a removed file',
        change: (r) => unlink(join(r, MARKER_PATH)),
        names: /usr\/share\/gatehouse-image-marker was removed/,
      },
      {
        name: 'a mode change',
        change: (r) => chmod(join(r, 'usr', 'bin', 'sh'), 0o4755),
        names: /usr\/bin\/sh was changed/,
      },
      {
        name: 'a symlink pointed elsewhere',
        change: async (r) => {
          await unlink(join(r, 'bin'));
          await symlink('/usr/bin', join(r, 'bin'));
        },
        names: /bin was changed/,
      },
    ];
    let n = 0;
    for (const t of table) {
      it(t.name, async () => {
        const imagesDir = join(work, `tamper-${++n}`);
        const { digest: d } = await importImage(source, imagesDir);
        assert.equal(d, digest);
        const image = new DirectoryImage({ imagesDir, digest: d });
        await image.verify(); // fills the per-file cache, so that the change must beat it
        await t.change(image.root);
        await rejectsUnverified(image.verify(), t.names);
        if (n === 1) {
          const runner = new BubblewrapRunner({ image });
          await rejectsUnverified(
            runner.provision({
              jobId: `tamper-${process.pid}`,
              sourceDir: buildSource,
              config: shellConfig('true'),
            }),
            /no longer matches/,
          );
        }
      });
    }

    it('a missing image or images directory', async () => {
      await rejectsUnverified(
        new DirectoryImage({ imagesDir: join(work, 'none'), digest }).verify(),
        /cannot measure/,
      );
      const runner = bubblewrapRunnerFromConfig({ image: { kind: 'directory', digest: `sha256:${digest}` } });
      await rejectsUnverified(runner.profileFor(shellConfig('true')), /no images directory/);
    });
  });

  it('refuses a malformed directory-image config', () => {
    for (const bad of ['sha256:abc', 'a'.repeat(64), `sha256:${'A'.repeat(64)}`]) {
      assert.throws(
        () =>
          parseConfig(
            JSON.stringify({
              ...defaultConfig(),
              runner: { ...defaultConfig().runner, image: { kind: 'directory', digest: bad } },
            }),
            'config.json',
          ),
        { code: 'BAD_CONFIG', message: /runner\.image/ },
        bad,
      );
    }
  });
});

describe('default mirror from apt sources', () => {
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    '',
    'Types: deb',
    'URIs: http://deb.debian.org/debian-security',
    'Suites: bookworm-security',
  ].join('\n');
  const table: { name: string; texts: string[]; want: { mirror: string; suite: string } | undefined }[] = [
    { name: 'deb822', texts: [deb822], want: { mirror: 'http://deb.debian.org/debian', suite: 'bookworm' } },
    {
      name: 'one-line with options',
      texts: [
        '# deb http://old.example/debian buster main\ndeb [arch=amd64] https://mirror.example/debian trixie main\n',
      ],
      want: { mirror: 'https://mirror.example/debian', suite: 'trixie' },
    },
    {
      name: 'security only',
      texts: ['deb http://security.debian.org/debian-security bookworm-security main\n'],
      want: undefined,
    },
    {
      name: 'deb-src only',
      texts: ['Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n'],
      want: undefined,
    },
    {
      name: 'disabled',
      texts: ['Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nEnabled: no\n'],
      want: undefined,
    },
    { name: 'not http', texts: ['deb file:/srv/debian bookworm main\n'], want: undefined },
    {
      name: 'suite with shell characters',
      texts: ['deb http://deb.example/debian $(id) main\n'],
      want: undefined,
    },
    { name: 'nothing', texts: [], want: undefined },
  ];
  for (const t of table) {
    it(t.name, () => assert.deepEqual(mirrorFromAptSources(t.texts), t.want));
  }
});
