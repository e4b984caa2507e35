import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { GatehouseError } from '../common/errors.ts';

/** One artifact fetched through the proxy, as SLSA's ResourceDescriptor wants it. */
export interface FetchedArtifact {
  /** The upstream URL it came from. */
  readonly uri: string;
  readonly digest: { readonly sha256: string };
  readonly size: number;
}

/** One refused request, for the job's record. */
export interface RefusedRequest {
  readonly method: string;
  readonly target: string;
  readonly reason: string;
}

/** Options for {@link EgressProxy}. */
export interface EgressProxyOptions {
  /**
   * Origins the fetch phase may reach, e.g. `https://registry.npmjs.org`. The sandbox asks for
   * `http://HOST[:PORT]/…` through the proxy; the proxy fetches it from the allowlisted origin over
   * that origin's scheme, so it sees and digests every byte even when upstream is TLS.
   */
  readonly allow: readonly string[];
  /** Host path of the Unix socket to listen on. */
  readonly socketPath: string;
  /** Largest total response bytes for one job (default 2 GiB). */
  readonly maxBytes?: number;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

function originKey(u: URL): string {
  return u.host.toLowerCase();
}

/**
 * The egress proxy the agent runs for a job's fetch phase: an HTTP forward proxy on a Unix socket
 * that allows only GET and HEAD to allowlisted origins, refuses CONNECT (a tunnel would hide what
 * was fetched), does not follow redirects itself (the client asks again, through the allowlist),
 * and records every artifact it passes with its SHA-256.
 */
export class EgressProxy {
  readonly socketPath: string;
  readonly #allow: Map<string, URL>;
  readonly #maxBytes: number;
  readonly #fetched = new Map<string, FetchedArtifact>();
  readonly #refused: RefusedRequest[] = [];
  #bytes = 0;
  #server: Server | undefined;

  /** @throws GatehouseError BAD_CONFIG for an allowlist entry that is not an http(s) origin */
  constructor(options: EgressProxyOptions) {
    this.socketPath = options.socketPath;
    this.#maxBytes = options.maxBytes ?? 2 * 1024 ** 3;
    this.#allow = new Map();
    for (const entry of options.allow) {
      let u: URL;
      try {
        u = new URL(entry);
      } catch (e) {
        throw new GatehouseError('BAD_CONFIG', `egress allowlist entry '${entry}' is not a URL`, {
          cause: e,
        });
      }
      if (
        (u.protocol !== 'https:' && u.protocol !== 'http:') ||
        u.pathname !== '/' ||
        u.search !== '' ||
        u.username !== ''
      ) {
        throw new GatehouseError('BAD_CONFIG', `egress allowlist entry '${entry}' must be an http(s) origin`);
      }
      this.#allow.set(originKey(u), u);
    }
  }

  /** Everything fetched so far, by URI. */
  fetched(): FetchedArtifact[] {
    return [...this.#fetched.values()].sort((a, b) => (a.uri < b.uri ? -1 : 1));
  }

  refused(): RefusedRequest[] {
    return [...this.#refused];
  }

  async start(): Promise<void> {
    await rm(this.socketPath, { force: true });
    const server = createServer((req, res) => this.#handle(req, res));
    server.on('connect', (req: IncomingMessage, socket) => {
      this.#refuse(
        req.method ?? 'CONNECT',
        req.url ?? '',
        'tunnels (CONNECT) are refused: ask for http:// URLs, the proxy fetches upstream over TLS itself',
      );
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    server.on('upgrade', (_req, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    await rm(this.socketPath, { force: true });
  }

  #refuse(method: string, target: string, reason: string): void {
    if (this.#refused.length < 1000) this.#refused.push({ method, target: target.slice(0, 512), reason });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? '';
    const target = req.url ?? '';
    const deny = (status: number, reason: string): void => {
      this.#refuse(method, target, reason);
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`gatehouse egress proxy: ${reason}\n`);
    };
    if (method !== 'GET' && method !== 'HEAD') {
      deny(405, `method ${method} is not allowed (GET and HEAD only)`);
      return;
    }
    let requested: URL;
    try {
      requested = new URL(target);
    } catch {
      deny(400, 'not a proxy request (absolute http:// URL expected)');
      return;
    }
    if (requested.protocol !== 'http:') {
      deny(400, `scheme ${requested.protocol} is not proxied`);
      return;
    }
    const origin = this.#allow.get(originKey(requested));
    if (origin === undefined) {
      deny(403, `host ${requested.host} is not on the egress allowlist`);
      return;
    }
    const upstream = new URL(`${requested.pathname}${requested.search}`, origin);
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) headers[k] = v;
    }
    const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
    const out = send(upstream, { method, headers }, (up) => {
      const status = up.statusCode ?? 502;
      const hash = createHash('sha256');
      let size = 0;
      const resHeaders: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) {
        if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) resHeaders[k] = v;
      }
      res.writeHead(status, resHeaders);
      up.on('data', (chunk: Buffer) => {
        size += chunk.length;
        this.#bytes += chunk.length;
        if (this.#bytes > this.#maxBytes) {
          this.#refuse(method, target, `the job's fetch budget of ${this.#maxBytes} bytes is used up`);
          up.destroy();
          res.destroy();
          return;
        }
        hash.update(chunk);
        res.write(chunk);
      });
      up.on('end', () => {
        res.end();
        // Only complete, successful bodies are artifacts; redirects and errors are not.
        if (method === 'GET' && status >= 200 && status < 300) {
          this.#fetched.set(upstream.href, {
            uri: upstream.href,
            digest: { sha256: hash.digest('hex') },
            size,
          });
        }
      });
      up.on('error', () => res.destroy());
    });
    out.on('error', (e) => {
      this.#refuse(method, target, `upstream failed: ${e.message}`);
      if (!res.headersSent) res.writeHead(502, { connection: 'close' });
      res.end();
    });
    out.end();
  }
}
