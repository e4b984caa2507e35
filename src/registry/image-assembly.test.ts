import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { collectImage } from '../agent/image-output.ts';
import { importImage } from '../runner/directory-image.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import {
  assembleImage,
  IMAGE_CREATED,
  OCI_LAYER_GZIP,
  openImageArchive,
  writeImageArchive,
} from './image-assembly.ts';
import { writeLayerTar } from './layer-tar.ts';

const dirs: string[] = [];
async function temp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'gatehouse-image-test-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** A workspace with a built "app" directory, as a build leaves it. */
async function workspace(): Promise<string> {
  const ws = await temp();
  mkdirSync(join(ws, 'dist', 'app', 'lib'), { recursive: true });
  writeFileSync(join(ws, 'dist', 'app', 'main.js'), 'console.log("hi")\n');
  writeFileSync(join(ws, 'dist', 'app', 'run'), '#!/bin/sh\n');
  chmodSync(join(ws, 'dist', 'app', 'run'), 0o775);
  writeFileSync(join(ws, 'dist', 'app', 'lib', 'util.js'), 'export {}\n');
  symlinkSync('lib/util.js', join(ws, 'dist', 'app', 'util.js'));
  return ws;
}

function imageConfig(yaml: string) {
  const c = parseProjectConfig(
    `project: demo\nbuild:\n  command: ["true"]\nimage:\n${yaml}`,
    'gatehouse.yaml',
  );
  assert.ok(c.image !== undefined);
  return c.image;
}

const SIMPLE = `  base: scratch
  files: [{ from: dist/app, to: /app }]
  platform: linux/amd64
  entrypoint: [/app/run]
  env: { B: 2, A: one }
  user: "1000:1000"
  workdir: /app
  labels: { org.opencontainers.image.title: demo }
`;

