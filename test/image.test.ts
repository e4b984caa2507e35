/**
 * Container images end to end, with the real parts: the example projects are built in the
 * sandbox, assembled by gatehouse outside it, gated, signed and promoted to a real
 * `docker-registry`; skopeo copies the image to a second registry and to an OCI layout; the image
 * is unpacked and run (umoci and runc where installed, else GNU tar and bubblewrap, named so).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { registrySkip, startRegistry, type TestRegistry } from '../src/testing/registry.ts';
import { decideAdmission } from '../src/verify/admission/admission.ts';
import { ociImageVerifier } from '../src/verify/admission/image-verifier.ts';
import { cli, copyExample, examplesDir, missingTools, repoRoot, tempDir } from './helpers.ts';

const skip = registrySkip() || missingTools('skopeo', 'bwrap', 'go', 'tar') || false;
/** umoci and runc are Debian packages scripts/setup installs; without them the image is run with bwrap. */
const runtime = missingTools('umoci', 'runc') === undefined ? 'runc' : 'bwrap';

interface RunDoc {
  outcome: string;
  jobId: string;
  failure?: { code: string; message: string };
  decision?: { placement: { reference: string; manifestDigest: string; cosignTags: string[] } };
}

function skopeo(args: string[]): string {
  return execFileSync('skopeo', args, { encoding: 'utf8', maxBuffer: 1 << 26 });
}

/**
 * Unpack an image from an OCI layout and run it as its config says (entrypoint, cmd, env, user,
 * working directory); its stdout.
 */
