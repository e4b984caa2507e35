/**
 * A client of the OCI distribution API (https://github.com/opencontainers/distribution-spec, v1.1):
 * blobs (existence, cross-repository mount, monolithic and chunked upload, download), manifests,
 * tags, and referrers with the tag-schema fallback for registries without the referrers API.
 * Authentication follows the registry's challenge: anonymous, HTTP Basic, or a bearer token from
 * the token service named in `WWW-Authenticate`.
 */
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

/** Media types from the OCI image specification 1.1. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const MANIFEST_ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(', ');

/** Registries commonly refuse manifests above 4 MiB; we refuse to read more than that. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const REPO_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Credentials; they are used for Basic challenges and for the token service of Bearer ones. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface OciClientOptions {
  /** `https://host[:port]` or, for loopback or `plainHttp`, `http://…`. */
  baseUrl: string;
  credentials?: RegistryCredentials;
  /** Uploads larger than this go in chunks of this size (PATCH with Content-Range). */
  chunkSize?: number;
  /** Per-request timeout. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface ReferrersResult {
  manifests: Descriptor[];
  /** `api` when the registry answered the referrers API, `tag` when read from the fallback index. */
  source: 'api' | 'tag';
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

function regError(message: string, where: string, cause?: unknown): GatehouseError {
  return new GatehouseError('REGISTRY_ERROR', message, { where, ...(cause === undefined ? {} : { cause }) });
}

/** Check a repository name against the distribution grammar. @throws GatehouseError BAD_INPUT */
export function checkRepository(name: string): string {
  if (name.length > 255 || !REPO_RE.test(name)) {
    throw new GatehouseError('BAD_INPUT', `'${name}' is not a valid OCI repository name`);
  }
  return name;
}

function checkReference(ref: string): string {
  if (!DIGEST_RE.test(ref) && !TAG_RE.test(ref)) {
    throw new GatehouseError('BAD_INPUT', `'${ref}' is neither a sha256 digest nor a valid tag`);
  }
  return ref;
}

function checkDigest(digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new GatehouseError('BAD_INPUT', `'${digest}' is not a sha256 digest`);
  return digest;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Parse a `WWW-Authenticate` header into challenges (RFC 9110 §11.6.1): a scheme followed by
 * comma-separated `name=value` pairs, values optionally quoted.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const n = header.length;
  const token = (): string => {
    const m = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(header.slice(i));
    i += m?.[0].length ?? 0;
    return m?.[0] ?? '';
  };
  while (i < n) {
    while (i < n && (header[i] === ' ' || header[i] === ',' || header[i] === '\t')) i++;
    if (i >= n) break;
    const name = token();
    if (name === '') break; // not a token: stop rather than guess
    let j = i;
    while (header[j] === ' ') j++;
    if (header[j] !== '=') {
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    i = j + 1;
    while (header[i] === ' ') i++;
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < n && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < n) i++;
        value += header[i];
        i++;
      }
      i++;
    } else {
      value = token();
    }
    if (current !== undefined) current.params[name.toLowerCase()] = value;
  }
  return out;
}

/**
 * An OCI distribution client for one registry. Tokens are cached per scope in memory only, and
 * credentials are never sent to another origin than the registry's or its token service's, nor
 * over plain HTTP to anything but loopback.
 */
export class OciDistributionClient {
  readonly baseUrl: URL;
  readonly #credentials: RegistryCredentials | undefined;
  readonly #chunkSize: number;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  /** Bearer tokens by scope string; Basic when the registry asked for Basic. */
  readonly #tokens = new Map<string, string>();
  #basic = false;

