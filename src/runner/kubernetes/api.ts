/**
 * The part of the Kubernetes API the Job runner uses, over plain HTTPS as the API documents it
 * (https://kubernetes.io/docs/reference/kubernetes-api/): create, read and delete Jobs and
 * NetworkPolicies, list a Job's Pods and read a Pod's log, in one namespace. Bearer-token
 * authentication with the cluster's CA; in a Pod, the service account's token, CA and namespace.
 * Answers are bounded; a failure names the call and the API's own status message.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { GatehouseError } from '../../common/errors.ts';

/** Where and as whom to call the API. */
export interface KubernetesAccess {
  /** `https://host:port` (plain `http://` only for loopback). */
  readonly server: string;
  readonly token: string;
  /** PEM of the cluster CA (absent: the system's roots). */
  readonly ca?: string;
  readonly namespace: string;
}

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;
const TIMEOUT_MS = 30_000;

/**
 * The access of a Pod's own service account (the documented in-cluster configuration).
 * @throws GatehouseError BAD_CONFIG outside a Pod
 */
export function inClusterAccess(namespace?: string): KubernetesAccess {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === undefined || host === '')
    throw new GatehouseError(
      'BAD_CONFIG',
      'not in a Kubernetes Pod (KUBERNETES_SERVICE_HOST is unset): configure runner.apiServer',
    );
  try {
    return {
      server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
      token: readFileSync(`${SERVICE_ACCOUNT}/token`, 'utf8').trim(),
      ca: readFileSync(`${SERVICE_ACCOUNT}/ca.crt`, 'utf8'),
      namespace: namespace ?? readFileSync(`${SERVICE_ACCOUNT}/namespace`, 'utf8').trim(),
    };
  } catch (cause) {
    throw new GatehouseError('BAD_CONFIG', 'the service account token, CA or namespace cannot be read', {
      where: SERVICE_ACCOUNT,
      cause,
    });
  }
}

/** An answer of the API: its status and its body (JSON parsed when it is JSON). */
export interface ApiAnswer {
  status: number;
  body: unknown;
  text: string;
}

function isLoopback(url: URL): boolean {
  return url.hostname === '127.0.0.1' || url.hostname === '[::1]' || url.hostname === 'localhost';
}

/** A client of one namespace of one cluster. */
export class KubernetesApi {
  readonly #access: KubernetesAccess;
  readonly #base: URL;

  constructor(access: KubernetesAccess) {
    this.#base = new URL(access.server);
    if (this.#base.protocol !== 'https:' && !(this.#base.protocol === 'http:' && isLoopback(this.#base)))
      throw new GatehouseError(
        'BAD_CONFIG',
        `the Kubernetes API ${access.server} must be https (http only on loopback)`,
      );
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(access.namespace))
      throw new GatehouseError('BAD_CONFIG', `'${access.namespace}' is not a namespace name`);
    this.#access = access;
  }

  get namespace(): string {
    return this.#access.namespace;
  }

  /** One call; non-2xx answers are returned, not thrown (callers decide what 404 or 409 mean). */
  call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<ApiAnswer> {
    const url = new URL(path, this.#base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            authorization: `Bearer ${this.#access.token}`,
            accept: 'application/json, */*',
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': payload.length }),
          },
          ...(this.#access.ca === undefined ? {} : { ca: this.#access.ca }),
          timeout: TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER_BYTES) {
              req.destroy(
                new GatehouseError(
                  'UNREACHABLE',
                  `the Kubernetes API answered more than ${MAX_ANSWER_BYTES} bytes to ${method} ${url.pathname}`,
                ),
              );
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            if ((res.headers['content-type'] ?? '').includes('json')) {
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = text;
              }
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, text });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(
          new GatehouseError(
            'UNREACHABLE',
            `the Kubernetes API did not answer ${method} ${url.pathname} in time`,
          ),
        ),
      );
      req.on('error', (e) =>
        reject(
          e instanceof GatehouseError
            ? e
            : new GatehouseError(
                'UNREACHABLE',
                `the Kubernetes API at ${this.#base.origin} cannot be reached`,
                { cause: e },
              ),
        ),
      );
      req.end(payload);
    });
  }

  /** A call that must succeed with one of `ok` (default 2xx). */
  async expect(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    ok?: readonly number[],
  ): Promise<ApiAnswer> {
    const answer = await this.call(method, path, body);
    if (ok === undefined ? answer.status >= 200 && answer.status < 300 : ok.includes(answer.status))
      return answer;
    throw apiError(method, path, answer);
  }

  jobsPath(name?: string): string {
    return `/apis/batch/v1/namespaces/${this.namespace}/jobs${name === undefined ? '' : `/${name}`}`;
  }

  networkPoliciesPath(name?: string): string {
    return `/apis/networking.k8s.io/v1/namespaces/${this.namespace}/networkpolicies${name === undefined ? '' : `/${name}`}`;
  }

  podsPath(name?: string): string {
    return `/api/v1/namespaces/${this.namespace}/pods${name === undefined ? '' : `/${name}`}`;
  }
}

/** The API's refusal, with its own Status message (kind Status, `message`). */
export function apiError(method: string, path: string, answer: ApiAnswer): GatehouseError {
  const status = answer.body as { kind?: unknown; message?: unknown; reason?: unknown } | undefined;
  const message =
    typeof status === 'object' && status !== null && typeof status.message === 'string'
      ? status.message
      : answer.text.slice(0, 200);
  const code =
    answer.status === 401 || answer.status === 403
      ? 'UNAUTHORIZED'
      : answer.status === 404
        ? 'NOT_FOUND'
        : answer.status === 409
          ? 'CONFLICT'
          : 'UNREACHABLE';
  return new GatehouseError(code, `Kubernetes ${method} ${path}: ${answer.status} ${message}`);
}