describe('image assembly', () => {
  it('gives the same manifest digest and archive bytes for the same inputs, whatever the mtimes', async () => {
    const ws = await workspace();
    const image = imageConfig(SIMPLE);
    const a = await collectImage({ workspace: ws, image, workDir: await temp() });
    // Touch every file and rebuild: mtimes and the build's umask do not reach the image.
    execFileSync('touch', ['-d', '2001-01-01', join(ws, 'dist', 'app', 'main.js')]);
    chmodSync(join(ws, 'dist', 'app', 'run'), 0o700);
    const b = await collectImage({ workspace: ws, image, workDir: await temp() });
    assert.equal(a.image.manifestDigest, b.image.manifestDigest);
    assert.equal(a.output.sha256, b.output.sha256);
    assert.equal(sha(readFileSync(a.output.file)), a.output.sha256);
    // A changed byte is a different image.
    writeFileSync(join(ws, 'dist', 'app', 'main.js'), 'console.log("hi!")\n');
    const c = await collectImage({ workspace: ws, image, workDir: await temp() });
    assert.notEqual(c.image.manifestDigest, a.image.manifestDigest);
  });

  it('writes the declared config with a real platform, and layers GNU tar reads as written', async () => {
    const ws = await workspace();
    const got = await collectImage({ workspace: ws, image: imageConfig(SIMPLE), workDir: await temp() });
    const config = JSON.parse(new TextDecoder().decode(got.image.config.bytes));
    assert.equal(config.os, 'linux');
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.created, IMAGE_CREATED);
    assert.deepEqual(config.config, {
      User: '1000:1000',
      Env: ['A=one', 'B=2'],
      Entrypoint: ['/app/run'],
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.title': 'demo' },
    });
    const [layer] = got.image.layers;
    assert.ok(layer !== undefined);
    assert.equal(config.rootfs.diff_ids[0], layer.diffId);
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(`sha256:${sha(execFileSync('gzip', ['-dc', layer.path]))}`, layer.diffId);
    const listing = execFileSync('tar', ['-tvf', layer.path, '--numeric-owner'], { encoding: 'utf8' });
    assert.match(listing, /drwxr-xr-x 0\/0 +0 1970-01-01 00:00 app\//);
    assert.match(listing, /-rwxr-xr-x 0\/0 +10 1970-01-01 00:00 app\/run/);
    assert.match(listing, /-rw-r--r-- 0\/0 +18 1970-01-01 00:00 app\/main\.js/);
    assert.match(listing, /lrwxrwxrwx 0\/0 +0 1970-01-01 00:00 app\/util\.js -> lib\/util\.js/);
    const names = listing
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[5]);
    assert.deepEqual(names, [...names].sort());
  });

  it('opens its own archive at the gate with the same manifest digest', async () => {
    const ws = await workspace();
    const got = await collectImage({ workspace: ws, image: imageConfig(SIMPLE), workDir: await temp() });
    const opened = await openImageArchive(got.output.file, await temp(), 'image demo');
    assert.equal(opened.manifestDigest, got.image.manifestDigest);
    assert.deepEqual(opened.platform, { os: 'linux', architecture: 'amd64' });
  });

  it('writes long names with PAX headers that GNU tar reads', async () => {
    const d = await temp();
    const long = `${'a'.repeat(90)}/${'b'.repeat(90)}/file.txt`;
    await writeLayerTar(
      [{ path: long, type: 'file', mode: 0o644, uid: 0, gid: 0, content: { bytes: Buffer.from('x') } }],
      join(d, 'l.tar'),
    );
    assert.equal(execFileSync('tar', ['-tf', join(d, 'l.tar')], { encoding: 'utf8' }).trim(), long);
  });

  it('uses a base from the image store, verified, under the build layer', async () => {
    const images = join(await temp(), 'images');
    const rootfs = await temp();
    mkdirSync(join(rootfs, 'usr', 'bin'), { recursive: true });
    writeFileSync(join(rootfs, 'usr', 'bin', 'tool'), 'tool');
    const stored = await importImage(rootfs, images);
    const image = imageConfig(SIMPLE.replace('base: scratch', `base: { store: sha256:${stored.digest} }`));
    const got = await collectImage({
      workspace: await workspace(),
      image,
      imagesDir: images,
      workDir: await temp(),
    });
    assert.equal(got.image.layers.length, 2);
    assert.equal(got.base.source, `store:sha256:${stored.digest}`);
    const listing = execFileSync('tar', ['-tf', got.image.layers[0]?.path ?? ''], { encoding: 'utf8' });
    assert.match(listing, /usr\/bin\/tool/);
  });

  it('uses an OCI layout base pinned by digest, with its config and platform', async () => {
    // The base: an image this module assembled, unpacked as a layout directory into the source.
    const base = await collectImage({
      workspace: await workspace(),
      image: imageConfig(SIMPLE),
      workDir: await temp(),
    });
    const ws = await workspace();
    const layout = join(ws, 'base');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', base.output.file, '-C', layout]);
    const image = imageConfig(
      `  base: { layout: base, digest: ${base.image.manifestDigest} }
  files: [{ from: dist/app/main.js, to: /srv/main.js }]
  platform: linux/amd64
  cmd: [--serve]
`,
    );
    const got = await collectImage({ workspace: ws, image, workDir: await temp() });
    const config = JSON.parse(new TextDecoder().decode(got.image.config.bytes));
    assert.equal(got.image.layers.length, 2);
    assert.deepEqual(config.config.Entrypoint, ['/app/run'], 'the base entrypoint stays');
    assert.deepEqual(config.config.Cmd, ['--serve']);
    const manifest = JSON.parse(new TextDecoder().decode(got.image.manifest.bytes));
    assert.equal(manifest.annotations['org.opencontainers.image.base.digest'], base.image.manifestDigest);
  });
});