  constructor(options: OciClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', `'${options.baseUrl}' is not a registry URL`, { cause: e });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new GatehouseError('BAD_INPUT', `registry URL '${options.baseUrl}' must be http or https`);
    }
    if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '')) {
      throw new GatehouseError('BAD_INPUT', `registry URL '${url.origin}' must have no credentials or path`);
    }
    this.baseUrl = url;
    this.#credentials = options.credentials;
    this.#chunkSize = options.chunkSize ?? 8 * 1024 * 1024;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#fetch = options.fetch ?? fetch;
    if (this.#chunkSize < 1024) throw new GatehouseError('BAD_INPUT', 'the upload chunk size is below 1 KiB');
  }

  /** `host[:port]`, as image references name the registry. */
  get host(): string {
    return this.baseUrl.host;
  }

  /** Check the registry speaks the API (GET /v2/), authenticating if asked. */
  async ping(): Promise<void> {
    const res = await this.#request('GET', '/v2/', { scope: '' });
    await this.#expect(res, [200], 'GET /v2/');
  }

  /** The size of a blob if the repository has it, else undefined. */
  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const path = `/v2/${checkRepository(repo)}/blobs/${checkDigest(digest)}`;
    const res = await this.#request('HEAD', path, { scope: pull(repo) });
    if (res.status === 404) return undefined;
    await this.#expect(res, [200], `HEAD ${path}`);
    return Number(res.headers.get('content-length') ?? '0');
  }

  /** Download a blob, refusing more than `maxBytes` or bytes that do not hash to `digest`. */
  async getBlob(repo: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    const path = `/v2/${checkRepository(repo)}/blobs/${checkDigest(digest)}`;
    const res = await this.#request('GET', path, { scope: pull(repo), followRedirects: true });
    await this.#expect(res, [200], `GET ${path}`);
    const bytes = await readLimited(res, maxBytes, path);
    if (`sha256:${sha256Hex(bytes)}` !== digest) {
      throw regError(`the registry returned a blob that does not match ${digest}`, path);
    }
    return bytes;
  }

  /**
   * Upload a blob unless the repository has it already: monolithic up to the chunk size, in
   * chunks above it.
   */
  async pushBlob(
    repo: string,
    bytes: Uint8Array,
    mediaType = 'application/octet-stream',
  ): Promise<Descriptor> {
    const digest = `sha256:${sha256Hex(bytes)}`;
    const descriptor = { mediaType, digest, size: bytes.byteLength };
    if ((await this.blobSize(repo, digest)) !== undefined) return descriptor;
    let location = await this.#startUpload(repo);
    const where = `/v2/${repo}/blobs/uploads/`;
    if (bytes.byteLength <= this.#chunkSize) {
      const res = await this.#request('PUT', withDigest(location, digest), {
        scope: push(repo),
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      await this.#expect(res, [201], `PUT ${where}`);
      return descriptor;
    }
    for (let off = 0; off < bytes.byteLength; off += this.#chunkSize) {
      const chunk = bytes.subarray(off, Math.min(off + this.#chunkSize, bytes.byteLength));
      const res = await this.#request('PATCH', location, {
        scope: push(repo),
        body: chunk,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${off}-${off + chunk.byteLength - 1}`,
        },
      });
      await this.#expect(res, [202], `PATCH ${where}`);
      location = this.#location(res, where);
    }
    const res = await this.#request('PUT', withDigest(location, digest), { scope: push(repo) });
    await this.#expect(res, [201], `PUT ${where}`);
    return descriptor;
  }

  /**
   * Mount a blob from another repository of the same registry. Returns false when the registry
   * did not mount it (it then started an ordinary upload, which is cancelled).
   */
  async mountBlob(repo: string, digest: string, from: string): Promise<boolean> {
    const path = `/v2/${checkRepository(repo)}/blobs/uploads/?mount=${encodeURIComponent(checkDigest(digest))}&from=${encodeURIComponent(checkRepository(from))}`;
    const res = await this.#request('POST', path, { scope: `${push(repo)} ${pull(from)}` });
    if (res.status === 201) {
      await res.body?.cancel();
      return true;
    }
    await this.#expect(res, [202], `POST /v2/${repo}/blobs/uploads/?mount`);
    const location = this.#location(res, path);
    const cancel = await this.#request('DELETE', location, { scope: push(repo) });
    await cancel.body?.cancel();
    return false;
  }

  /** Put a manifest under a tag or its digest; returns its descriptor and whether the registry processed its subject. */
  async putManifest(
    repo: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
  ): Promise<{ descriptor: Descriptor; subjectAccepted: boolean }> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkReference(reference)}`;
    const res = await this.#request('PUT', path, {
      scope: push(repo),
      body: bytes,
      headers: { 'content-type': mediaType },
    });
    await this.#expect(res, [201], `PUT ${path}`);
    const digest = `sha256:${sha256Hex(bytes)}`;
    const said = res.headers.get('docker-content-digest');
    if (said !== null && said !== digest) {
      throw regError(`the registry stored the manifest as ${said}, not ${digest}`, path);
    }
    return {
      descriptor: { mediaType, digest, size: bytes.byteLength },
      subjectAccepted: res.headers.get('oci-subject') !== null,
    };
  }

  /** Fetch a manifest; when fetched by digest, the bytes must hash to it. Undefined when absent. */
  async getManifest(
    repo: string,
    reference: string,
  ): Promise<{ bytes: Uint8Array; mediaType: string; digest: string } | undefined> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkReference(reference)}`;
    const res = await this.#request('GET', path, { scope: pull(repo), headers: { accept: MANIFEST_ACCEPT } });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    await this.#expect(res, [200], `GET ${path}`);
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, path);
    const digest = `sha256:${sha256Hex(bytes)}`;
    if (DIGEST_RE.test(reference) && digest !== reference) {
      throw regError(`the registry returned a manifest that does not match ${reference}`, path);
    }
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    return { bytes, mediaType, digest };
  }

  /** Whether a manifest exists, and its digest. */
  async manifestDigest(repo: string, reference: string): Promise<string | undefined> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkReference(reference)}`;
    const res = await this.#request('HEAD', path, {
      scope: pull(repo),
      headers: { accept: MANIFEST_ACCEPT },
    });
    if (res.status === 404) return undefined;
    await this.#expect(res, [200], `HEAD ${path}`);
    return res.headers.get('docker-content-digest') ?? undefined;
  }

  /** Delete a manifest by digest (the registry must allow deletes). */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkDigest(digest)}`;
    const res = await this.#request('DELETE', path, { scope: `repository:${repo}:delete` });
    await this.#expect(res, [202], `DELETE ${path}`);
  }

  /** All tags of a repository, following `Link` pagination. */
  async listTags(repo: string): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${checkRepository(repo)}/tags/list?n=1000`;
    for (let page = 0; path !== undefined && page < 1000; page++) {
      const res = await this.#request('GET', path, { scope: pull(repo) });
      if (res.status === 404) {
        await res.body?.cancel();
        return tags;
      }
      await this.#expect(res, [200], `GET /v2/${repo}/tags/list`);
      const body = parseJson(await readLimited(res, MAX_MANIFEST_BYTES, path), path) as { tags?: unknown };
      if (body.tags !== null && body.tags !== undefined) {
        if (!Array.isArray(body.tags) || !body.tags.every((t) => typeof t === 'string')) {
          throw regError('the tag list is malformed', path);
        }
        tags.push(...(body.tags as string[]));
      }
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1];
      path = next === undefined ? undefined : sameOriginPath(this.baseUrl, next, path);
    }
    return tags;
  }

  /**
   * The referrers of a manifest: from the referrers API, or, when the registry lacks it (404),
   * from the fallback index tagged `sha256-<hex>`.
   */
  async referrers(repo: string, digest: string): Promise<ReferrersResult> {
    const path = `/v2/${checkRepository(repo)}/referrers/${checkDigest(digest)}`;
    const res = await this.#request('GET', path, { scope: pull(repo), headers: { accept: OCI_INDEX } });
    const type = (res.headers.get('content-type') ?? '').split(';')[0]?.trim();
    if (res.status === 200 && type === OCI_INDEX) {
      const index = parseIndex(await readLimited(res, MAX_MANIFEST_BYTES, path), path);
      return { manifests: index.manifests, source: 'api' };
    }
    if (res.status !== 404 && res.status !== 200) await this.#expect(res, [200, 404], `GET ${path}`);
    await res.body?.cancel();
    const fallback = await this.getManifest(repo, fallbackTag(digest));
    if (fallback === undefined) return { manifests: [], source: 'tag' };
    return {
      manifests: parseIndex(fallback.bytes, `${repo}:${fallbackTag(digest)}`).manifests,
      source: 'tag',
    };
  }

  /**
   * Push a referrer manifest (one whose `subject` is `subjectDigest`). When the registry does not
   * say it processed the subject, the fallback index `sha256-<hex>` is updated as the
   * distribution specification prescribes.
   */
  async pushReferrer(
    repo: string,
    subjectDigest: string,
    manifest: Uint8Array,
    artifactType: string,
    annotations?: Record<string, string>,
  ): Promise<Descriptor> {
    const digest = `sha256:${sha256Hex(manifest)}`;
    const { descriptor, subjectAccepted } = await this.putManifest(repo, digest, manifest, OCI_MANIFEST);
    const entry: Descriptor = {
      ...descriptor,
      artifactType,
      ...(annotations === undefined ? {} : { annotations }),
    };
    if (subjectAccepted) return entry;
    const tag = fallbackTag(subjectDigest);
    const existing = await this.getManifest(repo, tag);
    const manifests = existing === undefined ? [] : parseIndex(existing.bytes, `${repo}:${tag}`).manifests;
    if (!manifests.some((m) => m.digest === digest)) {
      manifests.push(entry);
      const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
      await this.putManifest(repo, tag, new TextEncoder().encode(JSON.stringify(index)), OCI_INDEX);
    }
    return entry;
  }

  async #startUpload(repo: string): Promise<string> {
    const path = `/v2/${checkRepository(repo)}/blobs/uploads/`;
    const res = await this.#request('POST', path, { scope: push(repo) });
    await this.#expect(res, [202], `POST ${path}`);
    return this.#location(res, path);
  }

  /** An upload location; it must stay on the registry's origin, since our credentials go there. */
  #location(res: Response, where: string): string {
    const loc = res.headers.get('location');
    if (loc === null) throw regError('the registry gave no upload location', where);
    return sameOriginPath(this.baseUrl, loc, where);
  }

  async #expect(res: Response, ok: number[], what: string): Promise<void> {
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
      where: this.baseUrl.origin,
    });
  }

  /** One request, authenticated as the last challenge asked; on a 401, answer its challenge once. */
  async #request(
    method: string,
    pathOrUrl: string,
    options: {
      scope: string;
      body?: Uint8Array;
      headers?: Record<string, string>;
      followRedirects?: boolean;
    },
  ): Promise<Response> {
    const url = new URL(pathOrUrl, this.baseUrl);
    const send = async (auth: string | undefined): Promise<Response> => {
      const headers: Record<string, string> = { ...options.headers };
      if (auth !== undefined) headers.authorization = auth;
      try {
        let res = await this.#fetch(url, {
          method,
          headers,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.#timeoutMs),
          ...(options.body === undefined ? {} : { body: options.body }),
        });
        // Blob downloads may redirect to storage; credentials stay with the registry.
        for (
          let hops = 0;
          options.followRedirects === true && res.status >= 301 && res.status <= 308 && hops < 3;
          hops++
        ) {
          const to = res.headers.get('location');
          if (to === null) break;
          await res.body?.cancel();
          const next = new URL(to, url);
          if (next.protocol !== 'https:' && !(next.protocol === 'http:' && isLoopback(next.hostname))) {
            throw regError(`refusing a redirect to ${next.origin}`, url.pathname);
          }
          res = await this.#fetch(next, {
            method,
            redirect: 'manual',
            signal: AbortSignal.timeout(this.#timeoutMs),
            ...(next.origin === this.baseUrl.origin ? { headers } : {}),
          });
        }
        return res;
      } catch (e) {
        if (e instanceof GatehouseError) throw e;
        throw new GatehouseError('UNREACHABLE', `cannot reach the registry: ${(e as Error).message}`, {
          where: `${method} ${url.origin}${url.pathname}`,
          cause: e,
        });
      }
    };
    const res = await send(this.#authorization(options.scope));
    if (res.status !== 401) return res;
    const header = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel();
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    let auth: string;
    if (bearer !== undefined) {
      const scope = mergeScopes(bearer.params.scope, options.scope);
      auth = `Bearer ${await this.#fetchToken(bearer.params, scope)}`;
      this.#tokens.set(options.scope, auth);
    } else if (basic !== undefined) {
      auth = this.#basicHeader(this.baseUrl);
      this.#basic = true;
    } else {
      throw new GatehouseError(
        'REGISTRY_AUTH_FAILED',
        `the registry asked for an unsupported authentication '${header.slice(0, 80)}'`,
        {
          where: this.baseUrl.origin,
        },
      );
    }
    return send(auth);
  }

  #authorization(scope: string): string | undefined {
    if (this.#basic) return this.#basicHeader(this.baseUrl);
    return this.#tokens.get(scope);
  }

  #basicHeader(to: URL): string {
    if (this.#credentials === undefined) {
      throw new GatehouseError(
        'REGISTRY_AUTH_FAILED',
        'the registry requires credentials and none are configured',
        {
          where: this.baseUrl.origin,
        },
      );
    }
    // Never send a password in clear over the network.
    if (to.protocol !== 'https:' && !isLoopback(to.hostname)) {
      throw new GatehouseError(
        'REGISTRY_AUTH_FAILED',
        `refusing to send credentials over plain HTTP to ${to.origin}`,
      );
    }
    const { username, password } = this.#credentials;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** The token-service flow: GET realm?service=…&scope=…, with Basic credentials when we have them. */
  async #fetchToken(params: Record<string, string>, scope: string): Promise<string> {
    const realm = params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch (e) {
      throw new GatehouseError('REGISTRY_AUTH_FAILED', 'the bearer challenge names no valid token realm', {
        where: this.baseUrl.origin,
        cause: e,
      });
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new GatehouseError('REGISTRY_AUTH_FAILED', `refusing the token realm ${url.origin}: not https`);
    }
    if (params.service !== undefined) url.searchParams.set('service', params.service);
    for (const s of scope.split(' ').filter((x) => x !== '')) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (this.#credentials !== undefined) headers.authorization = this.#basicHeader(url);
    let res: Response;
    try {
      res = await this.#fetch(url, {
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `cannot reach the token service: ${(e as Error).message}`, {
        where: url.origin,
        cause: e,
      });
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new GatehouseError('REGISTRY_AUTH_FAILED', `the token service answered ${res.status}`, {
        where: url.origin,
      });
    }
    const body = parseJson(await readLimited(res, 64 * 1024, url.origin), url.origin) as {
      token?: unknown;
      access_token?: unknown;
    };
    const token = typeof body.token === 'string' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '' || !/^[\x21-\x7e]+$/.test(token)) {
      throw new GatehouseError('REGISTRY_AUTH_FAILED', 'the token service returned no usable token', {
        where: url.origin,
      });
    }
    return token;
  }
}

