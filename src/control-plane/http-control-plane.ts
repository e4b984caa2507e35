import type { Challenge } from '../attestation/tpm-verifier.ts';
import { type ErrorCode, GatehouseError } from '../common/errors.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import { httpStatusByCode } from '../server/http-errors.ts';
import type { JobRecord, JobStep } from '../store/store.ts';
import type { AttestRequest, AttestResult, ControlPlane, JobTicket } from './control-plane.ts';

const knownCodes = new Set(Object.keys(httpStatusByCode));

/** A control plane reached over HTTP: what `gatehouse run --server URL` uses. */
export class HttpControlPlane implements ControlPlane {
  readonly #base: URL;
  readonly #apiToken: string;
  readonly #timeoutMs: number;

  constructor(options: { url: string; apiToken: string; timeoutMs?: number }) {
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

  async #call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.#base);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#apiToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `control plane ${this.#base.origin} did not answer`, {
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
        {
          cause: e,
        },
      );
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } }).error;
      const code = (err?.code !== undefined && knownCodes.has(err.code) ? err.code : 'INTERNAL') as ErrorCode;
      throw new GatehouseError(code, `control plane: ${err?.message ?? `HTTP ${res.status}`}`);
    }
    return json as T;
  }

  createJob(request: { project: string }): Promise<JobTicket> {
    return this.#call('POST', '/v1/jobs', request);
  }

  attest(request: AttestRequest): Promise<AttestResult> {
    return this.#call('POST', `/v1/jobs/${encodeURIComponent(request.jobId)}/attest`, {
      runnerKey: request.runnerKey,
      evidence: request.evidence,
    });
  }

  attestationChallenge(body: unknown): Promise<Challenge> {
    return this.#call('POST', '/v1/attestation/challenge', body);
  }

  attestationEvidence(body: unknown): Promise<AttestResult & { jobId: string }> {
    return this.#call('POST', '/v1/attestation/evidence', body);
  }

  submit(request: SubmitRequest): Promise<GateResult> {
    return this.#call('POST', `/v1/jobs/${encodeURIComponent(request.submission.jobId)}/submit`, request);
  }

  async fail(request: { jobId: string; reason: string; steps: JobStep[]; token?: string }): Promise<void> {
    await this.#call('POST', `/v1/jobs/${encodeURIComponent(request.jobId)}/fail`, request);
  }

  async finish(request: { jobId: string; steps: JobStep[]; token?: string }): Promise<void> {
    await this.#call('POST', `/v1/jobs/${encodeURIComponent(request.jobId)}/finish`, request);
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#call('GET', `/v1/jobs/${encodeURIComponent(jobId)}`);
  }
}