function runImage(layout: string, tag: string, work: string, extraArgs: string[] = []): string {
  const bundle = join(work, `bundle-${tag}`);
  if (runtime === 'runc') {
    execFileSync('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    spec.process.args.push(...extraArgs);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    return execFileSync('runc', ['run', '--bundle', bundle, `gatehouse-test-${tag}-${process.pid}`], {
      encoding: 'utf8',
    });
  }
  // Without umoci and runc: the layers unpacked in order with GNU tar (no whiteouts in these
  // images), the process started in that root with bubblewrap as the config says.
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const top = index.manifests.find(
    (m: { annotations?: Record<string, string> }) =>
      m.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.slice(7));
  const manifest = JSON.parse(readFileSync(blob(top.digest), 'utf8'));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
  const rootfs = join(bundle, 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  for (const l of manifest.layers)
    execFileSync('tar', ['-xf', blob(l.digest), '-C', rootfs, '--numeric-owner']);
  const c = config.config;
  const [uid, gid] = String(c.User ?? '0:0').split(':');
  const env = (c.Env ?? []).flatMap((e: string) => [
    '--setenv',
    e.slice(0, e.indexOf('=')),
    e.slice(e.indexOf('=') + 1),
  ]);
  const argv = [...(c.Entrypoint ?? []), ...(c.Cmd ?? []), ...extraArgs];
  const r = spawnSync(
    'bwrap',
    [
      '--unshare-all',
      '--die-with-parent',
      '--uid',
      uid ?? '0',
      '--gid',
      gid ?? uid ?? '0',
      '--bind',
      rootfs,
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      '--clearenv',
      ...env,
      '--chdir',
      c.WorkingDir ?? '/',
      ...argv,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe('container images as build outputs', { skip, timeout: 900_000 }, () => {
  const tmp = tempDir('image');
  const home = join(tmp.path, 'home');
  const h = ['--home', home];
  let registry: TestRegistry;
  let second: TestRegistry;

  before(async () => {
    registry = await startRegistry();
    second = await startRegistry();
    assert.equal((await cli(['init', ...h])).code, 0);
    assert.equal((await cli(['vulndb', 'import', join(examplesDir, 'advisories'), ...h])).code, 0);
    for (const p of ['static-image', 'node-service', 'escape-image']) {
      const r = await cli(['project', 'register', p, '--unverified-directory', ...h]);
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(async () => {
    await registry?.stop();
    await second?.stop();
    tmp.cleanup();
  });

  async function run(dir: string, out?: string): Promise<RunDoc> {
    const r = await cli(
      ['run', dir, '--registry', registry.url, '--json', ...(out === undefined ? [] : ['--out', out]), ...h],
      { timeoutMs: 600_000 },
    );
    const doc = JSON.parse(r.stdout) as RunDoc;
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(doc.failure ?? doc.decision)}`);
    assert.equal(doc.outcome, 'allow');
    return doc;
  }

  let staticDigest = '';
  it('builds the static Go image, gates it and promotes it with a real platform and cosign tags', async () => {
    const out = join(tmp.path, 'out-static');
    const doc = await run(join(examplesDir, 'static-image'), out);
    const placement = doc.decision?.placement;
    assert.ok(placement !== undefined);
    staticDigest = placement.manifestDigest;
    const ref = `docker://${registry.host}/gatehouse/promoted/static-image@${staticDigest}`;
    const inspected = JSON.parse(skopeo(['inspect', '--tls-verify=false', ref]));
    assert.equal(inspected.Digest, staticDigest);
    assert.equal(inspected.Os, 'linux');
    assert.equal(inspected.Architecture, 'amd64');
    const tags = JSON.parse(
      skopeo([
        'list-tags',
        '--tls-verify=false',
        `docker://${registry.host}/gatehouse/promoted/static-image`,
      ]),
    ).Tags as string[];
    const hex = staticDigest.slice(7);
    assert.ok(tags.includes(`sha256-${hex}.sig`) && tags.includes(`sha256-${hex}.att`), tags.join(','));
    // The signed provenance names the image by its manifest digest (and the archive it came in).
    const bundle = JSON.parse(readFileSync(join(out, 'static-image.oci.tar.sigstore.json'), 'utf8'));
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8'));
    assert.ok(
      statement.subject.some(
        (s: { name: string; digest: { sha256: string } }) =>
          s.name === `${registry.host}/gatehouse/promoted/static-image` && s.digest.sha256 === hex,
      ),
      JSON.stringify(statement.subject),
    );
  });

  it('verifies the promoted image by its manifest digest at deploy time (gatehouse verify oci://)', async () => {
    const ref = `oci://${registry.host}/gatehouse/promoted/static-image@${staticDigest}`;
    const args = ['verify', ref, '--project', 'static-image', '--plain-http', '--json', ...h];
    const ok = await cli(args);
    assert.equal(ok.code, 0, ok.stderr);
    const doc = JSON.parse(ok.stdout);
    assert.equal(doc.verified, true);
    assert.equal(doc.manifestDigest, staticDigest);
    // Another project's identity is not this image's.
    const other = await cli(['verify', ref, '--project', 'node-service', '--plain-http', ...h]);
    assert.equal(other.code, 3, other.stderr);
  });

  it('admits a Pod running the promoted image, and refuses the same image re-packaged under another digest', async () => {
    const rootFile = join(tmp.path, 'trusted_root.json');
    assert.equal((await cli(['trust-root', '--output', rootFile, ...h])).code, 0);
    const revocationsPath = join(tmp.path, 'revocations.json');
    writeFileSync(revocationsPath, JSON.stringify({ version: 1, revoked: [] }));
    const verifyImage = ociImageVerifier({
      policy: {
        projects: ['static-image'],
        identityBase: 'https://gatehouse.internal',
        issuer: 'https://gatehouse.internal/attestation',
        require: ['provenance', 'sbom', 'vsa'],
        maxAge: '7d',
        registries: { [registry.host]: { plainHttp: true } },
      },
      trustedRoot: JSON.parse(readFileSync(rootFile, 'utf8')),
      revocationsPath,
    });
    const pod = (image: string) =>
      JSON.parse(
        readFileSync(
          join(repoRoot, 'src', 'verify', 'admission', 'testdata', 'pod-create.json'),
          'utf8',
        ).replaceAll('"IMAGE_0"', JSON.stringify(image)),
      );
    const image = `${registry.host}/gatehouse/promoted/static-image@${staticDigest}`;
    const allowed = await decideAdmission(pod(image), verifyImage, 60_000);
    assert.equal(allowed.response.allowed, true, JSON.stringify(allowed.response));
    // The same layers and config as a Docker manifest: the bytes run the same, but no statement
    // names that digest, so it is refused.
    skopeo([
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--format',
      'v2s2',
      `docker://${image}`,
      `docker://${registry.host}/gatehouse/promoted/static-image:repacked`,
    ]);
    const repacked = JSON.parse(
      skopeo([
        'inspect',
        '--tls-verify=false',
        `docker://${registry.host}/gatehouse/promoted/static-image:repacked`,
      ]),
    ).Digest as string;
    assert.notEqual(repacked, staticDigest);
    const refused = await decideAdmission(
      pod(`${registry.host}/gatehouse/promoted/static-image@${repacked}`),
      verifyImage,
      60_000,
    );
    assert.equal(refused.response.allowed, false);
  });

  it('builds the same image again to the same manifest digest', async () => {
    const doc = await run(join(examplesDir, 'static-image'));
    assert.equal(doc.decision?.placement.manifestDigest, staticDigest);
  });

  it(`copies the image with skopeo to a second registry and a layout, unpacks it and runs it (${runtime})`, () => {
    const src = `docker://${registry.host}/gatehouse/promoted/static-image@${staticDigest}`;
    skopeo([
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      src,
      `docker://${second.host}/mirror/static-image:v1`,
    ]);
    const copied = JSON.parse(
      skopeo(['inspect', '--tls-verify=false', `docker://${second.host}/mirror/static-image:v1`]),
    );
    assert.equal(copied.Digest, staticDigest, 'the copy keeps the manifest digest');
    const layout = join(tmp.path, 'layout');
    skopeo([
      'copy',
      '--src-tls-verify=false',
      `docker://${second.host}/mirror/static-image:v1`,
      `oci:${layout}:static`,
    ]);
    const output = runImage(layout, 'static', tmp.path);
    assert.match(output, /^static-image: hello from linux\/amd64 as uid 65532 in \/\n$/);
  });

  it(`builds the Node service on a base from the image store and runs it (${runtime})`, async () => {
    // The base is made here from this machine's node binary (see the example's make-base.sh).
    const made = execFileSync('sh', [join(examplesDir, 'node-service', 'make-base.sh'), '--json', ...h], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH}` },
      maxBuffer: 1 << 26,
    });
    const digest = JSON.parse(made).digest as string;
    const project = copyExample('node-service', tmp.path);
    const yaml = readFileSync(join(project, 'gatehouse.yaml'), 'utf8').replace(/sha256:0{64}/, digest);
    writeFileSync(join(project, 'gatehouse.yaml'), yaml);
    const doc = await run(project);
    const manifestDigest = doc.decision?.placement.manifestDigest ?? '';
    const layout = join(tmp.path, 'layout');
    skopeo([
      'copy',
      '--src-tls-verify=false',
      `docker://${registry.host}/gatehouse/promoted/node-service@${manifestDigest}`,
      `oci:${layout}:node`,
    ]);
    const manifest = JSON.parse(skopeo(['inspect', '--raw', `oci:${layout}:node`]));
    assert.equal(manifest.annotations['dev.gatehouse.image.base'], `store:${digest}`);
    assert.equal(manifest.layers.length, 2, 'the base, then the build files');
    const output = runImage(layout, 'node', tmp.path, ['--self-test']);
    assert.match(
      output,
      /^node-service: \{"service":"node-service","path":"\/health","node":"v\d+\.\d+\.\d+"\} as uid 1000 in \/app\n$/,
    );
  });

  it('refuses a build whose image files hold a symlink out of the build output (exit 1, named)', async () => {
    const project = join(tmp.path, 'escape-image');
    mkdirSync(project);
    writeFileSync(
      join(project, 'gatehouse.yaml'),
      'project: escape-image\nbuild:\n  command: "mkdir -p dist/app && ln -s /etc/passwd dist/app/passwd"\nimage:\n  base: scratch\n  files: [{ from: dist/app, to: /app }]\n  platform: linux/amd64\n',
    );
    const r = await cli(['run', project, '--registry', registry.url, '--json', ...h], { timeoutMs: 300_000 });
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as RunDoc;
    assert.equal(doc.failure?.code, 'OUTPUT_REJECTED');
    assert.match(
      doc.failure?.message ?? '',
      /symlink 'dist\/app\/passwd' -> '\/etc\/passwd' escapes the build output/,
    );
    // Nothing was promoted for it.
    assert.ok(!existsSync(join(home, 'registry', 'promoted', 'escape-image')));
  });
});
