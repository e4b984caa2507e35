import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { GatehouseError, isErrorCode, isGatehouseError } from '../common/errors.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { SecuritySignature } from '../signing/security-act.ts';
import type { JobRecord, PolicyVersionRecord } from '../store/store.ts';
import type {
  AttestRequest,
  AttestResult,
  ClaimJobRequest,
  ControlPlane,
  CreateJobRequest,
  EnvironmentSbomRequest,
  FailRequest,
  FinishRequest,
  HostQuoteBody,
  HostQuoteChallenge,
  HostQuoteResult,
  JobTicket,
  LogUploadRequest,
  LogUploadResult,
  UploadRequest,
  UploadResult,
} from './control-plane.ts';

/** Answers of the open read routes (checkpoint, proofs) are small; more than this is refused. */
const MAX_READ_BYTES = 1 << 20;

interface CallOptions {
  /** Send the operator's API token (the operator's routes). */
  auth?: boolean;
  /** A signed request (host or job key) for a job route, sent as the `Gatehouse-Proof` header. */
  proof?: string;
  timeoutMs?: number;
  /** Refuse an answer larger than this. */
  maxBytes?: number;
}

/**
 * The one client of the control plane's HTTP API: the runner agent's port (`gatehouse run
 * --server URL`), the log reads a remote monitor needs (`log audit --server`), and the security
 * role's publications (`policy push --server`). An error answer becomes the GatehouseError its
 * `{ error: { code, message } }` names, so callers see the same codes as in-process.
 */
export class HttpControlPlane implements ControlPlane {
  readonly #base: URL;
  readonly #apiToken: string | undefined;
  readonly #timeoutMs: number;

  /** @throws GatehouseError BAD_INPUT for a URL that is not http(s) */
  constructor(options: { url: string; apiToken?: string; timeoutMs?: number }) {
    try {
      this.#base = new URL(options.url);
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', `server URL '${options.url}' is not a URL`, { cause: e });
    }
    if (this.#base.protocol !== 'http:' && this.#base.protocol !== 'https:') {
      throw new GatehouseError('BAD_INPUT', `server URL '${options.url}' must be http or https`);
    }
    this.#apiToken = options.apiToken;
    this.#timeoutMs = options.timeoutMs ?? 120_000;
  }

