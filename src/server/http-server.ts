import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { failedChecksOf } from '../attestation/checks.ts';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { HostQuoteBody } from '../control-plane/control-plane.ts';
import type { EmbeddedControlPlane } from '../control-plane/embedded-control-plane.ts';
import { type Submission, submissionSchema } from '../gate/submission.ts';
import { BUILD_LOG_MAX_BYTES } from '../runner/build-log.ts';
import type { JobStep } from '../store/store.ts';
import { httpStatusByCode } from './http-errors.ts';

/** Bodies larger than this are refused before they are read in full. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const environmentBody = z.strictObject({
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  document: z.string().min(2),
});

export type Handler = (req: IncomingMessage, params: Record<string, string>, url: URL) => Promise<Reply>;
export interface Reply {
  status?: number;
  json?: unknown;
  text?: string;
  /** A binary answer (CT tiles, certificates). */
  bytes?: Uint8Array;
  contentType?: string;
  /** Extra headers (caching of immutable tiles); several values for one (set-cookie) as a list. */
  headers?: Record<string, string | string[]>;
}
export interface Route {
  method: 'GET' | 'POST' | 'PUT';
  pattern: RegExp;
  keys: string[];
  auth: boolean;
  handler: Handler;
}

export function route(method: 'GET' | 'POST' | 'PUT', path: string, auth: boolean, handler: Handler): Route {
  const keys: string[] = [];
  const pattern = new RegExp(
    `^${path.replace(/:([a-zA-Z]+)/g, (_, k: string) => {
      keys.push(k);
      return '([^/]+)';
    })}$`,
  );
  return { method, pattern, keys, auth, handler };
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new GatehouseError('BAD_INPUT', `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'request body is not valid JSON', { cause: e });
  }
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `request body ${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return r.data;
}

const stepSchema = z.strictObject({
  name: z.string().max(64),
  startedAt: z.string().max(64),
  durationMs: z.number().nonnegative(),
  ok: z.boolean(),
  detail: z.string().max(4096).optional(),
});
const createJobBody = z.object({ project: z.string().max(200) });
const attestBody = z.object({ runnerKey: z.record(z.string(), z.unknown()), evidence: z.unknown() });
const submitBody = z.object({
  token: z.string().max(16384).optional(),
  proof: z.string().max(8 * 1024 * 1024),
  submission: submissionSchema,
});
const uploadQuery = z.strictObject({
  name: z.string().min(1).max(1024),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.coerce.number().int().nonnegative(),
});
const logBody = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative().max(BUILD_LOG_MAX_BYTES),
  truncated: z.boolean(),
  // Checked by decoding (below): a regular expression over 1.4 MB of base64 costs ~60 ms.
  content: z.string().max(Math.ceil(BUILD_LOG_MAX_BYTES / 3) * 4),
});
/**
 * Whether reading jobs needs the API token: the job list, a job, and its build log share this, so
 * that a job's log is never more (or less) open than the job itself.
 */
const JOB_READS_NEED_TOKEN = false;
const failBody = z.strictObject({
  reason: z.string().max(4096),
  cancelled: z.boolean().optional(),
  steps: z.array(stepSchema).max(64),
  token: z.string().max(16384).optional(),
});
const finishBody = z.strictObject({
  steps: z.array(stepSchema).max(64),
  token: z.string().max(16384).optional(),
});
// Security-role acts: the bearer token admits the request, the signature makes it the role's.
const securitySig = { signature: z.string().min(1).max(1024), keyId: z.string().regex(/^[0-9a-f]{64}$/) };
const MAX_POLICY_BYTES = 1024 * 1024;
const policyBody = z.strictObject({
  text: z.string().min(1).max(MAX_POLICY_BYTES),
  version: z.number().int().min(1).max(1_000_000_000),
  allowEmpty: z.boolean().optional(),
  ...securitySig,
});
const revokeBody = z.strictObject({
  digest: z.string().regex(/^(sha256:)?[0-9a-f]{64}$/),
  reason: z.string().min(1).max(1000),
  ...securitySig,
});
const triageBody = z.strictObject({
  decisionId: z.string().min(1).max(200),
  action: z.enum(['release', 'reject']),
  reason: z.string().min(1).max(4096),
  ...securitySig,
});

const referenceValuesBody = z.strictObject({
  version: z.number().int().min(1).max(1_000_000_000),
  values: z.unknown(),
  ...securitySig,
});

/** A versioned security act (project registration, host enrollment): parsed further by its registry. */
const actBody = z.strictObject({
  name: z.string().min(1).max(64),
  version: z.number().int().min(1).max(1_000_000_000),
  content: z.record(z.string(), z.unknown()),
  ...securitySig,
});

