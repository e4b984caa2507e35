/**
 * The Kubernetes Job runner against recorded API answers (testdata/, in the API reference's
 * shapes; no cluster runs here). A loopback HTTP server plays the API server: it records what the
 * runner asks and answers with the recorded objects for a scenario. Checked: the hardened Job and
 * deny-all NetworkPolicy the runner creates (policy first), how it reads success, a failing exit
 * code, a deadline, an image that never pulls and a refusal by RBAC, and that destroy deletes the
 * Job with its Pod, the policy and the workspace whatever happened.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { closeServer, listenOnLoopback, tempDir } from '../../../test/helpers.ts';
import { sandboxProfileDigest } from '../../attestation/measurement.ts';
import { isGatehouseError } from '../../common/errors.ts';
import { kubernetesRunnerFromConfig } from '../from-config.ts';
import { DEFAULT_LIMITS } from '../limits.ts';
import { parseProjectConfig } from '../project-config.ts';
import { KubernetesApi } from './api.ts';
import { BUILD_UID } from './job-manifest.ts';
import { KubernetesRunner } from './kubernetes-runner.ts';

const testdata = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
const IMAGE = `registry.example/build@sha256:${'1'.repeat(64)}`;
const TOKEN = 'test-service-account-token';

type Scenario = 'success' | 'exit' | 'deadline' | 'image-pull' | 'forbidden';

interface Seen {
  method: string;
  path: string;
  auth: string | undefined;
  body?: Record<string, unknown>;
}

/** A recorded answer with the runner's chosen Job name filled in. */
function recorded(file: string, name: string): string {
  return readFileSync(join(testdata, file), 'utf8').replaceAll('NAME', name);
}

