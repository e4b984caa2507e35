/**
 * The Kubernetes objects of one gatehouse job: a batch/v1 Job with exactly one Pod that never
 * restarts, hardened as far as the Pod API goes (no service account token, non-root, read-only
 * root, every capability dropped, no privilege escalation, a seccomp profile, resource limits and a
 * deadline), on the node whose agent attests it, with the job's workspace; and a NetworkPolicy
 * that denies the Pod all traffic (the fetch phase: egress to the agent's proxy only).
 */
import type { RunnerLimits } from '../limits.ts';

/** What the runner needs to describe one job's Pod. */
export interface PodPlan {
  /** The Kubernetes name of the Job (and the label value selecting its Pod and policy). */
  name: string;
  /** The gatehouse job id, kept as an annotation. */
  jobId: string;
  /** The build image, pinned by digest: `registry/repo@sha256:<hex>`. */
  image: string;
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  /** Wall-clock limit, seconds: the Job's activeDeadlineSeconds. */
  timeoutSeconds: number;
  limits: RunnerLimits;
  /** The node whose agent provisions and attests this job (the Pod runs there and only there). */
  node: string;
  /** Host path of the job's workspace on that node, mounted at /workspace. */
  workspaceHostPath: string;
  /** Seccomp: the runtime's default, or a Localhost profile installed on the node. */
  seccomp: { type: 'RuntimeDefault' } | { type: 'Localhost'; localhostProfile: string };
  /** The fetch phase only: where its egress may go (the agent's proxy), as a CIDR and port. */
  fetchEgress?: { cidr: string; port: number };
}

/** The uid and gid builds run as: no user of the image, never root. */
export const BUILD_UID = 65532;

/** The label every gatehouse build Pod and its NetworkPolicy carry. */
export const JOB_LABEL = 'gatehouse.dev/job';

/**
 * The Pod template, without anything per job: what the measured isolation profile describes
 * (names, the job id, the workspace path and the command are filled in by {@link jobManifest}).
 */
export function podTemplate(
  plan: Omit<PodPlan, 'name' | 'jobId' | 'command' | 'env' | 'workspaceHostPath'>,
): Record<string, unknown> {
  const MiB = 1024 * 1024;
  return {
    restartPolicy: 'Never',
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    hostNetwork: false,
    hostPID: false,
    hostIPC: false,
    shareProcessNamespace: false,
    nodeName: plan.node,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: BUILD_UID,
      runAsGroup: BUILD_UID,
      fsGroup: BUILD_UID,
      seccompProfile: plan.seccomp,
    },
    containers: [
      {
        name: 'build',
        image: plan.image,
        imagePullPolicy: 'IfNotPresent',
        workingDir: '/workspace',
        securityContext: {
          allowPrivilegeEscalation: false,
          privileged: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
          seccompProfile: plan.seccomp,
        },
        resources: {
          limits: {
            cpu: '2',
            memory: `${Math.floor(plan.limits.memoryBytes / MiB)}Mi`,
            'ephemeral-storage': `${Math.floor(plan.limits.tmpBytes / MiB)}Mi`,
          },
          requests: { cpu: '100m', memory: '64Mi' },
        },
        volumeMounts: [
          { name: 'workspace', mountPath: '/workspace' },
          { name: 'tmp', mountPath: '/tmp' },
        ],
      },
    ],
    volumes: [{ name: 'tmp', emptyDir: { sizeLimit: `${Math.floor(plan.limits.tmpBytes / MiB)}Mi` } }],
  };
}

/** The Job for one build (or fetch) phase. */
export function jobManifest(plan: PodPlan): Record<string, unknown> {
  const template = podTemplate(plan) as { containers: Record<string, unknown>[]; volumes: unknown[] };
  const [container] = template.containers;
  const labels = { [JOB_LABEL]: plan.name, 'app.kubernetes.io/managed-by': 'gatehouse' };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: plan.name, labels, annotations: { 'gatehouse.dev/job-id': plan.jobId } },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      activeDeadlineSeconds: plan.timeoutSeconds,
      // A safety net: the runner deletes the Job itself; the cluster removes one it could not.
      ttlSecondsAfterFinished: 300,
      template: {
        metadata: { labels },
        spec: {
          ...template,
          containers: [
            {
              ...container,
              command: [...plan.command],
              env: Object.entries(plan.env)
                .sort(([a], [b]) => (a < b ? -1 : 1))
                .map(([name, value]) => ({ name, value })),
            },
          ],
          volumes: [
            ...template.volumes,
            { name: 'workspace', hostPath: { path: plan.workspaceHostPath, type: 'Directory' } },
          ],
        },
      },
    },
  };
}

/** The NetworkPolicy of one job's Pod: nothing in, nothing out (or only the proxy, to fetch). */
export function networkPolicyManifest(plan: Pick<PodPlan, 'name' | 'fetchEgress'>): Record<string, unknown> {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: plan.name,
      labels: { [JOB_LABEL]: plan.name, 'app.kubernetes.io/managed-by': 'gatehouse' },
    },
    spec: {
      podSelector: { matchLabels: { [JOB_LABEL]: plan.name } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress:
        plan.fetchEgress === undefined
          ? []
          : [
              {
                to: [{ ipBlock: { cidr: plan.fetchEgress.cidr } }],
                ports: [{ protocol: 'TCP', port: plan.fetchEgress.port }],
              },
            ],
    },
  };
}
