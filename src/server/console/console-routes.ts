/**
 * The web console at `/console`: static pages (src/server/console/assets) and the JSON they read,
 * behind a viewer login. The page holds no secret: the viewer token is typed into its login form
 * and traded for an HttpOnly, SameSite=Strict session cookie (or sent as a bearer token by
 * scripts). The one write, a triage act, carries the security role's signature, made outside the
 * server (WebCrypto in the page with a key the person loads, or `gatehouse triage`); the server
 * only checks and applies it, like POST /v1/triage.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { extname, join } from 'node:path';
import { z } from 'zod';
import { GatehouseError } from '../../common/errors.ts';
import type { EmbeddedControlPlane } from '../../control-plane/embedded-control-plane.ts';
import type { HeldBuild } from '../../gate/held-build.ts';
import type { ConsoleOidcConfig } from '../../home/config.ts';
import type { PolicyService } from '../../policy/policy-service.ts';
import type { ArtifactRegistry } from '../../registry/registry.ts';
import { environmentComponents } from '../../sbom/environment.ts';
import type { Component } from '../../sbom/model.ts';
import { SLSA_PROVENANCE_V1 } from '../../signing/intoto.ts';
import type { DecisionRecord, Store } from '../../store/store.ts';
import { matchVulnerabilities } from '../../vuln/match.ts';
import { projectPurl, vexFor } from '../../vuln/vex.ts';
import { type Reply, type Route, readJson, route } from '../http-server.ts';
import { OIDC_COOKIE, OidcLogin } from './oidc-login.ts';
import { seedMetricSeries } from './series.ts';
import {
  type ConsoleRole,
  type ConsoleSession,
  cookieValue,
  SESSION_COOKIE,
  SESSION_SECONDS,
  SessionKeeper,
} from './session.ts';

const ASSETS_DIR = join(import.meta.dirname, 'assets');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** No inline script or style, nothing from elsewhere, no framing. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** The headers of every console answer. */
export function securityHeaders(cache: 'no-store' | 'no-cache'): Record<string, string> {
  return {
    'content-security-policy': CONSOLE_CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy': 'camera=(), microphone=(), geolocation=(), usb=()',
    'cache-control': cache,
  };
}

