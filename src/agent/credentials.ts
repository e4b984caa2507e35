import {
  type ExpectedRequest,
  type RequestAct,
  signHostRequest,
  signJobRequest,
} from '../attestation/request-proof.ts';
import type { RunnerKeyPair } from '../attestation/token.ts';
import { isGatehouseError } from '../common/errors.ts';
import type { ControlPlane, FailRequest, FinishRequest } from '../control-plane/control-plane.ts';
import type { Signer } from '../signing/signer.ts';
import type { AttestationEndpoints } from './attester.ts';

/** The enrolled runner host an agent runs on: its name and the key its requests are signed with. */
export interface RunnerHost {
  readonly name: string;
  readonly signer: Signer;
}

/**
 * The credentials an agent speaks with about one job: the host's signed requests until the runner
 * attested, then the job key's (the key the attestation token is bound to).
 */
export class JobCredentials {
  readonly #host: RunnerHost;
  readonly #cp: ControlPlane;
  readonly #key: RunnerKeyPair;

  constructor(host: RunnerHost, cp: ControlPlane, key: RunnerKeyPair) {
    this.#host = host;
    this.#cp = cp;
    this.#key = key;
  }

  /** A request signed by the host. */
  host(act: RequestAct, job: string | undefined, request: unknown): Promise<string> {
    const expected: ExpectedRequest = { act, request, ...(job === undefined ? {} : { job }) };
    return signHostRequest(this.#host.signer, this.#host.name, expected);
  }

  /** A request signed with the job key (after attestation). */
  job(act: RequestAct, job: string, request: unknown): Promise<string> {
    return signJobRequest(this.#key.privateKey, { act, job, request });
  }

  /** The control plane's attestation endpoints, each request signed by the host. */
  endpoints(jobId: string): AttestationEndpoints {
    const cp = this.#cp;
    return {
      attest: async (r) => cp.attest(r, await this.host('attest', jobId, r)),
      attestationChallenge: async (body) =>
        cp.attestationChallenge(body, await this.host('challenge', jobId, body)),
      attestationEvidence: async (body) =>
        cp.attestationEvidence(body, await this.host('evidence', undefined, body)),
    };
  }

  /**
   * Tell the control plane how the job ended: with the job key once attested (`attested`), else the
   * host's. When the answer to an attestation was lost the control plane may hold the job key
   * bound while the agent has no token: the other credential is then tried once.
   */
  async end(kind: 'fail', request: FailRequest, attested: boolean): Promise<void>;
  async end(kind: 'finish', request: FinishRequest, attested: boolean): Promise<void>;
  async end(kind: 'fail' | 'finish', request: FailRequest | FinishRequest, attested: boolean): Promise<void> {
    const send = async (withJobKey: boolean): Promise<void> => {
      const expected = { act: kind, job: request.jobId, request };
      const proof = withJobKey
        ? await signJobRequest(this.#key.privateKey, expected)
        : await this.host(kind, request.jobId, request);
      if (kind === 'fail') await this.#cp.fail(request as FailRequest, proof);
      else await this.#cp.finish(request, proof);
    };
    try {
      await send(attested);
    } catch (e) {
      if (!isGatehouseError(e, 'UNAUTHORIZED')) throw e;
      await send(!attested);
    }
  }
}
