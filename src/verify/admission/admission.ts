/**
 * The decision of a Kubernetes ValidatingAdmissionWebhook: read an AdmissionReview v1 request,
 * collect the images of the pod (or of the pod template of a workload), verify each with the
 * deploy policy, and answer an AdmissionReview v1 response. Every error is a denial with its
 * reason: the webhook fails closed, and should be registered with `failurePolicy: Fail`.
 */
import { describeError, GatehouseError } from '../../common/errors.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface AdmissionResponseReview {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string };
    warnings?: string[];
  };
}

/** Verifies one image reference; throws (any error) when it must not run. */
export type ImageVerifier = (image: string) => Promise<void>;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Where the pod spec sits in each workload kind the webhook understands. */
const POD_SPEC_PATHS: Record<string, string[]> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  ReplicationController: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

/** Every image a pod spec would run: containers, initContainers and ephemeralContainers. */
export function podImages(kind: string, object: unknown): string[] {
  const path = POD_SPEC_PATHS[kind];
  if (path === undefined)
    throw new GatehouseError('BAD_INPUT', `the webhook does not judge objects of kind ${kind}`);
  let spec: unknown = object;
  for (const key of path) {
    spec = isObject(spec) ? spec[key] : undefined;
  }
  if (!isObject(spec))
    throw new GatehouseError('BAD_INPUT', `the ${kind} has no pod spec at ${path.join('.')}`);
  const images: string[] = [];
  for (const field of ['containers', 'initContainers', 'ephemeralContainers']) {
    const list = spec[field];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new GatehouseError('BAD_INPUT', `${field} of the ${kind} is not a list`);
    for (const [i, c] of list.entries()) {
      const image = isObject(c) ? c.image : undefined;
      if (typeof image !== 'string' || image === '') {
        throw new GatehouseError('BAD_INPUT', `${field}[${i}] of the ${kind} has no image`);
      }
      images.push(image);
    }
  }
  if (images.length === 0) throw new GatehouseError('BAD_INPUT', `the ${kind} names no container images`);
  return [...new Set(images)];
}

/** The uid of a review, or undefined when the body is not an AdmissionReview v1 request at all. */
export function reviewUid(body: unknown): string | undefined {
  if (!isObject(body) || body.apiVersion !== ADMISSION_API_VERSION || body.kind !== 'AdmissionReview')
    return undefined;
  const request = body.request;
  if (!isObject(request) || typeof request.uid !== 'string' || request.uid === '' || request.uid.length > 128)
    return undefined;
  return request.uid;
}

function deny(uid: string, message: string): AdmissionResponseReview {
  // The API server shows the message to the user; keep it bounded.
  const text = message.length > 4000 ? `${message.slice(0, 4000)}…` : message;
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: { uid, allowed: false, status: { code: 403, message: `gatehouse: ${text}` } },
  };
}

/**
 * Decide one review. The caller has checked `reviewUid(body)` is defined.
 * Deletions and connections run no new image and are allowed; a create or update is allowed
 * only when every image verifies.
 */
export async function decideAdmission(
  body: Json,
  verifyImage: ImageVerifier,
  deadlineMs = 8000,
): Promise<AdmissionResponseReview> {
  const request = body.request as Json;
  const uid = request.uid as string;
  const operation = request.operation;
  if (operation === 'DELETE' || operation === 'CONNECT') {
    return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, allowed: true } };
  }
  if (operation !== 'CREATE' && operation !== 'UPDATE')
    return deny(uid, `unknown operation ${String(operation)}`);
  const kind = isObject(request.kind) && typeof request.kind.kind === 'string' ? request.kind.kind : '';
  let images: string[];
  try {
    images = podImages(kind, request.object);
  } catch (e) {
    return deny(uid, describeError(e));
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), deadlineMs);
  });
  try {
    const results = await Promise.race([
      Promise.all(
        images.map(async (image) => {
          try {
            await verifyImage(image);
            return undefined;
          } catch (e) {
            return `image ${image}: ${describeError(e)}`;
          }
        }),
      ),
      deadline,
    ]);
    if (results === 'timeout') return deny(uid, `verification did not finish within ${deadlineMs} ms`);
    const problems = results.filter((r): r is string => r !== undefined);
    if (problems.length > 0) return deny(uid, problems.join('; '));
    return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, allowed: true } };
  } finally {
    clearTimeout(timer);
  }
}
