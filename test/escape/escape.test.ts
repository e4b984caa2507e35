/**
 * The escape suite: build scripts that try to get out of their runner. Every attempt must fail,
 * the build must fail closed with a reason naming what it ran into where that applies, and the
 * host must be unchanged afterwards. The limits here are small so that a failure of the
 * sandbox can never fill this machine's disk or memory.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { collectOutputs } from '../../src/agent/outputs.ts';
import { sha256Hex } from '../../src/common/encoding.ts';
import { isGatehouseError } from '../../src/common/errors.ts';
import { BubblewrapRunner } from '../../src/runner/bubblewrap-runner.ts';
import type { BuildResult, RunnerInstance } from '../../src/runner/runner.ts';
import { processesWithMarker, shellConfig } from '../../src/testing/runner-contract.ts';

const MiB = 1024 ** 2;
const LIMITS = {
  cpuSeconds: 3,
  memoryBytes: 64 * MiB,
  processes: 64,
  workspaceBytes: 8 * MiB,
  tmpBytes: 4 * MiB,
};
const MARKER = `GH_ESCAPE_${randomBytes(6).toString('hex')}`;

/** Our own cgroups' children named like build cgroups. */
async function buildCgroups(): Promise<string[]> {
  const self = await readFile('/proc/self/cgroup', 'utf8');
  const out: string[] = [];
  for (const line of self.split('\n')) {
    const [, ctl, path] = line.split(':');
    if (ctl === undefined || path === undefined || !['pids', 'memory', 'cpuacct'].includes(ctl)) continue;
    const dir = join('/sys/fs/cgroup', ctl, path);
    for (const e of await readdir(dir).catch(() => [] as string[]))
      if (e.startsWith(`gatehouse-esc-${process.pid}`)) out.push(join(dir, e));
  }
  return out;
}