  /** One request; the answer's status and body text. @throws GatehouseError UNREACHABLE, BAD_INPUT */
  async #send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    options: CallOptions,
  ): Promise<{ status: number; ok: boolean; text: string }> {
    const url = new URL(path, this.#base);
    if (options.auth === true && this.#apiToken === undefined)
      throw new GatehouseError('BAD_INPUT', 'no API token for --server: set GATEHOUSE_API_TOKEN');
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          ...(options.auth === true ? { authorization: `Bearer ${this.#apiToken}` } : {}),
          ...(options.proof === undefined ? {} : { 'gatehouse-proof': options.proof }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs),
      });
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `control plane ${this.#base.origin} did not answer`, {
        where: url.pathname,
        cause: e,
      });
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (options.maxBytes !== undefined && bytes.length > options.maxBytes)
      throw new GatehouseError('BAD_INPUT', 'the control plane answered with too much data', {
        where: url.href,
      });
    return { status: res.status, ok: res.ok, text: bytes.toString('utf8') };
  }

  /** A JSON call; an error answer is thrown as the code it names. */
  async #call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    options: CallOptions = {},
  ): Promise<T> {
    const res = await this.#send(method, path, body, options);
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch (e) {
      throw new GatehouseError(
        'UNREACHABLE',
        `control plane answered ${res.status} with a body that is not JSON`,
        { cause: e },
      );
    }
    if (!res.ok) throw errorOfAnswer(res.status, json);
    return json as T;
  }

  createJob(request: CreateJobRequest, proof?: string): Promise<JobTicket> {
    // Without a host's proof, the operator creates an unclaimed job (the API token).
    return this.#call('POST', '/v1/jobs', request, proof === undefined ? { auth: true } : { proof });
  }

  claimJob(request: ClaimJobRequest, proof: string): Promise<JobTicket> {
    return this.#call('POST', `${jobPath(request.jobId)}/claim`, {}, { proof });
  }

  hostQuoteChallenge(proof: string): Promise<HostQuoteChallenge> {
    return this.#call('POST', '/v1/hosts/quote/challenge', {}, { proof });
  }

  hostQuote(body: HostQuoteBody, proof: string): Promise<HostQuoteResult> {
    return this.#call('POST', '/v1/hosts/quote', body, { proof });
  }

  attest(request: AttestRequest, proof: string): Promise<AttestResult> {
    const body = { runnerKey: request.runnerKey, evidence: request.evidence };
    return this.#call('POST', `${jobPath(request.jobId)}/attest`, body, { proof });
  }

  attestationChallenge(body: unknown, proof: string): Promise<Challenge> {
    return this.#call('POST', '/v1/attestation/challenge', body, { proof });
  }

  attestationEvidence(body: unknown, proof: string): Promise<AttestResult & { jobId: string }> {
    return this.#call('POST', '/v1/attestation/evidence', body, { proof });
  }

  /** GET /v1/environments/:digest: 200 when the control plane keeps it, 404 when not. */
  async environmentSbomKnown(digest: string): Promise<boolean> {
    try {
      await this.#call('GET', `/v1/environments/${encodeURIComponent(digest)}`);
      return true;
    } catch (e) {
      if (isGatehouseError(e, 'NOT_FOUND')) return false;
      throw e;
    }
  }

  /** POST /v1/jobs/:id/environment: the build environment's SBOM text, with the job key's proof. */
  async uploadEnvironmentSbom(request: EnvironmentSbomRequest, text: string, proof: string): Promise<void> {
    await this.#call(
      'POST',
      `${jobPath(request.jobId)}/environment`,
      { digest: request.digest, document: text },
      { proof },
    );
  }

  /** PUT /v1/jobs/:id/outputs: the output's bytes, streamed from the file (never read whole). */
  async uploadOutput(
    request: UploadRequest,
    content: string | NodeJS.ReadableStream,
    proof: string,
  ): Promise<UploadResult> {
    const q = new URLSearchParams({ name: request.name, sha256: request.sha256, size: String(request.size) });
    const url = new URL(`${jobPath(request.jobId)}/outputs?${q}`, this.#base);
    const stream = typeof content === 'string' ? createReadStream(content) : content;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'gatehouse-proof': proof },
        body: Readable.toWeb(Readable.from(stream)) as ReadableStream<Uint8Array>,
        duplex: 'half',
        signal: AbortSignal.timeout(this.#timeoutMs),
      } as RequestInit);
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `control plane ${this.#base.origin} did not take the upload`, {
        where: url.pathname,
        cause: e,
      });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new GatehouseError(
        'UNREACHABLE',
        `control plane answered ${res.status} with a body that is not JSON`,
        { cause: e },
      );
    }
    if (!res.ok) throw errorOfAnswer(res.status, json);
    return json as UploadResult;
  }

  /** POST /v1/jobs/:id/log: the build log's bytes (base64 in JSON, at most 1 MiB), with the job key's proof. */
  uploadLog(request: LogUploadRequest, content: Uint8Array, proof: string): Promise<LogUploadResult> {
    const { jobId: _j, ...body } = request;
    return this.#call(
      'POST',
      `${jobPath(request.jobId)}/log`,
      { ...body, content: Buffer.from(content).toString('base64') },
      { proof },
    );
  }

  /** The submission carries its own credentials: the attestation token and the proof of possession. */
  submit(request: SubmitRequest): Promise<GateResult> {
    return this.#call('POST', `${jobPath(request.submission.jobId)}/submit`, request);
  }

  async fail(request: FailRequest, proof: string): Promise<void> {
    const { jobId: _j, ...body } = request;
    await this.#call('POST', `${jobPath(request.jobId)}/fail`, body, { proof });
  }

  async finish(request: FinishRequest, proof: string): Promise<void> {
    const { jobId: _j, ...body } = request;
    await this.#call('POST', `${jobPath(request.jobId)}/finish`, body, { proof });
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#call('GET', jobPath(jobId));
  }

  /** POST /v1/policies: publish a policy version the security role signed over name, version and text. */
  publishPolicy(
    text: string,
    version: number,
    sig: SecuritySignature,
    options: { allowEmpty?: boolean } = {},
  ): Promise<PolicyVersionRecord> {
    const body = { text, version, ...sig, ...(options.allowEmpty === true ? { allowEmpty: true } : {}) };
    return this.#call('POST', '/v1/policies', body, { auth: true, timeoutMs: 30_000 });
  }

  /** The latest published version of a policy (0 when none is). */
  async latestPolicyVersion(name: string): Promise<number> {
    try {
      return (await this.#call<PolicyVersionRecord>('GET', `/v1/policies/${encodeURIComponent(name)}`))
        .version;
    } catch (e) {
      if (e instanceof GatehouseError && e.code === 'NOT_FOUND') return 0;
      throw e;
    }
  }

  /** GET /v1/log/checkpoint: the log's signed checkpoint (a C2SP signed note), unverified. */
  async checkpoint(): Promise<string> {
    const res = await this.#send('GET', '/v1/log/checkpoint', undefined, this.#readOptions());
    if (!res.ok)
      throw new GatehouseError('UNREACHABLE', `the log answered HTTP ${res.status}`, {
        where: `${this.#base.origin}/v1/log/checkpoint`,
      });
    return res.text;
  }

  /** GET /v1/log/proof/consistency: a consistency proof between two tree sizes, unverified. */
  async consistencyProof(first: number, second: number): Promise<Record<string, unknown>> {
    const path = `/v1/log/proof/consistency?first=${first}&second=${second}`;
    const res = await this.#send('GET', path, undefined, this.#readOptions());
    if (!res.ok)
      throw new GatehouseError('UNREACHABLE', `the log answered HTTP ${res.status}`, {
        where: `${this.#base.origin}${path}`,
      });
    try {
      return JSON.parse(res.text) as Record<string, unknown>;
    } catch (e) {
      throw new GatehouseError('LOG_INCONSISTENT', 'the consistency proof is not JSON', { cause: e });
    }
  }

  #readOptions(): CallOptions {
    return { timeoutMs: Math.min(this.#timeoutMs, 10_000), maxBytes: MAX_READ_BYTES };
  }
}

function jobPath(jobId: string): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}`;
}

/** The error an API answer names; an unknown code is INTERNAL, never trusted as a success. */
function errorOfAnswer(status: number, json: unknown): GatehouseError {
  const err = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = isErrorCode(err?.code) ? err.code : 'INTERNAL';
  const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}`;
  return new GatehouseError(code, `control plane: ${message}`);
}
