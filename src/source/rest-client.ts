import type { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

export interface RestClientOptions {
  /** API base URL; every request, including pagination links, must stay under it. */
  baseUrl: string;
  /** Sent as a bearer token; never logged or put in an error. */
  token?: string;
  /** Extra headers (API version, accept). */
  headers?: Record<string, string>;
  /** Longest wait for a rate limit to reset before failing closed (default 10 s). */
  maxRateLimitWaitSeconds?: number;
  /** Pages to follow at most per list (default 20). */
  maxPages?: number;
  /** Per-request time limit (default 15 s). */
  timeoutMs?: number;
}

const MAX_BODY = 8 * 1024 * 1024;

/**
 * A small JSON-over-HTTPS client for hosted source APIs: bearer token, bounded responses, link-header
 * pagination that never leaves the API's origin, and rate-limit answers (GitHub's
 * `x-ratelimit-remaining: 0` / `x-ratelimit-reset`, `retry-after`; GitLab's `RateLimit-Reset`)
 * waited out when the wait is short, else refused (fail closed).
 */
export class RestClient {
  readonly #o: Omit<RestClientOptions, 'token'>;
  readonly #token: string | undefined;
  readonly #base: URL;

  constructor(options: RestClientOptions) {
    this.#token = options.token;
    const { token: _token, ...rest } = options;
    this.#o = rest;
    this.#base = new URL(options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`);
  }

  /** GET one JSON document. undefined on 404. @throws GatehouseError SOURCE_UNAVAILABLE */
  async get<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S> | undefined> {
    const r = await this.#request(this.#url(path));
    if (r === undefined) return undefined;
    return parse(schema, r.body, path);
  }

  /** GET every page of a JSON array (`rel="next"` links). @throws GatehouseError SOURCE_UNAVAILABLE */
  async list<S extends z.ZodType>(path: string, item: S): Promise<z.infer<S>[]> {
    const out: z.infer<S>[] = [];
    let url: URL | undefined = this.#url(path);
    for (let page = 0; url !== undefined; page++) {
      if (page >= (this.#o.maxPages ?? 20)) {
        throw new GatehouseError('SOURCE_UNAVAILABLE', `${path}: more than ${this.#o.maxPages ?? 20} pages`);
      }
      const r = await this.#request(url);
      if (r === undefined) return out;
      if (!Array.isArray(r.body))
        throw new GatehouseError('SOURCE_UNAVAILABLE', `${path}: expected a JSON array`);
      for (const [i, v] of r.body.entries()) out.push(parse(item, v, `${path}[${i}]`));
      url = nextLink(r.link, this.#base);
    }
    return out;
  }

  #url(path: string): URL {
    const url = new URL(path.replace(/^\/+/, ''), this.#base);
    if (url.origin !== this.#base.origin || !url.pathname.startsWith(this.#base.pathname)) {
      throw new GatehouseError('BAD_INPUT', `${path} is outside the API base`);
    }
    return url;
  }

  async #request(url: URL, attempt = 0): Promise<{ body: unknown; link: string | null } | undefined> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#o.headers };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 15_000),
      });
    } catch (e) {
      throw new GatehouseError('SOURCE_UNAVAILABLE', `cannot reach ${url.origin}${url.pathname}`, {
        cause: e,
      });
    }
    const text = await readBounded(res, url);
    if (res.status === 404) return undefined;
    const wait = rateLimitWait(res);
    if (wait !== undefined) {
      const max = this.#o.maxRateLimitWaitSeconds ?? 10;
      if (attempt < 2 && wait <= max) {
        await new Promise((r) => setTimeout(r, wait * 1000));
        return this.#request(url, attempt + 1);
      }
      throw new GatehouseError(
        'SOURCE_UNAVAILABLE',
        `${url.pathname}: rate limited by ${url.host} for ${wait} s more (longest wait ${max} s)`,
      );
    }
    if (res.status !== 200) {
      throw new GatehouseError(
        'SOURCE_UNAVAILABLE',
        `${url.pathname}: ${url.host} answered HTTP ${res.status}`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new GatehouseError('SOURCE_UNAVAILABLE', `${url.pathname}: not JSON`, { cause: e });
    }
    return { body, link: res.headers.get('link') };
  }
}

async function readBounded(res: Response, url: URL): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_BODY)
    throw new GatehouseError('SOURCE_UNAVAILABLE', `${url.pathname}: response too large`);
  const reader = res.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY) {
      await reader.cancel();
      throw new GatehouseError('SOURCE_UNAVAILABLE', `${url.pathname}: response too large`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Seconds to wait when the answer is a rate-limit refusal; undefined otherwise. */
export function rateLimitWait(
  res: { status: number; headers: Headers },
  now = Date.now(),
): number | undefined {
  if (res.status !== 403 && res.status !== 429) return undefined;
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter !== null && /^\d{1,6}$/.test(retryAfter.trim())) return Number(retryAfter.trim());
  const remaining = res.headers.get('x-ratelimit-remaining') ?? res.headers.get('ratelimit-remaining');
  const reset = res.headers.get('x-ratelimit-reset') ?? res.headers.get('ratelimit-reset');
  if ((remaining === '0' || res.status === 429) && reset !== null && /^\d{1,12}$/.test(reset)) {
    return Math.max(0, Number(reset) - Math.floor(now / 1000));
  }
  // A 429 without timing, or a plain 403 that is not a rate limit: not waitable.
  return res.status === 429 ? Number.POSITIVE_INFINITY : undefined;
}

/** The `rel="next"` URL of a Link header, only when it stays under the API base. */
export function nextLink(link: string | null, base: URL): URL | undefined {
  if (link === null) return undefined;
  for (const part of link.split(',')) {
    const m = /^\s*<([^>]+)>\s*;(.*)$/.exec(part);
    if (m === null || !/\brel="?next"?/.test(m[2] ?? '')) continue;
    let url: URL;
    try {
      url = new URL(m[1] ?? '', base);
    } catch {
      return undefined;
    }
    // Never follow a link elsewhere: the token would go with it.
    if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) {
      throw new GatehouseError('SOURCE_UNAVAILABLE', `pagination link leaves ${base.origin}`);
    }
    return url;
  }
  return undefined;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'SOURCE_UNAVAILABLE',
      `${where}: unexpected response at ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return r.data;
}
