/**
 * What was built is what is judged. A malicious developer tries to get a package with a known
 * critical advisory (minimist 1.2.5, GHSA-xvch-5gv4-984h) into a signed artifact without
 * declaring it: by narrowing the lockfiles, with a decoy lockfile, by rewriting the lockfile
 * during the build, by vendoring it under another folder, by downloading it in the fetch phase,
 * and by burying it in archives inside the output. Each build runs for real (sandbox, vTPM, gate);
 * each must be denied with a reason naming the component and where the gate found it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type JobOutcome, runJob } from '../src/agent/agent.ts';
import { initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { readCycloneDx } from '../src/sbom/cyclonedx.ts';
import { LocalGitProvider } from '../src/source/local-git-provider.ts';
import { seedVulnerabilityData } from '../src/testing/submission.ts';
import { closeServer, copyExample, listenOnLoopback, missingTools, tempDir } from './helpers.ts';

const MINIMIST = JSON.stringify({ name: 'minimist', version: '1.2.5', license: 'MIT' });
const TAR = 'tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner';

describe('undeclared packages in the artifact', { skip: missingTools('tar', 'zip') }, () => {
  const tmp = tempDir('smuggling');
  let home: OpenHome;
  let server: Server;
  let tarball: Buffer;

  before(async () => {
    // An npm registry tarball of minimist 1.2.5 (package/package.json), served on loopback.
    const pkg = join(tmp.path, 'npm', 'package');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), MINIMIST);
    execFileSync('tar', [
      '-czf',
      join(tmp.path, 'minimist-1.2.5.tgz'),
      '-C',
      join(tmp.path, 'npm'),
      'package',
    ]);
    tarball = readFileSync(join(tmp.path, 'minimist-1.2.5.tgz'));
    server = createServer((req, res) => {
      if (req.url === '/minimist/-/minimist-1.2.5.tgz') res.end(tarball);
      else res.writeHead(404).end();
    });
    const { port } = await listenOnLoopback(server);
    const root = join(tmp.path, 'home');
    await initHome(root);
    const configPath = join(root, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { runner: Record<string, unknown> };
    config.runner.egressAllow = [`http://127.0.0.1:${port}`];
    await writeFile(configPath, JSON.stringify(config));
    home = await openHome(root);
    await seedVulnerabilityData(home);
    registryUrl = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await home.close();
    await closeServer(server);
    tmp.cleanup();
  });
  let registryUrl = '';

  /** hello-app (declares minimist 1.2.8) with its build replaced and extra files added. */
  const project = (name: string, build: string, files: Record<string, string> = {}, yaml = ''): string => {
    const dir = copyExample('hello-app', join(tmp.path, name));
    writeFileSync(join(dir, 'build.sh'), `set -eu\nmkdir -p dist\n${build}\n`);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    if (yaml !== '') writeFileSync(join(dir, 'gatehouse.yaml'), yaml);
    return dir;
  };
  const run = (dir: string): Promise<JobOutcome> =>
    runJob(dir, {
      runner: home.runner,
      attester: home.attester,
      host: home.host,
      controlPlane: home.controlPlane,
      source: new LocalGitProvider(),
    });

  /** The build is denied, with an undeclared-component reason for minimist@1.2.5 at `path`. */
  function assertSmugglingDenied(outcome: JobOutcome, path: RegExp): void {
    const r = outcome.result;
    assert.ok(r !== undefined, `the job failed before the gate: ${outcome.failure?.message}`);
    assert.equal(r.outcome, 'deny', JSON.stringify(r.reasons));
    assert.equal(r.bundle, undefined, 'nothing was signed');
    // The default policy's rule of kind undeclared-component (or the built-in one when a policy has none).
    const undeclared = r.reasons.filter((x) => /^undeclared-components?$/.test(x.rule));
    const mm = undeclared.find((x) => x.purl === 'pkg:npm/minimist@1.2.5');
    assert.ok(mm !== undefined, `no undeclared-component reason for minimist: ${JSON.stringify(r.reasons)}`);
    assert.match(mm.message, /^minimist@1\.2\.5 is in the artifact \(/);
    assert.match(mm.message, path);
    // The advisory is judged too, against what was found.
    const vuln = r.reasons.find((x) => x.vulnId === 'GHSA-xvch-5gv4-984h');
    assert.ok(vuln !== undefined, 'the advisory of the found version fired');
    assert.match(vuln.message, /found in the artifact at /);
    assert.match(r.sbom ?? '', /undeclared [1-9]/);
  }

  it('catalogues a lockfile the configuration leaves out: `sbom.lockfiles: []` only adds', async () => {
    const dir = copyExample('vulnerable-app', join(tmp.path, 'narrowed'));
    writeFileSync(
      join(dir, 'gatehouse.yaml'),
      `${readFileSync(join(dir, 'gatehouse.yaml'), 'utf8').replace(
        'project: vulnerable-app',
        'project: hello-app',
      )}sbom:\n  lockfiles: []\n`,
    );
    const outcome = await run(dir);
    assert.equal(outcome.result?.outcome, 'deny');
    const vuln = outcome.result?.reasons.find((x) => x.vulnId === 'GHSA-xvch-5gv4-984h');
    assert.ok(vuln !== undefined, JSON.stringify(outcome.result?.reasons));
    assert.match(vuln.message, /found in the artifact at dist\/vulnerable-app\.tar!package-lock\.json/);
  });

  it('judges the installed package, not a decoy lockfile that names another version', async () => {
    const dir = project(
      'decoy',
      `mkdir -p stage/node_modules/minimist && cp vendor.json stage/node_modules/minimist/package.json
${TAR} -cf dist/hello-app.tar -C stage node_modules`,
      { 'vendor.json': MINIMIST },
    );
    const outcome = await run(dir);
    assertSmugglingDenied(outcome, /dist\/hello-app\.tar!node_modules\/minimist\/package\.json, npm-package/);
    const mm = outcome.result?.reasons.find(
      (x) => x.purl === 'pkg:npm/minimist@1.2.5' && x.rule !== 'no-high-or-critical-vulnerabilities',
    );
    assert.match(mm?.message ?? '', /declares minimist at 1\.2\.8/);
  });

  it('catches a build that rewrites package-lock.json after it was catalogued', async () => {
    const dir = project(
      'rewrite',
      `sed -i 's/"version": "1.2.8"/"version": "1.2.5"/' package-lock.json
grep -q 1.2.5 package-lock.json
${TAR} -cf dist/hello-app.tar package.json package-lock.json src`,
    );
    assertSmugglingDenied(await run(dir), /dist\/hello-app\.tar!package-lock\.json, lockfile/);
  });

  it('finds a vendored copy under a folder not named node_modules', async () => {
    const dir = project('vendored', `${TAR} -cf dist/hello-app.tar package.json src third_party`, {
      'third_party/argv/package.json': MINIMIST,
    });
    assertSmugglingDenied(await run(dir), /dist\/hello-app\.tar!third_party\/argv\/package\.json/);
  });

  it('judges what the fetch phase downloaded and the build shipped', async () => {
    const dir = project(
      'fetched',
      `${TAR} -cf dist/hello-app.tar package.json src minimist-1.2.5.tgz`,
      {},
      `project: hello-app\nfetch:\n  command: "curl -sf ${registryUrl}/minimist/-/minimist-1.2.5.tgz -o minimist-1.2.5.tgz"\nbuild:\n  command: ["sh", "build.sh"]\noutputs: [dist/hello-app.tar]\n`,
    );
    assertSmugglingDenied(
      await run(dir),
      /dist\/hello-app\.tar!minimist-1\.2\.5\.tgz!package\/package\.json/,
    );
  });

  it('opens archives inside archives: a zip in a tar.gz in the output', async () => {
    const dir = project(
      'nested',
      `mkdir -p deep/lib/mm && cp vendor.json deep/lib/mm/package.json
(cd deep && zip -qrX ../inner.zip lib)
${TAR} -czf dist/hello-app.tar package.json src inner.zip`,
      { 'vendor.json': MINIMIST },
    );
    assertSmugglingDenied(await run(dir), /dist\/hello-app\.tar!inner\.zip!lib\/mm\/package\.json/);
  });

  it('denies an output that is a compression bomb, naming the limit, instead of cataloguing part of it', async () => {
    // 64 MiB of zeros gzip to 64 KiB: a ratio of about 1,000 where the limit is 200.
    const dir = project('bomb', 'head -c 67108864 /dev/zero | gzip -c > dist/hello-app.tar');
    const r = (await run(dir)).result;
    assert.equal(r?.outcome, 'deny');
    assert.equal(r?.reasons[0]?.rule, 'artifact-catalog');
    assert.match(r?.reasons[0]?.message ?? '', /ratio/);
    assert.equal(r?.bundle, undefined);
  });

  it('allows the unchanged example and signs the union with where each component was found', async () => {
    const dir = copyExample('hello-app', join(tmp.path, 'plain'));
    const outcome = await run(dir);
    assert.equal(outcome.result?.outcome, 'allow', JSON.stringify(outcome.result?.reasons));
    assert.match(outcome.result?.sbom ?? '', /^declared 2, fetched 0, found 3, undeclared 0/);
    const bundle = outcome.result?.sbomBundle as { dsseEnvelope: { payload: string } };
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString());
    const signed = readCycloneDx(statement.predicate, 'signed SBOM');
    const ms = signed.components.find((c) => c.purl === 'pkg:npm/ms@2.1.3');
    assert.deepEqual(
      ms?.origins?.map((o) => o.kind),
      ['declared', 'found'],
    );
    assert.equal(ms?.origins?.[1]?.path, 'dist/hello-app.tar!package-lock.json');
    assert.deepEqual(signed.projectPackages, ['pkg:npm/hello-app@1.0.0']);
    // The standard fields carry it too, for tools that know nothing of gatehouse's properties.
    const raw = statement.predicate.components.find((c: { purl: string }) => c.purl === 'pkg:npm/ms@2.1.3');
    assert.deepEqual(raw.evidence.occurrences, [{ location: 'dist/hello-app.tar!package-lock.json' }]);
  });
});