const loginBody = z.strictObject({ token: z.string().min(1).max(512) });
const triageBody = z.strictObject({
  decisionId: z.string().min(1).max(200),
  action: z.enum(['release', 'reject']),
  reason: z.string().min(1).max(4096),
  signature: z.string().min(1).max(1024),
  keyId: z.string().regex(/^[0-9a-f]{64}$/),
});

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `request body ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return r.data;
}

function limitOf(url: URL, fallback: number): number {
  const v = url.searchParams.get('limit');
  if (v === null) return fallback;
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1)
    throw new GatehouseError('BAD_INPUT', 'query parameter limit must be a whole number from 1');
  return Math.min(Number(v), 1000);
}

/** The static files, read once: only these names are ever served. */
function loadAssets(): Map<string, { bytes: Buffer; type: string }> {
  const out = new Map<string, { bytes: Buffer; type: string }>();
  for (const name of readdirSync(ASSETS_DIR)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) out.set(name, { bytes: readFileSync(join(ASSETS_DIR, name)), type });
  }
  return out;
}

export interface ConsoleOptions {
  controlPlane: EmbeddedControlPlane;
  store: Store;
  /** The vulnerability index and VEX statements an artifact's findings are read against. */
  policies: PolicyService;
  /** Where promoted artifacts and their bundles are: a job's signed provenance is read there. */
  registry: ArtifactRegistry;
  /** The static viewer token viewers log in with. */
  viewerToken: string;
  /** The static token that logs in as a triager, if one is configured. */
  triagerToken?: string;
  /** The OIDC issuer viewers and triagers may log in with, if one is configured. */
  oidc?: { config: ConsoleOidcConfig; clientSecret?: string };
}

/** Who is asking: a session (cookie) or a bearer token, and with which role. */
type Caller = { role: ConsoleRole; session?: ConsoleSession };

/** The console's routes, to hand to `createApiServer({ extraRoutes })`. */
export function consoleRoutes(options: ConsoleOptions): Route[] {
  const { controlPlane: cp, store, policies } = options;
  const sessions = new SessionKeeper(options.viewerToken, options.triagerToken);
  const oidcOptions = options.oidc;
  const oidc =
    oidcOptions === undefined
      ? undefined
      : new OidcLogin(
          oidcOptions.config,
          sessions.derivedKey('oidc flow'),
          oidcOptions.clientSecret === undefined ? {} : { clientSecret: oidcOptions.clientSecret },
        );
  const assets = loadAssets();

  const json = (body: unknown, status = 200, headers: Record<string, string | string[]> = {}): Reply => ({
    status,
    text: JSON.stringify(body),
    contentType: 'application/json',
    headers: { ...securityHeaders('no-store'), ...headers },
  });
  const asset = (name: string): Reply => {
    const a = assets.get(name);
    if (a === undefined) throw new GatehouseError('NOT_FOUND', `no console asset ${name.slice(0, 80)}`);
    return { bytes: a.bytes, contentType: a.type, headers: securityHeaders('no-cache') };
  };

  /** A cross-site request is refused before anything else is looked at. */
  function sameOrigin(req: IncomingMessage): void {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      throw new GatehouseError('UNAUTHORIZED', 'cross-site requests to the console are refused');
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const host = req.headers.host ?? '';
      if (origin !== `http://${host}` && origin !== `https://${host}`)
        throw new GatehouseError('UNAUTHORIZED', 'the request comes from another origin');
    }
  }

  function bearer(req: IncomingMessage): string | undefined {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return m?.[1];
  }

  /**
   * The caller's session (cookie), or a bearer viewer or triager token.
   * @throws GatehouseError UNAUTHORIZED
   */
  function viewer(req: IncomingMessage): Caller {
    const b = bearer(req);
    if (b !== undefined) {
      const role = sessions.roleOfToken(b);
      if (role !== undefined) return { role };
      throw new GatehouseError('UNAUTHORIZED', 'the bearer token is not a console token');
    }
    const s = sessions.check(cookieValue(req.headers.cookie, SESSION_COOKIE));
    if (s === undefined) throw new GatehouseError('UNAUTHORIZED', 'log in to the console first');
    return { role: s.role, session: s };
  }

  /**
   * A triage write: from this origin, as JSON, either with a bearer token (never sent by a
   * browser on its own) or with the session's CSRF token echoed in a header, and by a triager.
   * Viewers read; the security signature on the act still decides whether it is applied.
   * @throws GatehouseError UNAUTHORIZED (not logged in, CSRF), FORBIDDEN (a viewer)
   */
  function triager(req: IncomingMessage): void {
    sameOrigin(req);
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? ''))
      throw new GatehouseError('BAD_INPUT', 'console writes are JSON');
    const who = viewer(req);
    if (who.session !== undefined) {
      const given = req.headers['x-gatehouse-csrf'];
      if (typeof given !== 'string' || given !== who.session.csrf)
        throw new GatehouseError('UNAUTHORIZED', 'the CSRF token is missing or wrong');
    }
    if (who.role !== 'triager')
      throw new GatehouseError('FORBIDDEN', 'a viewer may read the console, not submit triage acts');
  }

  const sessionCookie = (req: IncomingMessage, cookie: string): string => {
    // Secure when the request reached us over TLS (a terminating proxy says so).
    const secure = req.headers['x-forwarded-proto'] === 'https' ? '; Secure' : '';
    return `${SESSION_COOKIE}=${cookie}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${SESSION_SECONDS}${secure}`;
  };

  /** The job's signed provenance bundle, when the job's artifact was promoted (allowed or released). */
  async function provenanceBundle(jobId: string, project: string): Promise<unknown> {
    const placed = await options.registry.inspect('promoted', project, jobId);
    const ref = placed?.referrers.find(
      (r) => r.annotations['dev.sigstore.bundle.predicateType'] === SLSA_PROVENANCE_V1,
    );
    if (ref === undefined) return null;
    const bytes = await options.registry.attachment('promoted', project, ref.digest);
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
  }

  const read =
    (handler: (req: IncomingMessage, p: Record<string, string>, url: URL) => Promise<unknown>) =>
    async (req: IncomingMessage, p: Record<string, string>, url: URL): Promise<Reply> => {
      viewer(req);
      return json(await handler(req, p, url));
    };

  async function triageState(): Promise<
    Map<string, { action: string; createdAt: string; logIndex: number }>
  > {
    const all = await store.policies.listTriage({ limit: 100_000 });
    return new Map(
      all.map((t) => [t.decisionId, { action: t.action, createdAt: t.createdAt, logIndex: t.logIndex }]),
    );
  }

  async function withTriage(decisions: DecisionRecord[]) {
    const triaged = await triageState();
    return decisions.map((d) => ({ ...d, triage: triaged.get(d.id) ?? null }));
  }

  return [
    route('GET', '/console', false, async () => ({
      status: 302,
      text: '',
      headers: { location: '/console/', ...securityHeaders('no-store') },
    })),
    route('GET', '/console/', false, async () => asset('index.html')),
    route('GET', '/console/assets/:name', false, async (_r, p) => asset(p.name ?? '')),
    route('POST', '/console/api/login', false, async (req) => {
      sameOrigin(req);
      const body = parse(loginBody, await readJson(req));
      const role = sessions.roleOfToken(body.token);
      if (role === undefined) throw new GatehouseError('UNAUTHORIZED', 'that is not a console token');
      const { cookie, session } = sessions.issue(Date.now(), { role, who: `${role} token` });
      return json(session, 200, { 'set-cookie': sessionCookie(req, cookie) });
    }),
    // OIDC: a top-level navigation to the issuer and back, so these answer with redirects.
    route('GET', '/console/oidc/login', false, async (req) => {
      if (oidc === undefined)
        throw new GatehouseError('NOT_FOUND', 'no OIDC issuer is configured for the console');
      sameOrigin(req);
      const proto = req.headers['x-forwarded-proto'] === 'https' ? 'https' : 'http';
      const { location, cookie } = await oidc.start(
        `${proto}://${req.headers.host ?? ''}/console/oidc/callback`,
      );
      const secure = proto === 'https' ? '; Secure' : '';
      return {
        status: 302,
        text: '',
        headers: {
          ...securityHeaders('no-store'),
          location,
          // Lax, not Strict: the issuer's redirect back is a cross-site navigation.
          'set-cookie': `${OIDC_COOKIE}=${cookie}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=600${secure}`,
        },
      };
    }),
    route('GET', '/console/oidc/callback', false, async (req, _p, url) => {
      if (oidc === undefined)
        throw new GatehouseError('NOT_FOUND', 'no OIDC issuer is configured for the console');
      const clear = `${OIDC_COOKIE}=; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=0`;
      const who = await oidc.finish(url.searchParams, cookieValue(req.headers.cookie, OIDC_COOKIE));
      const { cookie } = sessions.issue(Date.now(), { role: who.role, who: who.who });
      return {
        status: 303,
        text: '',
        headers: {
          ...securityHeaders('no-store'),
          location: '/console/#/jobs',
          'set-cookie': [sessionCookie(req, cookie), clear],
        },
      };
    }),
    route('POST', '/console/api/logout', false, async (req) => {
      sameOrigin(req);
      return json({ ok: true }, 200, {
        'set-cookie': `${SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0`,
      });
    }),
    // Answers 200 either way: the page asks on load, and a 401 there would be a console error.
    route('GET', '/console/api/session', false, async (req) => {
      const login = { oidc: oidc === undefined ? null : { issuer: oidc.issuer } };
      const b = bearer(req);
      if (b !== undefined) {
        const role = sessions.roleOfToken(b);
        return json({ loggedIn: role !== undefined, bearer: true, ...(role === undefined ? {} : { role }) });
      }
      const s = sessions.check(cookieValue(req.headers.cookie, SESSION_COOKIE));
      return json(s === undefined ? { loggedIn: false, ...login } : { loggedIn: true, ...s, ...login });
    }),
    route(
      'GET',
      '/console/api/jobs',
      false,
      read(async (_r, _p, url) => ({ jobs: await store.jobs.list({ limit: limitOf(url, 100) }) })),
    ),
    route(
      'GET',
      '/console/api/jobs/:id',
      false,
      read(async (_r, p) => {
        const job = await cp.getJob(p.id ?? '');
        return {
          job,
          decisions: await withTriage(await store.decisions.list({ jobId: job.id, limit: 10 })),
          refusals: await store.attestation.listRefusals({ jobId: job.id, limit: 20 }),
        };
      }),
    ),
    // The build's bytes as kept: text for the page to put in as text, never a page of its own.
    route('GET', '/console/api/jobs/:id/log', false, async (req, p) => {
      viewer(req);
      const log = await cp.getLog(p.id ?? '');
      return {
        bytes: log.content,
        contentType: 'text/plain; charset=utf-8',
        headers: {
          ...securityHeaders('no-store'),
          'content-security-policy': "default-src 'none'; sandbox",
          'gatehouse-log-sha256': log.sha256,
          'gatehouse-log-truncated': String(log.truncated),
        },
      };
    }),
    // The job's signed provenance, which names the build log's digest; the page checks both.
    route(
      'GET',
      '/console/api/jobs/:id/provenance',
      false,
      read(async (_r, p) => {
        const job = await cp.getJob(p.id ?? '');
        return { jobId: job.id, bundle: await provenanceBundle(job.id, job.project) };
      }),
    ),
    route(
      'GET',
      '/console/api/decisions',
      false,
      read(async (_r, _p, url) => ({
        decisions: await withTriage(await store.decisions.list({ limit: limitOf(url, 100) })),
      })),
    ),
    route(
      'GET',
      '/console/api/decisions/:id/sbom',
      false,
      read(async (_r, p) => {
        const d = await cp.getDecision(p.id ?? '');
        // A refused build's judged components are held for triage; an allowed one's are kept for
        // re-evaluation.
        const held = await store.policies.heldBuild(d.id);
        const kept =
          held === undefined
            ? (await store.policies.artifactSboms()).find((a) => a.decisionId === d.id)
            : undefined;
        const facts = held === undefined ? undefined : (JSON.parse(held.facts) as HeldBuild);
        const components: Component[] =
          facts?.components ?? (kept === undefined ? [] : (JSON.parse(kept.components) as Component[]));
        const envDigest = facts?.environment ?? kept?.environment;
        const envRecord =
          envDigest === undefined ? undefined : await store.policies.environmentSbom(envDigest);
        const env =
          envRecord === undefined ? [] : environmentComponents(envRecord.document, envRecord.digest);
        // Findings as the database and the VEX statements stand now, which may differ from the
        // decision's reasons (new advisories, new VEX).
        const matched = await matchVulnerabilities([...components, ...env], policies.vulnIndex);
        const vex = await policies.vexStatements();
        const identifiers = [projectPurl(d.project), ...d.subjects.map((s) => `sha256:${s.sha256}`)];
        return {
          decisionId: d.id,
          project: d.project,
          outcome: d.outcome,
          known: held !== undefined || kept !== undefined,
          components: components.map((c) => ({
            name: c.name,
            version: c.version,
            purl: c.purl,
            ...(c.scope === undefined ? {} : { scope: c.scope }),
            ...(c.licenses === undefined ? {} : { licenses: c.licenses }),
          })),
          environment: envDigest === undefined ? null : { digest: envDigest, packages: env.length },
          findings: matched.findings.map((f) => {
            const s = vexFor(f, vex, identifiers);
            return {
              ...{ vulnId: f.vulnId, aliases: f.aliases, purl: f.purl, severity: f.severity },
              vex:
                s === undefined
                  ? null
                  : {
                      document: s.document,
                      status: s.status,
                      ...(s.justification === undefined ? {} : { justification: s.justification }),
                    },
            };
          }),
          unmatched: matched.unmatched,
        };
      }),
    ),
    route(
      'GET',
      '/console/api/quarantine',
      false,
      read(async (_r, _p, url) => {
        const limit = limitOf(url, 100);
        const triaged = await triageState();
        const held: unknown[] = [];
        for (const d of await store.decisions.list({ limit: 5000 })) {
          if (d.outcome === 'allow' || triaged.has(d.id)) continue;
          // Only a submission that verified was held, and only a held build can be released.
          const releasable = (await store.policies.heldBuild(d.id)) !== undefined;
          held.push({ ...d, releasable });
          if (held.length >= limit) break;
        }
        return { held };
      }),
    ),
    route(
      'GET',
      '/console/api/refusals',
      false,
      read(async (_r, _p, url) => {
        const refusals = await store.attestation.listRefusals({ limit: limitOf(url, 500) });
        const hosts = new Map<string, string>();
        const byCheck: Record<string, number> = {};
        const byHost: Record<string, number> = {};
        const listed = [];
        for (const r of refusals) {
          let host = '(before a job was named)';
          if (r.jobId !== undefined) {
            if (!hosts.has(r.jobId))
              hosts.set(r.jobId, (await store.jobs.get(r.jobId))?.host ?? '(unclaimed job)');
            host = hosts.get(r.jobId) ?? host;
          }
          byHost[host] = (byHost[host] ?? 0) + 1;
          for (const c of new Set(r.failedChecks.map((f) => f.check))) byCheck[c] = (byCheck[c] ?? 0) + 1;
          listed.push({ ...r, host });
        }
        return { refusals: listed, byCheck, byHost };
      }),
    ),
    route(
      'GET',
      '/console/api/metrics',
      false,
      read(async () => ({
        generatedAt: new Date().toISOString(),
        ...seedMetricSeries(
          {
            jobs: await store.jobs.list({ limit: 5000 }),
            decisions: await store.decisions.list({ limit: 5000 }),
            refusals: await store.attestation.listRefusals({ limit: 5000 }),
            reevaluations: await store.policies.listReevaluations({ limit: 5000 }),
          },
          Date.now(),
        ),
      })),
    ),
    route(
      'GET',
      '/console/api/log/checkpoint',
      false,
      read(async () => {
        const root = (await cp.trustedRoot()) as {
          tlogs?: { baseUrl?: string; publicKey?: { rawBytes?: string } }[];
        };
        return {
          checkpoint: await cp.checkpoint(),
          // The keys the page checks the checkpoint's signature with: those of the trusted root.
          logKeys: (root.tlogs ?? []).map((t) => ({ baseUrl: t.baseUrl, spki: t.publicKey?.rawBytes })),
        };
      }),
    ),
    route(
      'GET',
      '/console/api/log/entries/:index',
      false,
      read(async (_r, p, url) => {
        const index = Number(p.index);
        if (!/^\d{1,15}$/.test(p.index ?? ''))
          throw new GatehouseError('BAD_INPUT', 'log index must be a whole number');
        const size = url.searchParams.get('treeSize');
        if (size !== null && !/^\d{1,15}$/.test(size))
          throw new GatehouseError('BAD_INPUT', 'treeSize must be a whole number');
        return cp.logEntry(index, size === null ? undefined : Number(size));
      }),
    ),
    route(
      'GET',
      '/console/api/log/consistency',
      false,
      read(async (_r, _p, url) => {
        const first = url.searchParams.get('first') ?? '';
        const second = url.searchParams.get('second') ?? '';
        if (!/^\d{1,15}$/.test(first) || !/^\d{1,15}$/.test(second))
          throw new GatehouseError('BAD_INPUT', 'first and second must be whole numbers');
        return cp.consistencyProof(Number(first), Number(second));
      }),
    ),
    route('POST', '/console/api/triage', false, async (req) => {
      triager(req);
      const body = parse(triageBody, await readJson(req));
      // The signature is the security role's; the server never holds the key that makes it.
      const outcome = await cp.triage(body);
      return json(
        {
          id: outcome.id,
          decisionId: outcome.decisionId,
          action: outcome.action,
          logIndex: outcome.logIndex,
          actor: outcome.actor,
          ...(outcome.placement === undefined ? {} : { placement: outcome.placement.reference }),
        },
        201,
      );
    }),
  ];
}
