/**
 * The GitHub just-in-time runner backend against recorded API answers (testdata/, in the shapes
 * GitHub documents; no GitHub can be reached here). A loopback HTTP server plays api.github.com:
 * it records what the backend asks and answers with the recorded bodies for a scenario. The
 * launcher is a script that plays the operator's single-use machine: it reads the JIT
 * configuration from stdin, records what it was given, and runs the build command in the
 * workspace as the dispatched workflow would. Checked: the runner contract every backend passes;
 * that each job gets its own registered runner, whose configuration reaches only the launcher's
 * stdin; that the runner is removed after the job — after success, failure, timeout, a refused
 * dispatch, a cancellation — and that sweep removes only this host's leftovers.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { closeServer, listenOnLoopback, tempDir } from '../../../test/helpers.ts';
import { sha256Hex } from '../../common/encoding.ts';
import { isGatehouseError } from '../../common/errors.ts';
import { defaultConfig, parseConfig } from '../../home/config.ts';
import { describeRunnerContract, processesWithMarker, shellConfig } from '../../testing/runner-contract.ts';
import { githubJitRunnerFromConfig, runnerFromConfig } from '../from-config.ts';
import { DEFAULT_LIMITS } from '../limits.ts';
import { GITHUB_API_VERSION, GithubRunnersApi } from './github-api.ts';
import { GithubJitRunner } from './github-jit-runner.ts';

const testdata = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
const TOKEN = 'ghp_test-admin-token';
const REPO = 'octo-org/octo-repo';
const JIT_CONFIG = JSON.parse(readFileSync(join(testdata, 'jitconfig-created.json'), 'utf8'))
  .encoded_jit_config as string;

type Scenario = 'ok' | 'unauthorized' | 'invalid' | 'dispatch-refused' | 'already-gone' | 'delete-fails';

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body?: Record<string, unknown>;
}

function recorded(file: string): string {
  return readFileSync(join(testdata, file), 'utf8');
}

describe('GitHub just-in-time runner backend (recorded API answers)', {
  skip: process.getuid?.() === 0 ? false : 'workspaces are tmpfs mounts: needs root',
}, () => {
  const tmp = tempDir('gh-jit');
  let server: Server;
  let url = '';
  let scenario: Scenario = 'ok';
  let seen: Seen[] = [];
  let nextId = 100;
  const launcher = join(tmp.path, 'launcher.mjs');
  const records = join(tmp.path, 'records');

  before(async () => {
    server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
      const path = req.url ?? '';
      seen.push({
        method: req.method ?? '',
        path,
        headers: req.headers,
        ...(body === undefined ? {} : { body }),
      });
      const json = (status: number, payload?: string): void => {
        if (payload === undefined) res.writeHead(status).end();
        else res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(payload);
      };
      if (req.headers.authorization !== `Bearer ${TOKEN}` || scenario === 'unauthorized')
        return json(401, recorded('error-bad-credentials.json'));
      const base = `/repos/${REPO}/actions`;
      if (req.method === 'POST' && path === `${base}/runners/generate-jitconfig`) {
        if (scenario === 'invalid') return json(422, recorded('error-validation-failed.json'));
        // The documented answer, with the name the backend asked for and a fresh id.
        const answer = JSON.parse(recorded('jitconfig-created.json')) as {
          runner: { id: number; name: string; labels: { name: string }[] };
        };
        answer.runner.id = nextId++;
        answer.runner.name = String(body?.name);
        for (const l of answer.runner.labels) if (l.name === 'New runner') l.name = String(body?.name);
        return json(201, JSON.stringify(answer));
      }
      if (req.method === 'POST' && path === `${base}/workflows/gatehouse-build.yml/dispatches`) {
        if (scenario === 'dispatch-refused') return json(404, recorded('error-not-found.json'));
        return json(204);
      }
      if (req.method === 'DELETE' && path.startsWith(`${base}/runners/`)) {
        if (scenario === 'already-gone') return json(404, recorded('error-not-found.json'));
        if (scenario === 'delete-fails') return json(500, '{"message":"Server Error"}');
        return json(204);
      }
      if (req.method === 'GET' && path === `${base}/runners?per_page=100`)
        return json(200, recorded('runners-list.json'));
      json(404, recorded('error-not-found.json'));
    });
    ({ url } = await listenOnLoopback(server));
    mkdirSync(records);
    mkdirSync(join(tmp.path, 'jobs'));
    mkdirSync(join(tmp.path, 'src'));
    writeFileSync(join(tmp.path, 'src', 'input.txt'), 'from the source\n');
    // The operator's launcher, played by a script: it records what it got (stdin, argv, env),
    // then runs the build command in the workspace as the dispatched workflow would, and exits
    // with its code. A mode file beside it makes it hang instead.
    writeFileSync(
      launcher,
      `#!${process.execPath}
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
const config = readFileSync(0, 'utf8').trim();
writeFileSync(${JSON.stringify(records)} + '/' + process.env.GATEHOUSE_RUNNER_NAME + '.json',
  JSON.stringify({ config, argv: process.argv.slice(2), env: process.env }));
if (existsSync(${JSON.stringify(join(tmp.path, 'hang'))})) setInterval(() => {}, 1000);
else {
  const [cmd, ...args] = JSON.parse(process.env.GATEHOUSE_BUILD_COMMAND);
  const r = spawnSync(cmd, args, { cwd: process.env.GATEHOUSE_WORKSPACE, stdio: 'inherit',
    env: { ...JSON.parse(process.env.GATEHOUSE_BUILD_ENV), PATH: '/usr/bin:/bin' } });
  process.exit(r.status ?? 125);
}
`,
    );
    chmodSync(launcher, 0o755);
  });
  after(async () => {
    await closeServer(server);
    tmp.cleanup();
  });

  const makeRunner = (o: { workflow?: boolean; bootSeconds?: number } = {}): GithubJitRunner =>
    new GithubJitRunner({
      api: new GithubRunnersApi({ apiUrl: url, repository: REPO, token: TOKEN }),
      runnerGroupId: 1,
      labels: ['self-hosted', 'linux', 'gatehouse'],
      launcher: [launcher, '--machine-image', 'ubuntu-24.04-runner'],
      workspaceRoot: join(tmp.path, 'jobs'),
      limits: DEFAULT_LIMITS,
      namePrefix: 'build-a',
      bootSeconds: o.bootSeconds ?? 30,
      ...(o.workflow === false ? {} : { workflow: { file: 'gatehouse-build.yml', ref: 'main' } }),
    });

  describeRunnerContract('github-jit', () => {
    scenario = 'ok';
    return makeRunner();
  });

  let jobs = 0;
  const provision = (runner: GithubJitRunner, script: string, timeout = 30) =>
    runner.provision({
      jobId: `job-${process.pid}-${++jobs}`,
      sourceDir: join(tmp.path, 'src'),
      config: shellConfig(script, { timeout }),
    });
  const start = (s: Scenario): void => {
    scenario = s;
    seen = [];
  };
  const calls = (): string[] =>
    seen.map((s) => `${s.method} ${s.path.replace(/\/runners\/\d+$/, '/runners/ID')}`);

  it('registers one runner for the job, hands its configuration only to the launcher, and removes it after', async () => {
    start('ok');
    const runner = makeRunner();
    const instance = await provision(runner, 'echo built > out.txt; echo done');
    // Nothing is registered before the build: a job that never builds leaves nothing at GitHub.
    assert.equal(seen.length, 0);
    const result = await instance.build();
    assert.equal(result.exitCode, 0, result.stderrTail);
    assert.match(result.stdoutTail, /done/);
    assert.equal(readFileSync(join(instance.workspace, 'out.txt'), 'utf8'), 'built\n');
    await instance.destroy();
    assert.deepEqual(calls(), [
      `POST /repos/${REPO}/actions/runners/generate-jitconfig`,
      `POST /repos/${REPO}/actions/workflows/gatehouse-build.yml/dispatches`,
      `DELETE /repos/${REPO}/actions/runners/ID`,
    ]);
    const [register, dispatch, remove] = seen;
    for (const s of seen) {
      assert.equal(s.headers['x-github-api-version'], GITHUB_API_VERSION);
      assert.equal(s.headers.accept, 'application/vnd.github+json');
    }
    const name = String(register?.body?.name);
    assert.match(name, /^gatehouse-build-a-[0-9a-f]{16}$/);
    assert.deepEqual(register?.body, {
      name,
      runner_group_id: 1,
      labels: ['self-hosted', 'linux', 'gatehouse', name],
      work_folder: '_work',
    });
    // The workflow run is sent to this job's runner alone: its own name is its label.
    assert.deepEqual(dispatch?.body, {
      ref: 'main',
      inputs: { runner_label: name, gatehouse_job: instance.jobId },
    });
    const id = Number(/\/runners\/(\d+)$/.exec(remove?.path ?? '')?.[1]);
    assert.ok(id >= 100);
    // The launcher got the configuration on stdin, and nowhere else: not in its argv, not in its
    // environment, not in the workspace, not in the measured profile, not in the result.
    const got = JSON.parse(readFileSync(join(records, `${name}.json`), 'utf8')) as {
      config: string;
      argv: string[];
      env: Record<string, string>;
    };
    assert.equal(got.config, JIT_CONFIG);
    assert.deepEqual(got.argv, ['--machine-image', 'ubuntu-24.04-runner']);
    assert.ok(!JSON.stringify(got.env).includes(JIT_CONFIG));
    assert.ok(!JSON.stringify(got.env).includes(TOKEN), 'the GitHub token reached the launcher');
    assert.equal(got.env.GATEHOUSE_RUNNER_LABEL, name);
    assert.equal(got.env.GATEHOUSE_WORKSPACE, instance.workspace);
    assert.deepEqual(JSON.parse(got.env.GATEHOUSE_BUILD_COMMAND ?? '[]'), [
      '/bin/sh',
      '-c',
      'echo built > out.txt; echo done',
    ]);
    assert.ok(!JSON.stringify(instance.sandboxProfile).includes(JIT_CONFIG));
    assert.ok(!JSON.stringify(result).includes(JIT_CONFIG));
    assert.ok(!JSON.stringify(runner).includes(TOKEN));
  });

  it('measures the launcher by digest, and nothing per job', async () => {
    const runner = makeRunner();
    const config = shellConfig('true');
    const a = await runner.profileFor(config);
    assert.equal(a.backend, 'github-jit');
    assert.equal(a.repository, REPO);
    assert.equal(a.launcher.sha256, sha256Hex(readFileSync(launcher)));
    assert.deepEqual(a.labels, ['gatehouse', 'linux', 'self-hosted']);
    assert.deepEqual(a.workflow, { file: 'gatehouse-build.yml', ref: 'main' });
    assert.deepEqual(await runner.profileFor(config), a);
  });

  it('removes the runner after a failing build, and reports the exit code', async () => {
    start('ok');
    const instance = await provision(makeRunner(), 'echo broke >&2; exit 3');
    const result = await instance.build();
    assert.equal(result.exitCode, 3);
    assert.match(result.stderrTail, /broke/);
    await instance.destroy();
    assert.equal(calls().filter((c) => c.startsWith('DELETE')).length, 1);
  });

  it('stops a launcher past the deadline, kills everything it started, and removes the runner', async () => {
    start('ok');
    writeFileSync(join(tmp.path, 'hang'), '');
    try {
      const instance = await provision(makeRunner({ bootSeconds: 0 }), 'true', 1);
      await assert.rejects(instance.build(), (e) => isGatehouseError(e, 'BUILD_TIMEOUT'));
      await instance.destroy();
      assert.equal(calls().filter((c) => c.startsWith('DELETE')).length, 1);
      assert.deepEqual(await processesWithMarker(instance.workspace), []);
    } finally {
      rmSync(join(tmp.path, 'hang'));
    }
  });

  it('removes the runner when the job is cancelled while its machine runs', async () => {
    start('ok');
    writeFileSync(join(tmp.path, 'hang'), '');
    try {
      const instance = await provision(makeRunner(), 'true');
      // Its outcome is taken at once, so that the rejection destroy() causes is never unhandled.
      const building = instance.build().then(
        () => assert.fail('the build finished'),
        (e: unknown) => e,
      );
      // Wait until the launcher runs (its record appears), then cancel as the agent does.
      const name = (): string | undefined =>
        seen.find((s) => s.path.endsWith('/generate-jitconfig'))?.body?.name as string | undefined;
      for (let i = 0; i < 200; i++) {
        const n = name();
        if (n !== undefined && existsSync(join(records, `${n}.json`))) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      await instance.destroy();
      assert.ok(isGatehouseError(await building, 'CANCELLED'));
      assert.equal(calls().filter((c) => c.startsWith('DELETE')).length, 1);
      assert.deepEqual(await processesWithMarker(instance.workspace), []);
    } finally {
      rmSync(join(tmp.path, 'hang'));
    }
  });

  it('starts no machine when GitHub refuses the registration, and has nothing to remove', async () => {
    for (const [s, code] of [
      ['unauthorized', 'UNAUTHORIZED'],
      ['invalid', 'BAD_CONFIG'],
    ] as const) {
      start(s);
      const instance = await provision(makeRunner(), 'echo should-not-run > out.txt');
      await assert.rejects(instance.build(), (e) => {
        assert.ok(isGatehouseError(e, code), String(e));
        // GitHub's own message, never the token.
        assert.match(e.message, s === 'unauthorized' ? /401 Bad credentials/ : /422 Validation Failed/);
        assert.ok(!e.message.includes(TOKEN));
        return true;
      });
      assert.equal(existsSync(join(instance.workspace, 'out.txt')), false);
      await instance.destroy();
      assert.deepEqual(
        calls().filter((c) => c.startsWith('DELETE')),
        [],
      );
    }
  });

  it('stops the machine and removes the runner when the dispatch is refused', async () => {
    start('dispatch-refused');
    const instance = await provision(makeRunner(), 'echo should-not-run > out.txt');
    await assert.rejects(
      instance.build(),
      (e) => isGatehouseError(e, 'BAD_CONFIG') && /404 Not Found/.test(e.message),
    );
    await instance.destroy();
    assert.equal(calls().filter((c) => c.startsWith('DELETE')).length, 1);
  });

  it('takes a runner GitHub already removed (404) as removed, and keeps no workspace when removal fails', async () => {
    start('already-gone');
    const gone = await provision(makeRunner({ workflow: false }), 'echo ok > out.txt');
    assert.equal((await gone.build()).exitCode, 0);
    await gone.destroy();
    assert.equal(existsSync(gone.workspace), false);
    start('delete-fails');
    const stuck = await provision(makeRunner({ workflow: false }), 'echo ok > out.txt');
    assert.equal((await stuck.build()).exitCode, 0);
    await assert.rejects(stuck.destroy(), (e) => isGatehouseError(e, 'UNREACHABLE'));
    assert.equal(existsSync(stuck.workspace), false);
  });

  it('sweeps only this host\u2019s offline runners that belong to no live job', async () => {
    start('ok');
    const removed = await makeRunner().sweep();
    // 31 is this host's and offline; 32 is this host's but busy; 33 is another host's; MBP is not ours.
    assert.ok(removed.includes('github-runner:gatehouse-build-a-0f1e2d3c4b5a6978'));
    assert.equal(removed.filter((r) => r.startsWith('github-runner:')).length, 1);
    assert.deepEqual(
      calls().filter((c) => c.startsWith('DELETE')),
      [`DELETE /repos/${REPO}/actions/runners/ID`],
    );
    assert.ok(seen.some((s) => s.path.endsWith('/runners/31')));
  });

  it('reads its token from a file only its owner may read, and calls GitHub over https only', () => {
    const tokenFile = join(tmp.path, 'gh-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o644 });
    chmodSync(tokenFile, 0o644);
    const config = {
      repository: REPO,
      tokenFile,
      runnerGroupId: 1,
      labels: ['self-hosted'],
      launcher: [launcher],
      workspaceRoot: join(tmp.path, 'jobs'),
    };
    assert.throws(
      () => githubJitRunnerFromConfig(config),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
    chmodSync(tokenFile, 0o600);
    assert.ok(githubJitRunnerFromConfig(config) instanceof GithubJitRunner);
    for (const bad of [
      { apiUrl: 'http://api.github.com', repository: REPO },
      { apiUrl: 'https://api.github.com', repository: 'not a repo' },
    ])
      assert.throws(
        () => new GithubRunnersApi({ ...bad, token: TOKEN }),
        (e) => isGatehouseError(e, 'BAD_CONFIG'),
      );
    assert.throws(
      () =>
        new GithubJitRunner({
          ...config,
          api: new GithubRunnersApi({ apiUrl: url, repository: REPO, token: TOKEN }),
          launcher: ['launcher.sh'],
          limits: DEFAULT_LIMITS,
        }),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
  });
});

describe('runner kind github-jit in config.json', () => {
  const tmp = tempDir('gh-jit-config');
  after(() => tmp.cleanup());

  it('is parsed, with defaults, and gives the JIT runner; a bad repository or group is refused', () => {
    const tokenFile = join(tmp.path, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const runner = {
      kind: 'github-jit',
      repository: REPO,
      tokenFile,
      launcher: ['/bin/true'],
      workspaceRoot: join(tmp.path, 'jobs'),
    };
    const text = (r: Record<string, unknown>) => JSON.stringify({ ...defaultConfig(), runner: r });
    const config = parseConfig(text(runner), 'config.json');
    assert.equal(config.runner.kind, 'github-jit');
    if (config.runner.kind !== 'github-jit') return;
    assert.equal(config.runner.runnerGroupId, 1);
    assert.deepEqual(config.runner.labels, ['self-hosted', 'linux', 'gatehouse']);
    assert.ok(runnerFromConfig(config.runner) instanceof GithubJitRunner);
    for (const bad of [
      { ...runner, repository: 'no-slash' },
      { ...runner, runnerGroupId: 0 },
      { ...runner, labels: ['has space'] },
      { ...runner, tokenFile: 'relative' },
      { ...runner, surprise: true },
    ])
      assert.throws(
        () => parseConfig(text(bad), 'config.json'),
        (e) => isGatehouseError(e, 'BAD_CONFIG'),
      );
  });
});
