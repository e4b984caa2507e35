import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
/**
 * A client of the OCI distribution API (https://github.com/opencontainers/distribution-spec, v1.1):
 * blobs (existence, cross-repository mount, monolithic and chunked upload, download), manifests,
 * tags, and referrers with the tag-schema fallback for registries without the referrers API.
 * Authentication (`registry-auth.ts`) follows the registry's challenge: anonymous, HTTP Basic, or a
 * bearer token from the token service named in `WWW-Authenticate`.
 */
import { GatehouseError } from '../common/errors.ts';
import { writeVerified } from './blob-file.ts';
import {
  type Descriptor,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  imageIndex,
  jsonBytes,
  OCI_INDEX,
  OCI_MANIFEST,
  parseIndex,
  referrerDescriptor,
} from './oci-format.ts';
import {
  checkDigest,
  checkReference,
  checkRepository,
  digestOf,
  fallbackTag,
  isDigest,
} from './oci-names.ts';
import {
  deleteScope,
  pullScope,
  pushScope,
  RegistryAuth,
  type RegistryCredentials,
} from './registry-auth.ts';
import {
  expectStatus,
  parseJson,
  type RegistryTransport,
  readLimited,
  registryError,
  sameOriginPath,
  sendRequest,
} from './registry-http.ts';

const MANIFEST_ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(', ');

/** Registries commonly refuse manifests above 4 MiB; we refuse to read more than that. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

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

/** What one request needs beyond its method and path. */
interface RequestOptions {
  scope: string;
  body?: Uint8Array;
  headers?: Record<string, string>;
  followRedirects?: boolean;
}

/** The registry's base URL: http(s), with no credentials and no path. @throws GatehouseError BAD_INPUT */
function parseBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', `'${baseUrl}' is not a registry URL`, { cause: e });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new GatehouseError('BAD_INPUT', `registry URL '${baseUrl}' must be http or https`);
  }
  if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new GatehouseError('BAD_INPUT', `registry URL '${url.origin}' must have no credentials or path`);
  }
  return url;
}

/**
 * An OCI distribution client for one registry. Tokens are cached per scope in memory only, and
 * credentials are never sent to another origin than the registry's or its token service's, nor
 * over plain HTTP to anything but loopback.
 */
export class OciDistributionClient {
  readonly baseUrl: URL;
  readonly #chunkSize: number;
  readonly #transport: RegistryTransport;
  readonly #auth: RegistryAuth;