const ekCaBody = z.strictObject({
  certificate: z
    .string()
    .min(1)
    .max(64 * 1024),
  ...securitySig,
});

function intParam(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  if (!/^\d{1,15}$/.test(v))
    throw new GatehouseError('BAD_INPUT', `query parameter ${name} must be a whole number`);
  return Number(v);
}

/**
 * The control plane's HTTP API. Reads are open (they are what auditors and verifiers use); every
 * write needs the home's API token as a bearer token. Errors are JSON `{ error: { code, message } }`
 * with the status from `httpStatusByCode`; internal errors never echo their detail.
 */
export function createApiServer(options: {
  controlPlane: EmbeddedControlPlane;
  apiToken: string;
  /** Routes of other services the server carries (the CT log: src/server/ct-routes.ts). */
  extraRoutes?: readonly Route[];
}): Server {
  const cp = options.controlPlane;
  const expected = Buffer.from(options.apiToken);
  const routes: Route[] = [
    route('GET', '/healthz', false, async () => ({ json: { status: 'ok' } })),
    route('GET', '/metrics', false, async () => ({
      text: await cp.metricsText(),
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
    })),
    route('GET', '/.well-known/jwks.json', false, async () => ({ json: await cp.jwks() })),
    route('GET', '/v1/trust-root', false, async () => ({ json: await cp.trustedRoot() })),
    route('GET', '/v1/jobs', JOB_READS_NEED_TOKEN, async (_r, _p, url) => ({
      json: { jobs: await cp.listJobs({ limit: intParam(url, 'limit') ?? 100 }) },
    })),
    route('GET', '/v1/jobs/:id', JOB_READS_NEED_TOKEN, async (_r, p) => ({
      json: await cp.getJob(p.id ?? ''),
    })),
    // The build log as kept: its bytes are the build's, so a browser must never run them as a page.
    route('GET', '/v1/jobs/:id/log', JOB_READS_NEED_TOKEN, async (_r, p) => {
      const log = await cp.getLog(p.id ?? '');
      return {
        bytes: log.content,
        contentType: 'text/plain; charset=utf-8',
        headers: {
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'; sandbox",
          'gatehouse-log-sha256': log.sha256,
          'gatehouse-log-truncated': String(log.truncated),
        },
      };
    }),
    route('GET', '/v1/decisions', false, async (_r, _p, url) => ({
      json: { decisions: await cp.listDecisions({ limit: intParam(url, 'limit') ?? 100 }) },
    })),
    route('GET', '/v1/decisions/:id', false, async (_r, p) => ({ json: await cp.getDecision(p.id ?? '') })),
    route('GET', '/v1/log/checkpoint', false, async () => ({
      text: await cp.checkpoint(),
      contentType: 'text/plain; charset=utf-8',
    })),
    route('GET', '/v1/log/entries/:index', false, async (_r, p, url) => {
      const index = Number(p.index);
      if (!Number.isSafeInteger(index) || index < 0)
        throw new GatehouseError('BAD_INPUT', 'log index must be a whole number');
      return { json: await cp.logEntry(index, intParam(url, 'treeSize')) };
    }),
    route('GET', '/v1/log/proof/consistency', false, async (_r, _p, url) => {
      const first = intParam(url, 'first');
      const second = intParam(url, 'second');
      if (first === undefined || second === undefined) {
        throw new GatehouseError('BAD_INPUT', 'query parameters first and second are required');
      }
      return { json: await cp.consistencyProof(first, second) };
    }),
    route('GET', '/v1/policies/:name', false, async (_r, p, url) => ({
      json: await cp.getPolicy(p.name ?? '', intParam(url, 'version')),
    })),
    route('GET', '/v1/policies/:name/history', false, async (_r, p) => ({
      json: { versions: (await cp.policyHistory(p.name ?? '')).map(({ text: _t, ...r }) => r) },
    })),
    route('POST', '/v1/policies', true, async (req) => ({
      status: 201,
      json: await cp.publishPolicy(parseBody(policyBody, await readJson(req))),
    })),
    route('GET', '/v1/quarantine', false, async (_r, _p, url) => ({
      json: { quarantined: await cp.quarantined(intParam(url, 'limit') ?? 100) },
    })),
    route('GET', '/v1/revocations', false, async () => ({ json: await cp.revocations() })),
    route('POST', '/v1/revocations', true, async (req) => ({
      status: 201,
      json: await cp.revoke(parseBody(revokeBody, await readJson(req))),
    })),
    route('POST', '/v1/triage', true, async (req) => ({
      status: 201,
      json: await cp.triage(parseBody(triageBody, await readJson(req))),
    })),
    route('GET', '/v1/reference-values', false, async (_r, _p, url) => ({
      json: await cp.getReferenceValues(intParam(url, 'version')),
    })),
    route('GET', '/v1/reference-values/history', false, async () => ({
      json: { versions: await cp.referenceValueHistory() },
    })),
    route('POST', '/v1/reference-values', true, async (req) => ({
      status: 201,
      json: await cp.publishReferenceValues(parseBody(referenceValuesBody, await readJson(req))),
    })),
    route('POST', '/v1/attestation/trusted-cas', true, async (req) => {
      if (cp.trustEkCa === undefined) throw new GatehouseError('INTERNAL', 'EK CA trust is not wired');
      const r = await cp.trustEkCa(parseBody(ekCaBody, await readJson(req)));
      return { status: r.added ? 201 : 200, json: r };
    }),
    route('GET', '/v1/projects', false, async () => ({ json: { projects: await cp.projects() } })),
    route('POST', '/v1/projects', true, async (req) => ({
      status: 201,
      json: await cp.registerProject(parseBody(actBody, await readJson(req))),
    })),
    route('GET', '/v1/hosts', false, async () => ({ json: { hosts: await cp.hosts() } })),
    route('POST', '/v1/hosts', true, async (req) => ({
      status: 201,
      json: await cp.enrollHost(parseBody(actBody, await readJson(req))),
    })),
    route('GET', '/v1/attestation/refusals', false, async (_r, _p, url) => {
      const job = url.searchParams.get('job');
      return {
        json: {
          refusals: await cp.attestationRefusals({
            limit: intParam(url, 'limit') ?? 100,
            ...(job === null ? {} : { jobId: job }),
          }),
        },
      };
    }),
    // The runner protocol: no operator token. A host's signed request creates (and claims) a job,
    // claims and attests it; the job key speaks for it once attested; the token and proof of
    // possession carry a submission. The operator's token only creates unclaimed jobs.
    route('POST', '/v1/jobs', false, async (req) => {
      const body = parseBody(createJobBody, await readJson(req));
      const proof = proofOf(req);
      if (proof === undefined && !authorized(req))
        throw new GatehouseError('UNAUTHORIZED', 'creating a job needs the API token or a runner host proof');
      return { status: 201, json: await cp.createJob({ project: body.project }, proof) };
    }),
    route('POST', '/v1/hosts/quote/challenge', false, async (req) => {
      parseBody(z.strictObject({}), await readJson(req));
      return { json: await cp.hostQuoteChallenge(requiredProof(req)) };
    }),
    route('POST', '/v1/hosts/quote', false, async (req) => ({
      json: await cp.hostQuote((await readJson(req)) as HostQuoteBody, requiredProof(req)),
    })),
    route('POST', '/v1/jobs/:id/claim', false, async (req, p) => {
      parseBody(z.strictObject({}), await readJson(req));
      return { json: await cp.claimJob({ jobId: p.id ?? '' }, requiredProof(req)) };
    }),
    route('POST', '/v1/attestation/challenge', false, async (req) => ({
      json: await cp.attestationChallenge(await readJson(req), requiredProof(req)),
    })),
    route('POST', '/v1/attestation/evidence', false, async (req) => {
      const issued = await cp.attestationEvidence(await readJson(req), requiredProof(req));
      return { json: { token: issued.token, expires_at: issued.expiresAt, job_id: issued.jobId } };
    }),
    route('POST', '/v1/jobs/:id/attest', false, async (req, p) => {
      const body = parseBody(attestBody, await readJson(req));
      const request = { jobId: p.id ?? '', runnerKey: body.runnerKey, evidence: body.evidence };
      return { json: await cp.attest(request, requiredProof(req)) };
    }),
    // The build environment's SBOM, kept once per digest: whether it is known, and from a job key.
    route('GET', '/v1/environments/:digest', false, async (_r, p) => {
      const digest = p.digest ?? '';
      if (!(await cp.environmentSbomKnown(digest)))
        throw new GatehouseError('NOT_FOUND', `no build environment SBOM ${digest.slice(0, 80)}`);
      return { json: { digest } };
    }),
    route('POST', '/v1/jobs/:id/environment', false, async (req, p) => {
      const body = parseBody(environmentBody, await readJson(req));
      await cp.uploadEnvironmentSbom(
        { jobId: p.id ?? '', digest: body.digest },
        body.document,
        requiredProof(req),
      );
      return { status: 201, json: { digest: body.digest } };
    }),
    // The build log, once, from the job key; the control plane digests what it keeps.
    route('POST', '/v1/jobs/:id/log', false, async (req, p) => {
      const body = parseBody(logBody, await readJson(req));
      const request = { jobId: p.id ?? '', sha256: body.sha256, size: body.size, truncated: body.truncated };
      const content = Buffer.from(body.content, 'base64');
      // Canonical base64 only: what decodes must encode back to the very text received.
      if (content.toString('base64') !== body.content)
        throw new GatehouseError('BAD_INPUT', 'request body content: not valid base64');
      return { status: 201, json: await cp.uploadLog(request, content, requiredProof(req)) };
    }),
    // An output's bytes, streamed into the staging area (never read whole into memory).
    route('PUT', '/v1/jobs/:id/outputs', false, async (req, p, url) => {
      const query = parseBody(uploadQuery, Object.fromEntries(url.searchParams));
      const request = { jobId: p.id ?? '', ...query };
      return { status: 201, json: await cp.uploadOutput(request, req, requiredProof(req)) };
    }),
    route('POST', '/v1/jobs/:id/submit', false, async (req, p) => {
      const body = parseBody(submitBody, await readJson(req));
      if (body.submission.jobId !== p.id)
        throw new GatehouseError('BAD_INPUT', 'submission.jobId differs from the URL');
      return {
        json: await cp.submit({
          token: body.token,
          proof: body.proof,
          submission: body.submission as Submission,
        }),
      };
    }),
    route('POST', '/v1/jobs/:id/fail', false, async (req, p) => {
      const body = parseBody(failBody, await readJson(req));
      const request = {
        jobId: p.id ?? '',
        reason: body.reason,
        ...(body.cancelled === undefined ? {} : { cancelled: body.cancelled }),
        steps: body.steps as JobStep[],
        ...tokenOf(body),
      };
      await cp.fail(request, requiredProof(req));
      return { json: { ok: true } };
    }),
    route('POST', '/v1/jobs/:id/finish', false, async (req, p) => {
      const body = parseBody(finishBody, await readJson(req));
      const request = { jobId: p.id ?? '', steps: body.steps as JobStep[], ...tokenOf(body) };
      await cp.finish(request, requiredProof(req));
      return { json: { ok: true } };
    }),
    ...(options.extraRoutes ?? []),
  ];

  function authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer (.+)$/.exec(header);
    if (m === null) return false;
    const given = Buffer.from(m[1] ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const candidates = routes.filter((r) => r.pattern.test(url.pathname));
    const r = candidates.find((c) => c.method === req.method);
    try {
      if (r === undefined) {
        if (candidates.length > 0)
          return send(res, 405, {
            error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed here` },
          });
        return send(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${url.pathname}` } });
      }
      if (r.auth && !authorized(req)) {
        return send(res, 401, {
          error: { code: 'UNAUTHORIZED', message: 'a valid API bearer token is required' },
        });
      }
      const match = r.pattern.exec(url.pathname);
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => {
        params[k] = decodeURIComponent(match?.[i + 1] ?? '');
      });
      const reply = await r.handler(req, params, url);
      if (reply.text !== undefined) {
        res.writeHead(reply.status ?? 200, {
          'content-type': reply.contentType ?? 'text/plain',
          ...reply.headers,
        });
        res.end(reply.text);
        return;
      }
      if (reply.bytes !== undefined) {
        res.writeHead(reply.status ?? 200, {
          'content-type': reply.contentType ?? 'application/octet-stream',
          'content-length': reply.bytes.length,
          ...reply.headers,
        });
        res.end(reply.bytes);
        return;
      }
      send(res, reply.status ?? 200, reply.json);
    } catch (e) {
      if (isGatehouseError(e) && e.code !== 'INTERNAL' && e.code !== 'STORE_ERROR') {
        const failedChecks = failedChecksOf(e);
        send(res, httpStatusByCode[e.code], {
          error: { code: e.code, message: e.describe() },
          ...(failedChecks === undefined ? {} : { failed_checks: failedChecks }),
        });
      } else {
        // Internal detail stays in the server's log, never in the answer.
        process.stderr.write(
          `gatehouse server: ${req.method} ${url.pathname}: ${String(e instanceof Error ? e.stack : e)}\n`,
        );
        send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
      }
    }
  }

  return createServer((req, res) => {
    void handle(req, res);
  });
}

/** The signed request a job route carries (`Gatehouse-Proof`), if any. */
function proofOf(req: IncomingMessage): string | undefined {
  const h = req.headers['gatehouse-proof'];
  return typeof h === 'string' && h !== '' ? h : undefined;
}

/** The signed request a job route must carry. @throws GatehouseError UNAUTHORIZED */
function requiredProof(req: IncomingMessage): string {
  const proof = proofOf(req);
  if (proof === undefined)
    throw new GatehouseError(
      'UNAUTHORIZED',
      'this request needs a Gatehouse-Proof: signed by the runner host that claimed the job, or by the job key',
    );
  return proof;
}

function tokenOf(body: { token?: string | undefined }): { token?: string } {
  return body.token === undefined ? {} : { token: body.token };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}