/** The referrers fallback tag of a digest: `sha256-<hex>`. */
export function fallbackTag(digest: string): string {
  return checkDigest(digest).replace(':', '-');
}

function pull(repo: string): string {
  return `repository:${repo}:pull`;
}

function push(repo: string): string {
  return `repository:${repo}:pull,push`;
}

/** Scopes asked for: the challenge's, plus the ones this request needs. */
function mergeScopes(fromChallenge: string | undefined, needed: string): string {
  const all = new Set([...(fromChallenge ?? '').split(' '), ...needed.split(' ')].filter((s) => s !== ''));
  return [...all].join(' ');
}

function withDigest(location: string, digest: string): string {
  const url = new URL(location, 'http://placeholder');
  url.searchParams.set('digest', digest);
  return `${url.pathname}${url.search}`;
}

function sameOriginPath(base: URL, location: string, where: string): string {
  const url = new URL(location, base);
  if (url.origin !== base.origin)
    throw regError(`the registry pointed to another origin ${url.origin}`, where);
  return `${url.pathname}${url.search}`;
}

async function readLimited(res: Response, max: number, where: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? 'NaN');
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel();
    throw regError(`the response is ${declared} bytes, more than the ${max} allowed`, where);
  }
  if (res.body === null) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.byteLength;
    if (total > max) {
      await res.body.cancel().catch(() => {});
      throw regError(`the response is more than the ${max} bytes allowed`, where);
    }
    parts.push(chunk);
  }
  return new Uint8Array(Buffer.concat(parts));
}