  constructor(options: OciClientOptions) {
    const url = parseBaseUrl(options.baseUrl);
    this.baseUrl = url;
    this.#chunkSize = options.chunkSize ?? 8 * 1024 * 1024;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const fetchFn = options.fetch ?? fetch;
    this.#transport = { registry: url, timeoutMs, fetch: fetchFn };
    this.#auth = new RegistryAuth({
      registry: url,
      credentials: options.credentials,
      timeoutMs,
      fetch: fetchFn,
    });
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
    const res = await this.#request('HEAD', path, { scope: pullScope(repo) });
    if (res.status === 404) return undefined;
    await this.#expect(res, [200], `HEAD ${path}`);
    return Number(res.headers.get('content-length') ?? '0');
  }

  /** Download a blob, refusing more than `maxBytes` or bytes that do not hash to `digest`. */
  async getBlob(repo: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    const path = `/v2/${checkRepository(repo)}/blobs/${checkDigest(digest)}`;
    const res = await this.#request('GET', path, { scope: pullScope(repo), followRedirects: true });
    await this.#expect(res, [200], `GET ${path}`);
    const bytes = await readLimited(res, maxBytes, path);
    if (digestOf(bytes) !== digest) {
      throw registryError(`the registry returned a blob that does not match ${digest}`, path);
    }
    return bytes;
  }

  /**
   * Download a blob into a file as a stream, refusing more than `maxBytes` or bytes that do not
   * hash to `digest`. @returns the size written
   */
  async getBlobToFile(repo: string, digest: string, dest: string, maxBytes: number): Promise<number> {
    const path = `/v2/${checkRepository(repo)}/blobs/${checkDigest(digest)}`;
    const res = await this.#request('GET', path, { scope: pullScope(repo), followRedirects: true });
    await this.#expect(res, [200], `GET ${path}`);
    if (res.body === null) return writeVerified(Readable.from([]), dest, digest, maxBytes);
    return writeVerified(res.body, dest, digest, maxBytes);
  }

  /**
   * Upload an artifact file as a blob unless the repository has it: read from disk chunk by chunk
   * (never whole), hashed on the way, and the upload abandoned if the bytes are not `descriptor`'s.
   */
  async pushBlobFile(repo: string, path: string, descriptor: Descriptor): Promise<Descriptor> {
    if ((await this.blobSize(repo, descriptor.digest)) !== undefined) return descriptor;
    const where = `/v2/${repo}/blobs/uploads/`;
    let location = await this.#startUpload(repo);
    const hash = createHash('sha256');
    const handle = await open(path, 'r');
    try {
      const buffer = Buffer.alloc(this.#chunkSize);
      for (let off = 0; ; ) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, off);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        location = await this.#patchChunk(repo, location, chunk, off, where);
        off += bytesRead;
      }
    } finally {
      await handle.close();
    }
    if (`sha256:${hash.digest('hex')}` !== descriptor.digest) {
      const cancel = await this.#request('DELETE', location, { scope: pushScope(repo) });
      await cancel.body?.cancel();
      throw new GatehouseError('BAD_INPUT', `artifact file ${path} does not hash to ${descriptor.digest}`, {
        where,
      });
    }
    const res = await this.#request('PUT', withDigest(location, descriptor.digest), {
      scope: pushScope(repo),
    });
    await this.#expect(res, [201], `PUT ${where}`);
    return descriptor;
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
    const digest = digestOf(bytes);
    const descriptor = { mediaType, digest, size: bytes.byteLength };
    if ((await this.blobSize(repo, digest)) !== undefined) return descriptor;
    let location = await this.#startUpload(repo);
    const where = `/v2/${repo}/blobs/uploads/`;
    if (bytes.byteLength <= this.#chunkSize) {
      const res = await this.#request('PUT', withDigest(location, digest), {
        scope: pushScope(repo),
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      await this.#expect(res, [201], `PUT ${where}`);
      return descriptor;
    }
    location = await this.#uploadChunks(repo, location, bytes, where);
    const res = await this.#request('PUT', withDigest(location, digest), { scope: pushScope(repo) });
    await this.#expect(res, [201], `PUT ${where}`);
    return descriptor;
  }

  /**
   * Mount a blob from another repository of the same registry. Returns false when the registry
   * did not mount it (it then started an ordinary upload, which is cancelled).
   */
  async mountBlob(repo: string, digest: string, from: string): Promise<boolean> {
    const path = `/v2/${checkRepository(repo)}/blobs/uploads/?mount=${encodeURIComponent(checkDigest(digest))}&from=${encodeURIComponent(checkRepository(from))}`;
    const res = await this.#request('POST', path, { scope: `${pushScope(repo)} ${pullScope(from)}` });
    if (res.status === 201) {
      await res.body?.cancel();
      return true;
    }
    await this.#expect(res, [202], `POST /v2/${repo}/blobs/uploads/?mount`);
    const location = this.#location(res, path);
    const cancel = await this.#request('DELETE', location, { scope: pushScope(repo) });
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
      scope: pushScope(repo),
      body: bytes,
      headers: { 'content-type': mediaType },
    });
    await this.#expect(res, [201], `PUT ${path}`);
    const digest = digestOf(bytes);
    const said = res.headers.get('docker-content-digest');
    if (said !== null && said !== digest) {
      throw registryError(`the registry stored the manifest as ${said}, not ${digest}`, path);
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
    const res = await this.#request('GET', path, {
      scope: pullScope(repo),
      headers: { accept: MANIFEST_ACCEPT },
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    await this.#expect(res, [200], `GET ${path}`);
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, path);
    const digest = digestOf(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw registryError(`the registry returned a manifest that does not match ${reference}`, path);
    }
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    return { bytes, mediaType, digest };
  }

  /** Whether a manifest exists, and its digest. */
  async manifestDigest(repo: string, reference: string): Promise<string | undefined> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkReference(reference)}`;
    const res = await this.#request('HEAD', path, {
      scope: pullScope(repo),
      headers: { accept: MANIFEST_ACCEPT },
    });
    if (res.status === 404) return undefined;
    await this.#expect(res, [200], `HEAD ${path}`);
    return res.headers.get('docker-content-digest') ?? undefined;
  }

  /** Delete a manifest by digest (the registry must allow deletes). */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    const path = `/v2/${checkRepository(repo)}/manifests/${checkDigest(digest)}`;
    const res = await this.#request('DELETE', path, { scope: deleteScope(repo) });
    await this.#expect(res, [202], `DELETE ${path}`);
  }

  /** All tags of a repository, following `Link` pagination. */
  async listTags(repo: string): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${checkRepository(repo)}/tags/list?n=1000`;
    for (let page = 0; path !== undefined && page < 1000; page++) {
      const res = await this.#request('GET', path, { scope: pullScope(repo) });
      if (res.status === 404) {
        await res.body?.cancel();
        return tags;
      }
      await this.#expect(res, [200], `GET /v2/${repo}/tags/list`);
      tags.push(...parseTagList(await readLimited(res, MAX_MANIFEST_BYTES, path), path));
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
    const res = await this.#request('GET', path, { scope: pullScope(repo), headers: { accept: OCI_INDEX } });
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
    const digest = digestOf(manifest);
    const { descriptor, subjectAccepted } = await this.putManifest(repo, digest, manifest, OCI_MANIFEST);
    const entry = referrerDescriptor(descriptor, artifactType, annotations);
    if (subjectAccepted) return entry;
    const tag = fallbackTag(subjectDigest);
    const existing = await this.getManifest(repo, tag);
    const manifests = existing === undefined ? [] : parseIndex(existing.bytes, `${repo}:${tag}`).manifests;
    if (!manifests.some((m) => m.digest === digest)) {
      manifests.push(entry);
      await this.putManifest(repo, tag, jsonBytes(imageIndex(manifests)), OCI_INDEX);
    }
    return entry;
  }

  async #startUpload(repo: string): Promise<string> {
    const path = `/v2/${checkRepository(repo)}/blobs/uploads/`;
    const res = await this.#request('POST', path, { scope: pushScope(repo) });
    await this.#expect(res, [202], `POST ${path}`);
    return this.#location(res, path);
  }

  /** PATCH the bytes to an upload in chunks, each to the location the last answer gave; returns the last. */
  async #uploadChunks(repo: string, start: string, bytes: Uint8Array, where: string): Promise<string> {
    let location = start;
    for (let off = 0; off < bytes.byteLength; off += this.#chunkSize) {
      const chunk = bytes.subarray(off, Math.min(off + this.#chunkSize, bytes.byteLength));
      location = await this.#patchChunk(repo, location, chunk, off, where);
    }
    return location;
  }

  /** PATCH one chunk at offset `off`; returns the location for the next. */
  async #patchChunk(
    repo: string,
    location: string,
    chunk: Uint8Array,
    off: number,
    where: string,
  ): Promise<string> {
    const res = await this.#request('PATCH', location, {
      scope: pushScope(repo),
      body: chunk,
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${off}-${off + chunk.byteLength - 1}`,
      },
    });
    await this.#expect(res, [202], `PATCH ${where}`);
    return this.#location(res, where);
  }

  /** An upload location; it must stay on the registry's origin, since our credentials go there. */
  #location(res: Response, where: string): string {
    const loc = res.headers.get('location');
    if (loc === null) throw registryError('the registry gave no upload location', where);
    return sameOriginPath(this.baseUrl, loc, where);
  }

  #expect(res: Response, ok: number[], what: string): Promise<void> {
    return expectStatus(res, ok, what, this.baseUrl.origin);
  }

  /**
   * One request, authenticated as the last challenge asked; on a 401, answer its challenge once.
   * A read (HEAD, GET) the registry fails with a server error or 429 is tried again, twice, after a
   * short wait: a registry that is writing the same blob for a concurrent push answers 500 to a
   * HEAD of it for a moment (docker-registry's filesystem driver). Writes are never repeated here.
   */
  async #request(method: string, pathOrUrl: string, options: RequestOptions): Promise<Response> {
    const retryable = method === 'HEAD' || method === 'GET';
    for (let attempt = 0; ; attempt++) {
      const res = await this.#requestOnce(method, pathOrUrl, options);
      if (!retryable || attempt >= 2 || (res.status < 500 && res.status !== 429)) return res;
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, 50 * 4 ** attempt));
    }
  }

  async #requestOnce(method: string, pathOrUrl: string, options: RequestOptions): Promise<Response> {
    const url = new URL(pathOrUrl, this.baseUrl);
    const res = await this.#send(method, url, options, this.#auth.authorization(options.scope));
    if (res.status !== 401) return res;
    const header = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel();
    return this.#send(method, url, options, await this.#auth.answer(header, options.scope));
  }

  #send(method: string, url: URL, options: RequestOptions, auth: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (auth !== undefined) headers.authorization = auth;
    return sendRequest(this.#transport, {
      method,
      url,
      headers,
      ...(options.body === undefined ? {} : { body: options.body }),
      ...(options.followRedirects === undefined ? {} : { followRedirects: options.followRedirects }),
    });
  }
}

/** The tags of one page of a tag list (`tags` may be null for a repository without tags). */
function parseTagList(bytes: Uint8Array, where: string): string[] {
  const body = parseJson(bytes, where) as { tags?: unknown };
  if (body.tags === null || body.tags === undefined) return [];
  if (!Array.isArray(body.tags) || !body.tags.every((t) => typeof t === 'string')) {
    throw registryError('the tag list is malformed', where);
  }
  return body.tags as string[];
}

/** An upload location with the `digest` query parameter that completes the upload. */
function withDigest(location: string, digest: string): string {
  const url = new URL(location, 'http://placeholder');
  url.searchParams.set('digest', digest);
  return `${url.pathname}${url.search}`;
}
