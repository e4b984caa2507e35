/**
 * The Kubernetes manifests under deploy/kubernetes, parsed as the API server would read them
 * (YAML documents of API objects), checked for the security properties docs/kubernetes.md
 * promises, and checked against what the Job runner actually does: every API call of
 * src/runner/kubernetes/api.ts is granted by the node agent's Role and nothing more is, and the
 * Job the runner makes would be admitted to the namespace the Role covers. No cluster runs here.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_LIMITS } from '../limits.ts';
import { KubernetesApi } from './api.ts';
import { BUILD_UID, JOB_LABEL, jobManifest, networkPolicyManifest } from './job-manifest.ts';

const deployDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'deploy', 'kubernetes');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

type Obj = Record<string, unknown>;

function loadManifests(): K8sObject[] {
  const out: K8sObject[] = [];
  for (const file of readdirSync(deployDir).filter(
    (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml',
  )) {
    for (const doc of parseAllDocuments(readFileSync(join(deployDir, file), 'utf8'))) {
      assert.equal(doc.errors.length, 0, `${file}: ${doc.errors[0]?.message}`);
      const value = doc.toJS() as K8sObject | null;
      if (value === null) continue;
      assert.ok(
        value.apiVersion && value.kind && value.metadata?.name,
        `${file}: an object without kind or name`,
      );
      out.push(value);
    }
  }
  return out;
}

const objects = loadManifests();
const byKind = (kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);
const one = (kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `no ${kind} ${name} in deploy/kubernetes`);
  return found;
};
const podSpecOf = (o: K8sObject): Obj => ((o.spec as Obj).template as { spec: Obj }).spec;
const containersOf = (pod: Obj): Obj[] => [
  ...((pod.initContainers as Obj[] | undefined) ?? []),
  ...(pod.containers as Obj[]),
];

const DIGEST_PINNED = /^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$/;

/** The hardening every unprivileged gatehouse container has. */
function assertHardened(where: string, pod: Obj): void {
  const podSc = (pod.securityContext ?? {}) as Obj;
  assert.equal(pod.automountServiceAccountToken, false, `${where}: a service account token is mounted`);
  assert.equal(pod.hostNetwork ?? false, false, `${where}: host network`);
  assert.equal(pod.hostPID ?? false, false, `${where}: host PID`);
  assert.equal(pod.hostIPC ?? false, false, `${where}: host IPC`);
  for (const c of containersOf(pod)) {
    const sc = (c.securityContext ?? {}) as Obj;
    const name = `${where} container ${String(c.name)}`;
    assert.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${name}: may run as root`);
    const uid = (sc.runAsUser ?? podSc.runAsUser) as number | undefined;
    assert.ok(uid !== undefined && uid > 0, `${name}: no non-zero runAsUser`);
    assert.equal(sc.readOnlyRootFilesystem, true, `${name}: writable root file system`);
    assert.equal(sc.allowPrivilegeEscalation, false, `${name}: privilege escalation allowed`);
    assert.equal(sc.privileged ?? false, false, `${name}: privileged`);
    assert.deepEqual((sc.capabilities as Obj | undefined)?.drop, ['ALL'], `${name}: capabilities kept`);
    assert.equal((sc.capabilities as Obj | undefined)?.add, undefined, `${name}: capabilities added`);
    const seccomp = (sc.seccompProfile ?? podSc.seccompProfile) as Obj | undefined;
    assert.ok(
      seccomp?.type === 'RuntimeDefault' || seccomp?.type === 'Localhost',
      `${name}: no seccomp profile`,
    );
    assert.match(String(c.image), DIGEST_PINNED, `${name}: image not pinned by digest`);
    assert.ok((c.resources as Obj | undefined)?.limits, `${name}: no resource limits`);
  }
}

/** The RBAC (apiGroup, resource, verb) an API path and method need, as the API server maps them. */
function rbacOf(method: string, path: string): { group: string; resource: string; verb: string } {
  const p = new URL(path, 'https://api.invalid').pathname.split('/').filter((s) => s !== '');
  // /api/v1/namespaces/NS/RES[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/NS/RES[/NAME[/SUB]]
  const [group, rest] = p[0] === 'api' ? ['', p.slice(2)] : [p[1] ?? '', p.slice(3)];
  assert.equal(rest[0], 'namespaces', `${path} is not namespaced`);
  const [, , resource, name, sub] = rest;
  const verb =
    method === 'POST' ? 'create' : method === 'DELETE' ? 'delete' : name === undefined ? 'list' : 'get';
  return { group, resource: `${resource}${sub === undefined ? '' : `/${sub}`}`, verb };
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  it('parse into API objects, each in a gatehouse namespace', () => {
    assert.ok(objects.length >= 10);
    const namespaces = byKind('Namespace').map((n) => n.metadata.name);
    assert.deepEqual(namespaces.sort(), ['gatehouse', 'gatehouse-runners']);
    for (const o of objects.filter((x) => x.kind !== 'Namespace'))
      assert.ok(
        namespaces.includes(o.metadata.namespace ?? ''),
        `${o.kind} ${o.metadata.name} is in no gatehouse namespace`,
      );
    // The control plane's namespace enforces the restricted Pod Security Standard.
    assert.equal(
      one('Namespace', 'gatehouse').metadata.labels?.['pod-security.kubernetes.io/enforce'],
      'restricted',
    );
  });

  it('run the control plane unprivileged, read-only, non-root, without a service account token', () => {
    const deployment = one('Deployment', 'gatehouse-control-plane');
    assert.ok(((deployment.spec as Obj).replicas as number) >= 2, 'one instance only');
    assertHardened('control plane', podSpecOf(deployment));
    assert.equal(one('ServiceAccount', 'gatehouse-control-plane').automountServiceAccountToken, false);
    // It never calls the Kubernetes API: no Role is bound to it.
    for (const b of byKind('RoleBinding').concat(byKind('ClusterRoleBinding')))
      for (const s of (b.subjects as Obj[] | undefined) ?? [])
        assert.notEqual(s.name, 'gatehouse-control-plane', `${b.metadata.name} grants the control plane`);
    const service = one('Service', 'gatehouse');
    assert.deepEqual((service.spec as Obj).selector, ((deployment.spec as Obj).selector as Obj).matchLabels);
  });

  it('grant the node agent exactly the API calls of the Job runner, in one namespace', () => {
    assert.equal(byKind('ClusterRole').length, 0, 'a ClusterRole');
    assert.equal(byKind('ClusterRoleBinding').length, 0, 'a ClusterRoleBinding');
    const role = one('Role', 'gatehouse-node-agent');
    const granted = new Set<string>();
    for (const rule of role.rules as {
      apiGroups: string[];
      resources: string[];
      verbs: string[];
      resourceNames?: string[];
    }[]) {
      for (const list of [rule.apiGroups, rule.resources, rule.verbs])
        assert.ok(!list.includes('*'), `a wildcard in ${JSON.stringify(rule)}`);
      for (const g of rule.apiGroups)
        for (const r of rule.resources) for (const v of rule.verbs) granted.add(`${g}|${r}|${v}`);
    }
    // What the runner calls (src/runner/kubernetes/api.ts and kubernetes-runner.ts).
    const api = new KubernetesApi({
      server: 'https://api.invalid',
      token: 't',
      namespace: 'gatehouse-runners',
    });
    const calls: [string, string][] = [
      ['POST', api.networkPoliciesPath()],
      ['POST', api.jobsPath()],
      ['GET', api.jobsPath('gh-job-1')],
      ['GET', `${api.podsPath()}?labelSelector=job-name%3Dgh-job-1`],
      ['GET', `${api.podsPath('gh-job-1-abcde')}/log?container=build`],
      ['DELETE', `${api.jobsPath('gh-job-1')}?propagationPolicy=Background`],
      ['DELETE', api.networkPoliciesPath('gh-job-1')],
    ];
    const needed = new Set(
      calls.map(([m, p]) => {
        const r = rbacOf(m, p);
        return `${r.group}|${r.resource}|${r.verb}`;
      }),
    );
    assert.deepEqual([...granted].sort(), [...needed].sort());
    for (const forbidden of ['|secrets|get', '|pods/exec|create', 'batch|jobs|update', 'batch|jobs|patch'])
      assert.ok(!granted.has(forbidden), forbidden);
    const binding = one('RoleBinding', 'gatehouse-node-agent');
    assert.equal(binding.metadata.namespace, role.metadata.namespace);
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'gatehouse-node-agent',
    });
    assert.deepEqual(binding.subjects, [
      { kind: 'ServiceAccount', name: 'gatehouse-node-agent', namespace: role.metadata.namespace },
    ]);
    const agent = podSpecOf(one('DaemonSet', 'gatehouse-node-agent'));
    assert.equal(agent.serviceAccountName, 'gatehouse-node-agent');
  });

  it('give the node agent its node name, the TPM, and the workspace root at the node path', () => {
    const ds = one('DaemonSet', 'gatehouse-node-agent');
    const pod = podSpecOf(ds);
    assert.equal(pod.hostNetwork ?? false, false);
    assert.equal(pod.hostPID ?? false, false);
    const [agent] = pod.containers as Obj[];
    assert.ok(agent);
    assert.match(String(agent.image), DIGEST_PINNED);
    const env = agent.env as { name: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[];
    assert.equal(env.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
    const volumes = new Map(
      (pod.volumes as { name: string; hostPath?: { path: string; type?: string } }[]).map((v) => [v.name, v]),
    );
    const mounts = agent.volumeMounts as { name: string; mountPath: string; mountPropagation?: string }[];
    const workspaces = mounts.find((m) => m.name === 'workspaces');
    // The runner names the job's workspace by its path in the agent; the build Pod's hostPath is
    // that same path on the node, so they must be equal, and the agent's tmpfs must reach the node.
    assert.equal(workspaces?.mountPath, volumes.get('workspaces')?.hostPath?.path);
    assert.equal(workspaces?.mountPropagation, 'Bidirectional');
    assert.equal(volumes.get('tpm')?.hostPath?.type, 'CharDevice');
    assert.equal(volumes.get('tpm')?.hostPath?.path, '/dev/tpmrm0');
    // The one privileged container of the deployment is this one, and its root stays read-only.
    const sc = agent.securityContext as Obj;
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal((sc.seccompProfile as Obj | undefined)?.type, 'RuntimeDefault');
    const privileged = objects
      .filter((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet')
      .flatMap((o) => containersOf(podSpecOf(o)).map((c) => [o.metadata.name, c] as const))
      .filter(([, c]) => (c.securityContext as Obj | undefined)?.privileged === true)
      .map(([n]) => n);
    assert.deepEqual(privileged, ['gatehouse-node-agent']);
    // Its token is projected, expiring, and only for it.
    const token = (pod.volumes as { name: string; projected?: { sources: Obj[] } }[]).find(
      (v) => v.name === 'api-token',
    );
    const sat = token?.projected?.sources.find((s) => s.serviceAccountToken !== undefined)
      ?.serviceAccountToken as { expirationSeconds?: number } | undefined;
    assert.ok(sat?.expirationSeconds !== undefined && sat.expirationSeconds <= 3600);
  });

  it('deny build Pods all ingress and every egress but the agents\u2019 fetch proxy', () => {
    const policy = one('NetworkPolicy', 'gatehouse-builds');
    const spec = policy.spec as Obj;
    assert.equal(policy.metadata.namespace, 'gatehouse-runners');
    assert.deepEqual(spec.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(spec.podSelector, { matchExpressions: [{ key: JOB_LABEL, operator: 'Exists' }] });
    assert.deepEqual(spec.ingress, []);
    const egress = spec.egress as { to: Obj[]; ports: Obj[] }[];
    assert.equal(egress.length, 1);
    assert.deepEqual(egress[0]?.to, [
      {
        podSelector: {
          matchLabels: { 'app.kubernetes.io/name': 'gatehouse', 'app.kubernetes.io/component': 'node-agent' },
        },
      },
    ]);
    assert.deepEqual(egress[0]?.ports, [{ protocol: 'TCP', port: 8701 }]);
    // No rule anywhere opens a build Pod to everything (an empty `to`, or 0.0.0.0/0).
    for (const np of byKind('NetworkPolicy'))
      for (const rule of ((np.spec as Obj).egress as { to?: Obj[] }[] | undefined) ?? []) {
        assert.ok(rule.to !== undefined && rule.to.length > 0, `${np.metadata.name}: egress to anywhere`);
        for (const t of rule.to)
          assert.notEqual((t.ipBlock as { cidr?: string } | undefined)?.cidr, '0.0.0.0/0', np.metadata.name);
      }
  });

  it('admit the Job the runner makes: hardened, selected by the build policy, in the Role\u2019s namespace', () => {
    const plan = {
      name: 'gh-job-1-abcdef12',
      jobId: 'job-1',
      image: `registry.example/build@sha256:${'1'.repeat(64)}`,
      command: ['sh', 'build.sh'],
      env: { CI: '1' },
      timeoutSeconds: 600,
      limits: DEFAULT_LIMITS,
      node: 'node-a',
      workspaceHostPath: '/var/lib/gatehouse/workspaces/gatehouse-job-1-x/workspace',
      seccomp: { type: 'RuntimeDefault' as const },
    };
    const job = jobManifest(plan) as unknown as K8sObject;
    const pod = podSpecOf(job);
    assertHardened('build Job', pod);
    assert.equal(pod.restartPolicy, 'Never');
    assert.equal((job.spec as Obj).backoffLimit, 0);
    assert.equal((job.spec as Obj).activeDeadlineSeconds, 600);
    assert.equal((pod.securityContext as Obj).runAsUser as number, BUILD_UID);
    // The workspace is under the agent's workspace root on the node, as the DaemonSet mounts it.
    const agent = podSpecOf(one('DaemonSet', 'gatehouse-node-agent'));
    const root = (agent.volumes as { name: string; hostPath?: { path: string } }[]).find(
      (v) => v.name === 'workspaces',
    )?.hostPath?.path;
    const workspace = (pod.volumes as { name: string; hostPath?: { path: string } }[]).find(
      (v) => v.name === 'workspace',
    )?.hostPath?.path;
    assert.ok(root !== undefined && workspace?.startsWith(`${root}/`), `${workspace} is not under ${root}`);
    // Its labels are what the namespace's build policy selects, and its own policy denies all.
    const labels = ((job.spec as Obj).template as { metadata: { labels: Record<string, string> } }).metadata
      .labels;
    assert.ok(JOB_LABEL in labels);
    const own = networkPolicyManifest(plan) as { spec: Obj };
    assert.deepEqual(own.spec.egress, []);
    assert.deepEqual(own.spec.ingress, []);
    assert.deepEqual((own.spec.podSelector as Obj).matchLabels, { [JOB_LABEL]: plan.name });
  });

  it('refuse a weakened manifest (the checks are not vacuous)', () => {
    const pod = structuredClone(podSpecOf(one('Deployment', 'gatehouse-control-plane')));
    const sc = (p: Obj): Obj => {
      const [first] = containersOf(p);
      assert.ok(first);
      return first.securityContext as Obj;
    };
    const weaken: [string, (p: Obj) => void][] = [
      ['root', (p) => (sc(p).runAsNonRoot = false)],
      ['writable root', (p) => (sc(p).readOnlyRootFilesystem = false)],
      ['a capability', (p) => (sc(p).capabilities = { drop: ['ALL'], add: ['NET_ADMIN'] })],
      [
        'no seccomp',
        (p) => {
          delete sc(p).seccompProfile;
          delete (p.securityContext as Obj).seccompProfile;
        },
      ],
      ['a token', (p) => (p.automountServiceAccountToken = true)],
      ['a tag', (p) => ((containersOf(p)[0] as Obj).image = 'registry.example.com/gatehouse:latest')],
    ];
    for (const [what, change] of weaken) {
      const copy = structuredClone(pod);
      change(copy);
      assert.throws(() => assertHardened('weakened', copy), assert.AssertionError, what);
    }
  });
});