function parseJson(bytes: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw regError('the registry returned malformed JSON', where, e);
  }
}

function isDescriptor(d: unknown): d is Descriptor {
  if (typeof d !== 'object' || d === null) return false;
  const x = d as Record<string, unknown>;
  return (
    typeof x.mediaType === 'string' &&
    typeof x.digest === 'string' &&
    DIGEST_RE.test(x.digest) &&
    typeof x.size === 'number' &&
    Number.isSafeInteger(x.size) &&
    x.size >= 0 &&
    (x.artifactType === undefined || typeof x.artifactType === 'string') &&
    (x.annotations === undefined ||
      (typeof x.annotations === 'object' &&
        x.annotations !== null &&
        Object.values(x.annotations).every((v) => typeof v === 'string')))
  );
}

/** Parse an image index, keeping only well-formed descriptors' fields. @throws REGISTRY_ERROR */
export function parseIndex(bytes: Uint8Array, where: string): { manifests: Descriptor[] } {
  const raw = parseJson(bytes, where) as { schemaVersion?: unknown; manifests?: unknown };
  if (raw === null || typeof raw !== 'object' || raw.schemaVersion !== 2 || !Array.isArray(raw.manifests)) {
    throw regError('the image index is malformed', where);
  }
  if (!raw.manifests.every(isDescriptor)) throw regError('the image index has a malformed descriptor', where);
  return { manifests: raw.manifests as Descriptor[] };
}

export interface ImageManifest {
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** Parse an image manifest. @throws REGISTRY_ERROR */
export function parseImageManifest(bytes: Uint8Array, where: string): ImageManifest {
  const raw = parseJson(bytes, where) as Record<string, unknown> | null;
  if (
    raw === null ||
    typeof raw !== 'object' ||
    raw.schemaVersion !== 2 ||
    !isDescriptor(raw.config) ||
    !Array.isArray(raw.layers) ||
    !raw.layers.every(isDescriptor) ||
    (raw.subject !== undefined && !isDescriptor(raw.subject)) ||
    (raw.artifactType !== undefined && typeof raw.artifactType !== 'string') ||
    (raw.mediaType !== undefined && raw.mediaType !== OCI_MANIFEST && raw.mediaType !== DOCKER_MANIFEST)
  ) {
    throw regError('the image manifest is malformed', where);
  }
  return raw as unknown as ImageManifest;
}
