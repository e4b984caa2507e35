/**
 * HTTP with a registry and its token service, under the rules every exchange follows: a timeout
 * on each request, redirects that never carry credentials off the registry's origin nor over plain
 * HTTP off loopback, bounded and strictly decoded answers, and the error codes of a failed
 * exchange (`REGISTRY_ERROR`, `REGISTRY_AUTH_FAILED`, `UNREACHABLE`).
 */
import { GatehouseError } from '../common/errors.ts';

/** The error for a registry answer that is wrong: malformed, oversized, or not what was asked. */
export function registryError(message: string, where: string, cause?: unknown): GatehouseError {
  return new GatehouseError('REGISTRY_ERROR', message, { where, ...(cause === undefined ? {} : { cause }) });
}

/** Whether a URL's hostname is the loopback interface, the only place plain HTTP is accepted. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The path and query of a location the registry pointed to, which must be on its own origin.
 * @throws GatehouseError REGISTRY_ERROR when it names another origin
 */
export function sameOriginPath(base: URL, location: string, where: string): string {
  const url = new URL(location, base);
  if (url.origin !== base.origin)
    throw registryError(`the registry pointed to another origin ${url.origin}`, where);
  return `${url.pathname}${url.search}`;
}

/**
 * The body of an answer, refusing more than `max` bytes whether declared or streamed.
 * @throws GatehouseError REGISTRY_ERROR when it is larger
 */
export async function readLimited(res: Response, max: number, where: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? 'NaN');
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel();
    throw registryError(`the response is ${declared} bytes, more than the ${max} allowed`, where);
  }
  if (res.body === null) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.byteLength;
    if (total > max) {
      await res.body.cancel().catch(() => {});
      throw registryError(`the response is more than the ${max} bytes allowed`, where);
    }
    parts.push(chunk);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Decode a JSON document, refusing invalid UTF-8. @throws GatehouseError REGISTRY_ERROR */
export function parseJson(bytes: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw registryError('the registry returned malformed JSON', where, e);
  }
}

/**
 * Check an answer's status. Any other status is an error naming the registry's own error codes
 * (from its JSON error body, if it sent one): `REGISTRY_AUTH_FAILED` for 401 and 403,
 * `REGISTRY_ERROR` otherwise.
 */
export async function expectStatus(res: Response, ok: number[], what: string, where: string): Promise<void> {
  if (ok.includes(res.status)) return;
  let detail = '';
  try {
    const text = new TextDecoder().decode(await readLimited(res, 16 * 1024, what));
    const errors = (JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] }).errors;
    detail = (errors ?? [])
      .map((e) => `${String(e.code)}: ${String(e.message)}`)
      .join('; ')
      .slice(0, 300);
  } catch {
    detail = '';
  }
  const code = res.status === 401 || res.status === 403 ? 'REGISTRY_AUTH_FAILED' : 'REGISTRY_ERROR';
  throw new GatehouseError(code, `${what} answered ${res.status}${detail === '' ? '' : ` (${detail})`}`, {
    where,
  });
}

/** How requests reach one registry. */
export interface RegistryTransport {
  /** The registry's base URL: headers follow a redirect only to its origin. */
  registry: URL;
  timeoutMs: number;
  fetch: typeof fetch;
}

/** One request to send. */
export interface RegistryRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** Follow up to three redirects (blob downloads); otherwise a redirect is the answer. */
  followRedirects?: boolean;
}

/**
 * Send one request. A failure to reach the registry is `UNREACHABLE`.
 * @throws GatehouseError REGISTRY_ERROR for a redirect off https (loopback excepted)
 */
export async function sendRequest(transport: RegistryTransport, request: RegistryRequest): Promise<Response> {
  const { method, url, headers, body } = request;
  try {
    const res = await transport.fetch(url, {
      method,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(transport.timeoutMs),
      ...(body === undefined ? {} : { body }),
    });
    return request.followRedirects === true ? await followRedirects(transport, request, res) : res;
  } catch (e) {
    if (e instanceof GatehouseError) throw e;
    throw new GatehouseError('UNREACHABLE', `cannot reach the registry: ${(e as Error).message}`, {
      where: `${method} ${url.origin}${url.pathname}`,
      cause: e,
    });
  }
}

/** Blob downloads may redirect to storage; credentials stay with the registry. */
async function followRedirects(
  transport: RegistryTransport,
  request: RegistryRequest,
  first: Response,
): Promise<Response> {
  const { method, url, headers } = request;
  let res = first;
  for (let hops = 0; res.status >= 301 && res.status <= 308 && hops < 3; hops++) {
    const to = res.headers.get('location');
    if (to === null) break;
    await res.body?.cancel();
    const next = new URL(to, url);
    if (next.protocol !== 'https:' && !(next.protocol === 'http:' && isLoopback(next.hostname))) {
      throw registryError(`refusing a redirect to ${next.origin}`, url.pathname);
    }
    res = await transport.fetch(next, {
      method,
      redirect: 'manual',
      signal: AbortSignal.timeout(transport.timeoutMs),
      ...(next.origin === transport.registry.origin ? { headers } : {}),
    });
  }
  return res;
}