describe('Kubernetes Job runner (recorded API answers)', {
  skip: process.getuid?.() === 0 ? false : 'workspaces are tmpfs mounts: needs root',
}, () => {
  const tmp = tempDir('k8s');
  let server: Server;
  let url = '';
  let scenario: Scenario = 'success';
  let seen: Seen[] = [];
  let polls = 0;
  const config = parseProjectConfig(
    'project: app\nbuild:\n  command: ["sh", "build.sh"]\n  timeout: 60\n  env: { CI: "1" }\noutputs: [out.txt]\n',
    'app/gatehouse.yaml',
  );

  before(async () => {
    server = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
      const path = req.url ?? '';
      seen.push({
        method: req.method ?? '',
        path,
        auth: req.headers.authorization,
        ...(body === undefined ? {} : { body }),
      });
      const json = (status: number, payload: string): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(payload);
      };
      const name =
        (
          seen.find((s) => s.method === 'POST' && s.path.endsWith('/jobs'))?.body?.metadata as
            | { name?: string }
            | undefined
        )?.name ?? 'none';
      if (req.method === 'POST' && path.endsWith('/networkpolicies')) return json(201, JSON.stringify(body));
      if (req.method === 'POST' && path.endsWith('/jobs')) {
        if (scenario === 'forbidden') return json(403, recorded('status-forbidden.json', name));
        return json(
          201,
          recorded('job-running.json', String((body?.metadata as { name?: string } | undefined)?.name)),
        );
      }
      if (req.method === 'GET' && path.includes('/jobs/')) {
        polls++;
        if (polls < 2 || scenario === 'image-pull') return json(200, recorded('job-running.json', name));
        const done = {
          success: 'job-complete.json',
          exit: 'job-failed-exit.json',
          deadline: 'job-failed-deadline.json',
        } as const;
        return json(200, recorded(done[scenario as keyof typeof done], name));
      }
      if (req.method === 'GET' && path.includes('/log')) {
        res
          .writeHead(200, { 'content-type': 'text/plain' })
          .end(scenario === 'exit' ? 'compiling\nerror: it broke\n' : 'built out.txt\n');
        return;
      }
      if (req.method === 'GET' && path.includes('/pods')) {
        if (scenario === 'image-pull') return json(200, recorded('pods-image-pull.json', name));
        const list = JSON.parse(recorded('pods-terminated.json', name));
        if (scenario === 'exit') {
          list.items[0].status.phase = 'Failed';
          list.items[0].status.containerStatuses[0].state.terminated = { exitCode: 2, reason: 'Error' };
        }
        return json(200, JSON.stringify(list));
      }
      if (req.method === 'DELETE') {
        if (scenario === 'forbidden' && path.includes('/jobs/'))
          return json(404, recorded('status-not-found.json', name));
        return json(200, recorded('status-deleted.json', name));
      }
      json(404, recorded('status-not-found.json', name));
    });
    ({ url } = await listenOnLoopback(server));
    mkdirSync(join(tmp.path, 'src'));
    mkdirSync(join(tmp.path, 'jobs'));
    writeFileSync(join(tmp.path, 'src', 'build.sh'), 'echo built > out.txt\n');
  });
  after(async () => {
    await closeServer(server);
    tmp.cleanup();
  });

  const makeRunner = (): KubernetesRunner =>
    new KubernetesRunner({
      api: new KubernetesApi({ server: url, token: TOKEN, namespace: 'builds' }),
      image: IMAGE,
      node: 'node-a',
      workspaceRoot: join(tmp.path, 'jobs'),
      limits: DEFAULT_LIMITS,
      pollMs: 5,
    });
  const start = (s: Scenario) => {
    scenario = s;
    seen = [];
    polls = 0;
  };
  let n = 0;
  const provision = (runner: KubernetesRunner) =>
    runner.provision({ jobId: `job-k8s-${n++}`, sourceDir: join(tmp.path, 'src'), config });

  it('creates a deny-all NetworkPolicy, then a hardened Job, and reads a successful build', async () => {
    start('success');
    const runner = makeRunner();
    const instance = await provision(runner);
    assert.equal(statSync(instance.workspace).uid, BUILD_UID, 'the workspace belongs to the build user');
    const output: Buffer[] = [];
    const result = await instance.build((chunk) => output.push(chunk));
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdoutTail, 'built out.txt\n');
    // The Pod's log reaches the agent's build log too, in one piece once the Pod ended.
    assert.equal(Buffer.concat(output).toString(), 'built out.txt\n');

    assert.ok(
      seen.every((s) => s.auth === `Bearer ${TOKEN}`),
      'every call carries the service account token',
    );
    const posts = seen.filter((s) => s.method === 'POST');
    assert.deepEqual(
      posts.map((p) => p.path),
      [
        '/apis/networking.k8s.io/v1/namespaces/builds/networkpolicies',
        '/apis/batch/v1/namespaces/builds/jobs',
      ],
      'the policy exists before the Pod can',
    );
    const policy = posts[0]?.body as {
      spec: { egress: unknown[]; ingress: unknown[]; policyTypes: string[] };
    };
    assert.deepEqual(policy.spec.egress, []);
    assert.deepEqual(policy.spec.ingress, []);
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    const job = posts[1]?.body as {
      spec: Record<string, unknown> & { template: { spec: Record<string, unknown> } };
    };
    assert.equal(job.spec.backoffLimit, 0);
    assert.equal(job.spec.activeDeadlineSeconds, 60);
    const pod = job.spec.template.spec as {
      restartPolicy: string;
      automountServiceAccountToken: boolean;
      nodeName: string;
      securityContext: { runAsNonRoot: boolean; runAsUser: number };
      containers: {
        image: string;
        command: string[];
        env: { name: string; value: string }[];
        securityContext: Record<string, unknown>;
      }[];
      volumes: { name: string; hostPath?: { path: string } }[];
    };
    assert.equal(pod.restartPolicy, 'Never');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.nodeName, 'node-a');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, BUILD_UID);
    const [c] = pod.containers;
    assert.equal(c?.image, IMAGE);
    assert.deepEqual(c?.command, ['sh', 'build.sh']);
    assert.ok(c?.env.some((e) => e.name === 'CI' && e.value === '1'));
    assert.deepEqual(c?.securityContext, {
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.equal(pod.volumes.find((v) => v.name === 'workspace')?.hostPath?.path, instance.workspace);

    await instance.destroy();
    const deletes = seen.filter((s) => s.method === 'DELETE').map((s) => s.path);
    assert.ok(
      deletes.some((p) => p.includes('/jobs/') && p.includes('propagationPolicy=Background')),
      'the Job goes with its Pod',
    );
    assert.ok(deletes.some((p) => p.includes('/networkpolicies/')));
    assert.equal(existsSync(instance.workspace), false);
    await instance.destroy(); // twice is fine
  });

  it('reports a failing build by its exit code and its log', async () => {
    start('exit');
    const instance = await provision(makeRunner());
    try {
      const result = await instance.build();
      assert.equal(result.exitCode, 2);
      assert.match(result.stdoutTail, /error: it broke/);
    } finally {
      await instance.destroy();
    }
  });

  it('turns an exceeded deadline into BUILD_TIMEOUT', async () => {
    start('deadline');
    const instance = await provision(makeRunner());
    try {
      await assert.rejects(instance.build(), (e) => isGatehouseError(e, 'BUILD_TIMEOUT'));
    } finally {
      await instance.destroy();
    }
  });

  it('names an image that never pulls instead of waiting forever', async () => {
    start('image-pull');
    const runner = new KubernetesRunner({
      api: new KubernetesApi({ server: url, token: TOKEN, namespace: 'builds' }),
      image: IMAGE,
      node: 'node-a',
      workspaceRoot: join(tmp.path, 'jobs'),
      limits: DEFAULT_LIMITS,
      pollMs: 5,
      graceSeconds: 0,
    });
    const quick = parseProjectConfig(
      'project: app\nbuild:\n  command: ["true"]\n  timeout: 1\noutputs: [out.txt]\n',
      'quick',
    );
    const instance = await runner.provision({
      jobId: `job-k8s-${n++}`,
      sourceDir: join(tmp.path, 'src'),
      config: quick,
    });
    try {
      await assert.rejects(
        instance.build(),
        (e) =>
          isGatehouseError(e, 'BUILD_FAILED') && /never started: ImagePullBackOff/.test((e as Error).message),
      );
    } finally {
      await instance.destroy();
    }
    assert.ok(
      seen.some((s) => s.method === 'DELETE' && s.path.includes('/jobs/')),
      'the stuck Job is deleted',
    );
  });

  it('fails with the API message when RBAC refuses, and still cleans up', async () => {
    start('forbidden');
    const instance = await provision(makeRunner());
    await assert.rejects(
      instance.build(),
      (e) => isGatehouseError(e, 'UNAUTHORIZED') && /jobs\.batch is forbidden/.test((e as Error).message),
    );
    await instance.destroy();
    assert.ok(seen.some((s) => s.method === 'DELETE' && s.path.includes('/networkpolicies/')));
    assert.equal(existsSync(instance.workspace), false);
  });

  it('measures the same isolation for every job, and refuses an unpinned image or plain HTTP off loopback', () => {
    const runner = makeRunner();
    const a = runner.profileFor(config);
    const b = runner.profileFor(config);
    assert.equal(sandboxProfileDigest(a), sandboxProfileDigest(b));
    assert.ok(!JSON.stringify(a).includes('job-'), 'nothing per job in the profile');
    assert.throws(
      () =>
        new KubernetesRunner({
          api: new KubernetesApi({ server: url, token: TOKEN, namespace: 'builds' }),
          image: 'registry.example/build:latest',
          node: 'n',
          workspaceRoot: join(tmp.path, 'jobs'),
          limits: DEFAULT_LIMITS,
        }),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
    assert.throws(
      () => new KubernetesApi({ server: 'http://10.0.0.1:6443', token: TOKEN, namespace: 'builds' }),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
  });

  it('is made from a home config: its API server and token file, or refuses what is missing', async () => {
    const tokenFile = join(tmp.path, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const base = { namespace: 'builds', image: IMAGE, workspaceRoot: join(tmp.path, 'jobs'), node: 'node-a' };
    assert.throws(
      () => kubernetesRunnerFromConfig({ ...base, apiServer: url }),
      (e) => isGatehouseError(e, 'BAD_CONFIG') && /tokenFile/.test((e as Error).message),
    );
    const { node: _node, ...noNode } = base;
    const saved = process.env.NODE_NAME;
    delete process.env.NODE_NAME;
    try {
      assert.throws(
        () => kubernetesRunnerFromConfig({ ...noNode, apiServer: url, tokenFile }),
        /needs its node/,
      );
    } finally {
      if (saved !== undefined) process.env.NODE_NAME = saved;
    }
    start('success');
    const runner = kubernetesRunnerFromConfig({ ...base, apiServer: url, tokenFile });
    const instance = await provision(runner);
    try {
      assert.equal((await instance.build()).exitCode, 0);
      assert.ok(
        seen.every((x) => x.auth === `Bearer ${TOKEN}`),
        'the token file, trimmed, is the bearer token',
      );
    } finally {
      await instance.destroy();
    }
  });
});