describe('escape suite', () => {
  const runner = new BubblewrapRunner({ limits: LIMITS, image: null });
  let source: string;
  let fakeHome: string;
  const instances: RunnerInstance[] = [];
  let n = 0;
  const provision = async (script: string, timeout = 10): Promise<RunnerInstance> => {
    const instance = await runner.provision({
      jobId: `esc-${process.pid}-${++n}`,
      sourceDir: source,
      config: shellConfig(script, { timeout, env: { [MARKER]: '1' } }),
    });
    instances.push(instance);
    return instance;
  };
  const build = async (script: string, timeout = 10): Promise<BuildResult> =>
    (await provision(script, timeout)).build();
  /** Expect the build to fail closed with `code` and a message matching `why`. */
  const refused = async (
    script: string,
    code: 'BUILD_LIMIT_EXCEEDED' | 'BUILD_TIMEOUT',
    why: RegExp,
    wallSeconds = 4,
  ) => {
    await assert.rejects(build(script, wallSeconds), (e: unknown) => {
      assert.ok(isGatehouseError(e, code), String(e));
      assert.match(e.message, why);
      return true;
    });
  };

  before(async () => {
    source = await mkdtemp(join(tmpdir(), 'gatehouse-escape-src-'));
    await writeFile(join(source, 'input.txt'), 'source\n');
    // Stands in for the gatehouse home: keys and database the build must never see.
    fakeHome = await mkdtemp(join(tmpdir(), 'gatehouse-escape-home-'));
    await mkdir(join(fakeHome, 'keys'));
    await writeFile(join(fakeHome, 'keys', 'attestation.key.pem'), 'PRIVATE KEY MATERIAL');
    await writeFile(join(fakeHome, 'gatehouse.db'), 'SQLite format 3');
  });
  after(async () => {
    for (const i of instances) await i.destroy();
    await rm(source, { recursive: true, force: true });
    await rm(fakeHome, { recursive: true, force: true });
    // The host is unchanged: no process of any build left, no build cgroup left.
    assert.deepEqual(await processesWithMarker(MARKER), []);
    assert.deepEqual(await buildCgroups(), []);
  });

  it('cannot reach a listener on the host loopback, nor resolve names', async () => {
    let connections = 0;
    const server: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const r = await build(
        `if timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port}' 2>/dev/null; then echo CONNECTED; fi; ` +
          'if getent hosts example.com; then echo RESOLVED; fi; test -e /etc/resolv.conf && echo RESOLVCONF; echo done',
      );
      assert.equal(r.exitCode, 0, r.stderrTail);
      assert.doesNotMatch(r.stdoutTail, /CONNECTED|RESOLVED|RESOLVCONF/);
      assert.equal(connections, 0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('cannot write outside the workspace or read host secrets, the home or another job', async () => {
    const other = await provision('echo other-secret > secret.txt');
    assert.equal((await other.build()).exitCode, 0);
    const hostMarker = join(tmpdir(), `gatehouse-escape-${MARKER}`);
    const r = await build(
      `for f in /etc/shadow ${fakeHome}/keys/attestation.key.pem ${fakeHome}/gatehouse.db ${other.workspace}/secret.txt /root/.ssh; do ` +
        'if cat "$f" >/dev/null 2>&1 || test -e "$f"; then echo "READ $f"; fi; done; ' +
        `for f in /usr/x /etc/x /x ${fakeHome}/planted ${other.workspace}/planted; do if touch "$f" 2>/dev/null; then echo "WROTE $f"; fi; done; echo done`,
    );
    assert.equal(r.exitCode, 0, r.stderrTail);
    assert.doesNotMatch(r.stdoutTail, /READ|WROTE/);
    await assert.rejects(access(hostMarker));
    await assert.rejects(access(join(fakeHome, 'planted')));
    await assert.rejects(access(join(other.workspace, 'planted')));
  });

  it('cannot see, read, signal or ptrace the agent or any host process', async () => {
    // A host process the build will try to kill: it must survive.
    const victim = spawn('sleep', ['30'], { stdio: 'ignore' });
    process.env.GH_AGENT_SECRET = `agent-${MARKER}-secret`;
    try {
      const r = await build(
        'for p in /proc/[0-9]*; do readlink $p/exe; done | sort -u > exes.txt; ' +
          `grep -l agent-${MARKER} /proc/*/environ 2>/dev/null && echo SAW_AGENT_ENV; ` +
          `kill -9 ${victim.pid} 2>/dev/null && echo KILLED; kill -9 ${process.pid} 2>/dev/null && echo KILLED_AGENT; ` +
          `perl -e 'print syscall(101, 16, ${process.pid}, 0, 0) == -1 ? "PTRACE_REFUSED $!\\n" : "PTRACE_OK\\n"'; ` +
          'perl -e \'print syscall(101, 16, 1, 0, 0) == -1 ? "PTRACE1_REFUSED\\n" : "PTRACE1_OK\\n"\'; cat exes.txt',
      );
      assert.doesNotMatch(r.stdoutTail, /SAW_AGENT_ENV|KILLED|PTRACE_OK|PTRACE1_OK|node/);
      assert.match(r.stdoutTail, /PTRACE_REFUSED Operation not permitted/);
      assert.equal(victim.exitCode, null, 'the host process is still alive');
      assert.equal(victim.signalCode, null);
    } finally {
      delete process.env.GH_AGENT_SECRET;
      victim.kill('SIGKILL');
    }
  });

  it('refuses kernel-surface syscalls with EPERM under seccomp and no_new_privs', async () => {
    // ptrace, mount, umount2, bpf, keyctl, add_key, init_module, finit_module, reboot, kexec_load,
    // unshare(CLONE_NEWUSER), setns, pivot_root, perf_event_open, userfaultfd, clone3 → ENOSYS.
    const calls = [101, 165, 166, 321, 250, 248, 175, 313, 169, 246, 308, 155, 298, 323];
    const r = await build(
      'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; ' +
        `perl -e 'for my $nr (${calls.join(',')}) { my $r = syscall($nr, 0, 0, 0, 0, 0); print "$nr=", ($r == -1 ? 0 + $! : "OK"), "\\n" } ` +
        `my $u = syscall(272, 0x10000000); print "unshare_user=", ($u == -1 ? 0 + $! : "OK"), "\\n"; ` +
        `my $c = syscall(435, 0, 0); print "clone3=", ($c == -1 ? 0 + $! : "OK"), "\\n"'; unshare -U true 2>/dev/null && echo USERNS; true`,
    );
    assert.equal(r.exitCode, 0, r.stderrTail);
    assert.match(r.stdoutTail, /NoNewPrivs:\s+1/);
    assert.match(r.stdoutTail, /Seccomp:\s+2/);
    for (const nr of calls) assert.match(r.stdoutTail, new RegExp(`^${nr}=1$`, 'm'), `syscall ${nr}`);
    assert.match(r.stdoutTail, /^unshare_user=1$/m);
    assert.match(r.stdoutTail, /^clone3=38$/m);
    assert.doesNotMatch(r.stdoutTail, /OK|USERNS/);
  });

  it('leaves nothing for the next job', async () => {
    assert.equal((await build('echo x > /tmp/left; echo x > /dev/shm/left; echo x > left')).exitCode, 0);
    const r = await build(
      'ls /tmp /dev/shm .; test -e /tmp/left -o -e /dev/shm/left -o -e left && echo LEFTOVER; true',
    );
    assert.doesNotMatch(r.stdoutTail, /LEFTOVER/);
  });

  it('stops a fork bomb at the process limit', async () => {
    await refused('f() { f | f & }; f; sleep 10', 'BUILD_LIMIT_EXCEEDED', /limit of 64 processes/);
  });

  it('stops a build filling its workspace, and its /tmp stays bounded', async () => {
    await refused('head -c 64M /dev/zero > big; true', 'BUILD_LIMIT_EXCEEDED', /workspace limit of 8 MiB/);
    const r = await build('head -c 64M /dev/zero > /tmp/big; df -k /tmp | tail -1');
    assert.match(r.stdoutTail, /\s4096\s/);
  });

  it('kills a build exhausting its memory', async () => {
    await refused('tail /dev/zero', 'BUILD_LIMIT_EXCEEDED', /memory limit of 64 MiB/);
  });

  it('kills a build using more CPU time than its limit', async () => {
    // The wall clock is generous: on a loaded machine 3 s of CPU time can take far longer than 3 s.
    await refused('while :; do :; done', 'BUILD_LIMIT_EXCEEDED', /CPU time limit of 3s/, 60);
  });

  it('refuses an output path that points outside the workspace', async () => {
    const instance = await provision('ln -s /etc/passwd out.txt; mkdir d; ln -s / d/root');
    assert.equal((await instance.build()).exitCode, 0);
    for (const path of ['out.txt', 'd/root/etc/passwd', '../out.txt']) {
      await assert.rejects(collectOutputs(instance, [path]), (e) => isGatehouseError(e, 'OUTPUT_REJECTED'));
    }
  });

  it('cannot change an output after the agent digested it', async () => {
    const instance = await provision(
      'echo good > out.txt; (sleep 1; echo evil > out.txt) </dev/null >/dev/null 2>&1 & setsid sh -c "sleep 1; echo evil > out.txt" & true',
    );
    assert.equal((await instance.build()).exitCode, 0);
    const [out] = await collectOutputs(instance, ['out.txt']);
    await new Promise((r) => setTimeout(r, 1500));
    // Nothing of the build survives it, so the file is what was digested.
    assert.equal(await readFile(join(instance.workspace, 'out.txt'), 'utf8'), 'good\n');
    assert.equal(out?.sha256, sha256Hex('good\n'));
  });
});