describe('image assembly refuses hostile inputs', () => {
  it('refuses a base layout whose content no longer matches the pinned digest', async () => {
    const base = await collectImage({
      workspace: await workspace(),
      image: imageConfig(SIMPLE),
      workDir: await temp(),
    });
    const ws = await workspace();
    const layout = join(ws, 'base');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', base.output.file, '-C', layout]);
    const yaml = (digest: string) =>
      `  base: { layout: base, digest: ${digest} }\n  files: [{ from: dist/app, to: /x }]\n  platform: linux/amd64\n`;
    // A pin that names nothing in the layout.
    await assert.rejects(
      collectImage({
        workspace: ws,
        image: imageConfig(yaml(`sha256:${'0'.repeat(64)}`)),
        workDir: await temp(),
      }),
      (e: Error & { code?: string }) =>
        e.code === 'IMAGE_UNVERIFIED' && /has no blob with the pinned digest sha256:0{64}/.test(e.message),
    );
    // The build rewrote a base layer in place (its name kept): refused at the copy.
    const layer = base.image.layers[0]?.digest.slice(7) ?? '';
    writeFileSync(join(layout, 'blobs', 'sha256', layer), 'tampered');
    await assert.rejects(
      collectImage({
        workspace: ws,
        image: imageConfig(yaml(base.image.manifestDigest)),
        workDir: await temp(),
      }),
      (e: Error & { code?: string }) =>
        e.code === 'IMAGE_UNVERIFIED' &&
        /hashes to sha256:[0-9a-f]{64}: the base image was changed/.test(e.message),
    );
  });

  it('refuses a store base whose files changed after import', async () => {
    const images = join(await temp(), 'images');
    const rootfs = await temp();
    writeFileSync(join(rootfs, 'f'), 'one');
    const stored = await importImage(rootfs, images);
    writeFileSync(join(images, `sha256-${stored.digest}`, 'rootfs', 'f'), 'two');
    const image = imageConfig(SIMPLE.replace('base: scratch', `base: { store: sha256:${stored.digest} }`));
    await assert.rejects(
      collectImage({ workspace: await workspace(), image, imagesDir: images, workDir: await temp() }),
      (e: Error & { code?: string }) => e.code === 'IMAGE_UNVERIFIED' && /f was changed/.test(e.message),
    );
  });

  it('refuses a symlink in the build output that points outside what was declared', async () => {
    for (const target of ['/etc/shadow', '../../../etc/passwd', '../secret']) {
      const ws = await workspace();
      writeFileSync(join(ws, 'dist', 'secret'), 'not declared');
      symlinkSync(target, join(ws, 'dist', 'app', 'leak'));
      await assert.rejects(
        collectImage({ workspace: ws, image: imageConfig(SIMPLE), workDir: await temp() }),
        (e: Error & { code?: string }) =>
          e.code === 'OUTPUT_REJECTED' &&
          e.message.includes(`symlink 'dist/app/leak' -> '${target}' escapes the build output`),
        target,
      );
    }
  });

  it('refuses a declared path reached through a symlinked directory, and a declared symlink', async () => {
    const ws = await workspace();
    const outside = await temp();
    writeFileSync(join(outside, 'host-file'), 'host');
    symlinkSync(outside, join(ws, 'dist', 'via'));
    await assert.rejects(
      collectImage({
        workspace: ws,
        image: imageConfig(
          '  base: scratch\n  files: [{ from: dist/via/host-file, to: /f }]\n  platform: linux/amd64\n',
        ),
        workDir: await temp(),
      }),
      /image.files 'dist\/via\/host-file' resolves outside the workspace/,
    );
    await assert.rejects(
      collectImage({
        workspace: ws,
        image: imageConfig(
          '  base: scratch\n  files: [{ from: dist/via, to: /f }]\n  platform: linux/amd64\n',
        ),
        workDir: await temp(),
      }),
      /image.files 'dist\/via' is a symlink/,
    );
  });

  it('refuses a setuid file in the build output', async () => {
    const ws = await workspace();
    chmodSync(join(ws, 'dist', 'app', 'run'), 0o4755);
    await assert.rejects(
      collectImage({ workspace: ws, image: imageConfig(SIMPLE), workDir: await temp() }),
      /image file 'dist\/app\/run' is setuid or setgid/,
    );
  });

  it('refuses image paths with .. and declared platforms that are not the base’s in gatehouse.yaml', () => {
    assert.throws(
      () =>
        imageConfig('  base: scratch\n  files: [{ from: a, to: /app/../../etc }]\n  platform: linux/amd64\n'),
      /image.files.0.to must not contain '..'/,
    );
    assert.throws(
      () => imageConfig('  base: scratch\n  files: [{ from: ../x, to: /x }]\n  platform: linux/amd64\n'),
      /image.files.0.from must not contain '..'/,
    );
    assert.throws(
      () => imageConfig('  base: scratch\n  files: [{ from: a, to: /x }]\n  platform: amd64\n'),
      /image.platform must be os\/architecture/,
    );
    assert.throws(
      () =>
        parseProjectConfig(
          'project: p\nbuild: {command: ["true"]}\noutputs: [a]\nimage: {base: scratch, files: [{from: a, to: /a}], platform: linux/amd64}\n',
          'gatehouse.yaml',
        ),
      /declares both outputs and image/,
    );
    assert.throws(
      () =>
        assembleImage({
          base: { source: 'scratch', layers: [], platform: { os: 'linux', architecture: 'arm64' } },
          layers: [],
          settings: { platform: { os: 'linux', architecture: 'amd64' } },
        }),
      /declared for linux\/amd64 but its base is for linux\/arm64/,
    );
  });

  /** An archive around one hand-written layer, as a compromised agent could hand the gate. */
  async function archiveWithLayer(layer: Buffer, gzip = false): Promise<string> {
    const d = await temp();
    const bytes = gzip ? gzipSync(layer) : layer;
    const path = join(d, 'layer');
    writeFileSync(path, bytes);
    const digest = `sha256:${sha(bytes)}`;
    const image = assembleImage({
      base: gzip
        ? {
            source: `oci-layout:sha256:${'1'.repeat(64)}`,
            layers: [
              { mediaType: OCI_LAYER_GZIP, digest, size: bytes.length, diffId: `sha256:${sha(layer)}`, path },
            ],
          }
        : { source: 'scratch', layers: [] },
      layers: gzip
        ? []
        : [
            {
              mediaType: 'application/vnd.oci.image.layer.v1.tar',
              digest,
              size: bytes.length,
              diffId: digest,
              path,
            },
          ],
      settings: { platform: { os: 'linux', architecture: 'amd64' } },
    });
    await writeImageArchive(image, 'evil', join(d, 'evil.oci.tar'));
    return join(d, 'evil.oci.tar');
  }

  /** A tar with one entry written by GNU tar from a transformed name (what a hostile layer holds). */
  function gnuTar(args: string[], cwd: string): Buffer {
    return execFileSync('tar', ['-c', '--format=pax', ...args], { cwd, maxBuffer: 1 << 26 });
  }

  it('refuses at the gate a layer with a path traversal, in a build layer and in a gzip base layer', async () => {
    const src = await temp();
    writeFileSync(join(src, 'x'), 'pwned');
    const traversal = gnuTar(['--transform', 's,^x$,../../etc/cron.d/x,', '-P', 'x'], src);
    for (const gzip of [false, true]) {
      const archive = await archiveWithLayer(traversal, gzip);
      await assert.rejects(
        openImageArchive(archive, await temp(), 'image evil'),
        (e: Error & { code?: string }) =>
          e.code === 'ARTIFACT_REFUSED' &&
          /entry '\.\.\/\.\.\/etc\/cron\.d\/x' is outside the image root/.test(e.message),
        `gzip ${gzip}`,
      );
    }
    // `tar -C dir .` names the root './': that is not an escape, and such a base layer is read.
    const rooted = gnuTar(['.'], src);
    const opened = await openImageArchive(await archiveWithLayer(rooted, true), await temp(), 'image rooted');
    assert.equal(opened.layers.length, 1);
    const absolute = gnuTar(['--transform', 's,^x$,/etc/x,', '-P', 'x'], src);
    await assert.rejects(
      openImageArchive(await archiveWithLayer(absolute), await temp(), 'image evil'),
      /is outside the image root/,
    );
  });

  it('refuses at the gate a link name out of the root, a device node and a setuid build file', async () => {
    const src = await temp();
    writeFileSync(join(src, 'x'), 'x');
    symlinkSync('/etc/passwd', join(src, 'l'));
    const hard = gnuTar(['--hard-dereference', '--transform', 's,^x$,../x,', '-P', 'x'], src);
    await assert.rejects(
      openImageArchive(await archiveWithLayer(hard), await temp(), 'image evil'),
      /outside the image root/,
    );
    const dev = gnuTar(['-P', '/dev/null'], src);
    await assert.rejects(
      openImageArchive(await archiveWithLayer(dev), await temp(), 'image evil'),
      /is outside the image root|device node/,
    );
    chmodSync(join(src, 'x'), 0o4755);
    const suid = gnuTar(['x'], src);
    await assert.rejects(
      openImageArchive(await archiveWithLayer(suid), await temp(), 'image evil'),
      /is setuid or setgid/,
    );
  });

  it('refuses at the gate an archive with two index.json (one for the cataloguer, one to promote)', async () => {
    const got = await collectImage({
      workspace: await workspace(),
      image: imageConfig(SIMPLE),
      workDir: await temp(),
    });
    const d = await temp();
    execFileSync('tar', ['-xf', got.output.file, '-C', d]);
    execFileSync('cp', [got.output.file, join(d, 'twice.tar')]);
    // GNU tar appends a second index.json after the first.
    execFileSync('tar', ['-rf', join(d, 'twice.tar'), '-C', d, 'index.json']);
    await assert.rejects(
      openImageArchive(join(d, 'twice.tar'), await temp(), 'image demo'),
      (e: Error & { code?: string }) =>
        e.code === 'ARTIFACT_REFUSED' && /entry 'index.json' appears twice/.test(e.message),
    );
  });

  it('refuses at the gate a gzip layer that is not gzip, without waiting forever', async () => {
    const d = await temp();
    const junk = Buffer.from('this is not gzip at all');
    writeFileSync(join(d, 'layer'), junk);
    const digest = `sha256:${sha(junk)}`;
    const image = assembleImage({
      base: { source: 'scratch', layers: [] },
      layers: [
        { mediaType: OCI_LAYER_GZIP, digest, size: junk.length, diffId: digest, path: join(d, 'layer') },
      ],
      settings: { platform: { os: 'linux', architecture: 'amd64' } },
    });
    await writeImageArchive(image, 'junk', join(d, 'junk.oci.tar'));
    await assert.rejects(
      openImageArchive(join(d, 'junk.oci.tar'), await temp(), 'image junk'),
      (e: Error & { code?: string }) =>
        e.code === 'ARTIFACT_REFUSED' && /layer cannot be read/.test(e.message),
    );
  });

  it('refuses at the gate an archive whose blob does not hash to its name', async () => {
    const ws = await workspace();
    const got = await collectImage({ workspace: ws, image: imageConfig(SIMPLE), workDir: await temp() });
    const d = await temp();
    execFileSync('tar', ['-xf', got.output.file, '-C', d]);
    const layer = got.image.layers[0]?.digest.slice(7) ?? '';
    writeFileSync(join(d, 'blobs', 'sha256', layer), 'other bytes');
    execFileSync('tar', ['-cf', join(d, 'bad.tar'), '-C', d, 'oci-layout', 'index.json', 'blobs']);
    await assert.rejects(
      openImageArchive(join(d, 'bad.tar'), await temp(), 'image demo'),
      /does not hash to its name/,
    );
  });
});
