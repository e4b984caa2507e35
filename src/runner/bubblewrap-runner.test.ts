import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';
import { collectOutputs } from '../agent/outputs.ts';
import { isGatehouseError } from '../common/errors.ts';
import { describeRunnerContract, processesWithMarker, shellConfig } from '../testing/runner-contract.ts';
import { BubblewrapRunner } from './bubblewrap-runner.ts';
import { detectHostLayout } from './host-layout.ts';
import { parseProjectConfig } from './project-config.ts';
import type { RunnerInstance } from './runner.ts';
import { bubblewrapSandboxProfile } from './sandbox-profile.ts';

describeRunnerContract('bubblewrap', () => new BubblewrapRunner());

describe('bubblewrap sandbox isolation', () => {
  const runner = new BubblewrapRunner();
  let source: string;
  const instances: RunnerInstance[] = [];
  let n = 0;
  const run = async (script: string, extra: Parameters<typeof shellConfig>[1] = {}) => {
    const instance = await runner.provision({
      jobId: `iso-${process.pid}-${++n}`,
      sourceDir: source,
      config: shellConfig(script, extra),
    });
    instances.push(instance);
    return { instance, result: await instance.build() };
  };

  before(async () => {
    source = await mkdtemp(join(tmpdir(), 'gatehouse-iso-src-'));
    await writeFile(join(source, 'build.sh'), 'echo hi > out.txt\n');
  });
  after(async () => {
    for (const i of instances) await i.destroy();
    await rm(source, { recursive: true, force: true });
  });

  it('passes no host environment variable into the build, only PATH, HOME and the config env', async () => {
    const secret = `sk_live_${randomBytes(16).toString('hex')}`;
    process.env.GATEHOUSE_TEST_SECRET_TOKEN = secret;
    try {
      const { result } = await run('env; cat /proc/self/environ', { env: { NODE_ENV: 'production' } });
      assert.equal(result.exitCode, 0, result.stderrTail);
      assert.ok(!result.stdoutTail.includes(secret), 'the secret leaked into the build');
      assert.ok(!result.stderrTail.includes(secret));
      const names = result.stdoutTail
        .split(/[\n\0]/)
        .filter((l) => /^[A-Za-z_]+=/.test(l))
        .map((l) => l.split('=')[0]);
      assert.deepEqual([...new Set(names)].sort(), ['HOME', 'NODE_ENV', 'PATH', 'PWD']);
    } finally {
      delete process.env.GATEHOUSE_TEST_SECRET_TOKEN;
    }
  });

  it("cannot see the host's /root, /home, /etc or /work", async () => {
    const { result } = await run(
      'for p in /root /home /work /etc/shadow /etc/hostname /etc/resolv.conf /etc/ssl /run /var /sys; do ' +
        'if test -e "$p"; then echo "VISIBLE $p"; fi; done; cat /etc/passwd; id -un',
    );
    assert.equal(result.exitCode, 0, result.stderrTail);
    assert.doesNotMatch(result.stdoutTail, /VISIBLE/);
    assert.match(result.stdoutTail, /^builder$/m);
    assert.deepEqual(
      result.stdoutTail
        .split('\n')
        .filter((l) => l.includes(':x:'))
        .map((l) => l.split(':')[0]),
      ['root', 'builder', 'nobody'],
    );
  });

  it('cannot connect to a TCP listener on the host loopback', async () => {
    let connections = 0;
    const server: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    const address = await listenOnLoopback(server);
    try {
      // Control: the listener does accept connections from the host.
      await new Promise<void>((resolve, reject) => {
        const s = connect(address.port, '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
      assert.equal(connections, 1);
      const { result } = await run(
        `if timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${address.port}' 2>/dev/null; then echo CONNECTED; else echo REFUSED; fi; ` +
          `if timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.0.1/${address.port}' 2>/dev/null; then echo CONNECTED; else echo UNREACHABLE; fi; ` +
          'cat /proc/net/dev',
        { timeout: 30 },
      );
      assert.equal(result.exitCode, 0, result.stderrTail);
      assert.match(result.stdoutTail, /REFUSED/);
      assert.match(result.stdoutTail, /UNREACHABLE/);
      assert.doesNotMatch(result.stdoutTail, /CONNECTED/);
      const interfaces = result.stdoutTail
        .split('\n')
        .filter((l) => /^\s*\w+:/.test(l))
        .map((l) => l.trim().split(':')[0]);
      assert.deepEqual(interfaces, ['lo']);
      assert.equal(connections, 1);
    } finally {
      await closeServer(server);
    }
  });

  it('cannot write outside /workspace, and its /tmp is private', async () => {
    const marker = `gatehouse-tmp-${randomBytes(8).toString('hex')}`;
    const { result } = await run(
      'for p in /usr/x /etc/x /x /proc/x /bin/x /usr/bin/x /etc/passwd; do if touch "$p" 2>/dev/null; then echo "WROTE $p"; fi; done; ' +
        `touch /tmp/${marker} && echo TMP_OK; touch /workspace/ok && echo WS_OK`,
    );
    assert.equal(result.exitCode, 0, result.stderrTail);
    assert.doesNotMatch(result.stdoutTail, /WROTE/);
    assert.match(result.stdoutTail, /TMP_OK/);
    assert.match(result.stdoutTail, /WS_OK/);
    await assert.rejects(access(join(tmpdir(), marker)));
    await assert.rejects(access(join('/tmp', marker)));
  });

  it('runs without capabilities, as uid 1000, unable to make new user namespaces', async () => {
    const { result } = await run(
      'id -u; id -g; grep CapEff /proc/self/status; unshare -U true && echo USERNS',
    );
    assert.match(result.stdoutTail, /^1000\n1000\nCapEff:\s+0+\n/);
    assert.doesNotMatch(result.stdoutTail, /USERNS/);
  });

  it('kills a build at its timeout and leaves no process behind', async () => {
    const marker = `GH_MARKER_${randomBytes(8).toString('hex')}`;
    const instance = await runner.provision({
      jobId: `timeout-${process.pid}`,
      sourceDir: source,
      config: shellConfig('sleep 1000 & sleep 1000; echo never', { timeout: 1, env: { [marker]: '1' } }),
    });
    instances.push(instance);
    const building = instance.build();
    // Control: while it runs, the marker does find the sandboxed sleeps from the host.
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await processesWithMarker(marker)).length >= 2, 'the marker scan sees the running build');
    await assert.rejects(building, (e: unknown) => {
      assert.ok(isGatehouseError(e, 'BUILD_TIMEOUT'), String(e));
      assert.match(e.message, /timeout of 1s/);
      return true;
    });
    assert.deepEqual(await processesWithMarker(marker), []);
  });

  it('refuses an output that is a symlink to /etc/passwd', async () => {
    const { instance, result } = await run('ln -s /etc/passwd out.txt');
    assert.equal(result.exitCode, 0);
    await assert.rejects(collectOutputs(instance, ['out.txt']), (e: unknown) => {
      assert.ok(isGatehouseError(e, 'OUTPUT_REJECTED'));
      assert.match(e.message, /'out\.txt' is a symlink/);
      return true;
    });
  });

  it('refuses an output reached through a symlinked directory', async () => {
    const { instance } = await run('ln -s /etc dir');
    // On the host the link points at the host's /etc: following it would collect host files.
    await assert.rejects(collectOutputs(instance, ['dir/passwd']), (e: unknown) => {
      assert.ok(isGatehouseError(e, 'OUTPUT_REJECTED'));
      assert.match(e.message, /'dir\/passwd' resolves outside the workspace/);
      return true;
    });
  });

  it('refuses missing outputs, directories, and paths that escape', async () => {
    const { instance } = await run('mkdir -p dist; echo x > out.txt');
    const cases: [string, RegExp][] = [
      ['missing.txt', /'missing\.txt' was not produced/],
      ['dist', /'dist' is not a regular file/],
      ['../x', /not a path inside the workspace/],
      ['/etc/passwd', /not a path inside the workspace/],
      ['', /not a path inside the workspace/],
    ];
    for (const [path, message] of cases) {
      await assert.rejects(collectOutputs(instance, [path]), (e: unknown) => {
        assert.ok(isGatehouseError(e, 'OUTPUT_REJECTED'), `${path}: ${String(e)}`);
        assert.match(e.message, message);
        return true;
      });
    }
  });

  it('refuses ../ outputs already when parsing the config', () => {
    assert.throws(
      () => parseProjectConfig('project: a\nbuild: {command: x}\noutputs: [../x]\n', 'gatehouse.yaml'),
      (e) => isGatehouseError(e, 'BAD_PROJECT_CONFIG'),
    );
  });

  it('makes each workspace private to its owner', async () => {
    const { instance } = await run('echo ok > out.txt');
    assert.equal((await stat(instance.workspace)).mode & 0o777, 0o700);
    assert.equal((await stat(join(instance.workspace, '..'))).mode & 0o777, 0o700);
  });

  it('fails the build clearly when the command does not exist', async () => {
    const instance = await runner.provision({
      jobId: `missing-cmd-${process.pid}`,
      sourceDir: source,
      config: parseProjectConfig('project: a\nbuild: {command: [/no/such/tool]}\noutputs: [a]\n', 'x'),
    });
    instances.push(instance);
    await assert.rejects(instance.build(), (e: unknown) => {
      assert.ok(isGatehouseError(e, 'BUILD_FAILED'), String(e));
      assert.match(e.message, /no\/such\/tool/);
      return true;
    });
  });

  it('refuses a job id that could name another path', async () => {
    for (const jobId of ['../x', '', 'a/b', '.hidden', 'x'.repeat(200)]) {
      await assert.rejects(runner.provision({ jobId, sourceDir: source, config: shellConfig('true') }), (e) =>
        isGatehouseError(e, 'BAD_INPUT'),
      );
    }
  });
});

describe('bubblewrap availability', () => {
  it('fails with SANDBOX_UNAVAILABLE and says what to install when bwrap is absent', async () => {
    const runner = new BubblewrapRunner({ bwrapPath: '/nonexistent/bwrap' });
    await assert.rejects(
      runner.provision({ jobId: 'x', sourceDir: tmpdir(), config: shellConfig('true') }),
      (e: unknown) => {
        assert.ok(isGatehouseError(e, 'SANDBOX_UNAVAILABLE'));
        assert.match(e.message, /install the bubblewrap package/);
        return true;
      },
    );
  });
});

describe('bubblewrap sandbox profile', () => {
  it('describes the sandbox without any host- or job-specific path', async () => {
    const config = parseProjectConfig(
      'project: a\nbuild: {command: [make], env: {Z: "1", A: "2"}}\noutputs: [a]\n',
      'x',
    );
    const runner = new BubblewrapRunner();
    const empty = await mkdtemp(join(tmpdir(), 'gatehouse-profile-src-'));
    const instance = await runner.provision({ jobId: `profile-${process.pid}`, sourceDir: empty, config });
    try {
      const profile = instance.sandboxProfile;
      assert.ok(!JSON.stringify(profile).includes(instance.workspace));
      assert.deepEqual(Object.keys(profile.env), ['A', 'HOME', 'PATH', 'Z']);
      assert.deepEqual(profile.capabilities, []);
      assert.equal(profile.network, 'loopback-only');
      assert.deepEqual(
        profile,
        bubblewrapSandboxProfile(config, await detectHostLayout(), { image: profile.image }),
      );
      assert.ok(Object.isFrozen(profile) && Object.isFrozen(profile.mounts));
    } finally {
      await instance.destroy();
      await rm(empty, { recursive: true, force: true });
    }
  });
});
