import { createHash } from 'node:crypto';
import type { JWK } from 'jose';
import { type MeasuredBaseline, replayToRecord } from '../attestation/measurement.ts';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { GatehouseError } from '../common/errors.ts';
import type { VirtualTpm, VtpmPool } from '../tpm/swtpm.ts';
import { launchMeasurements } from './launcher.ts';

/** A token for a job, as the control plane issues it. */
export interface IssuedToken {
  readonly token: string;
  /** Seconds since the epoch. */
  readonly expiresAt: number;
}

/** What an attester needs from the control plane: the attestation endpoints. */
export interface AttestationEndpoints {
  /** The software-measurement path (POST /v1/jobs/:id/attest). */
  attest(request: { jobId: string; runnerKey: JWK; evidence: unknown }): Promise<IssuedToken>;
  /** POST /v1/attestation/challenge. */
  attestationChallenge?(body: unknown): Promise<Challenge>;
  /** POST /v1/attestation/evidence. */
  attestationEvidence?(body: unknown): Promise<IssuedToken>;
}

/** One runner's attestation: what it measured and the key its token is bound to. */
export interface AttestationContext {
  readonly jobId: string;
  readonly baseline: MeasuredBaseline;
  /** The runner's public key (EC P-256 JWK). */
  readonly runnerKey: JWK;
  readonly endpoints: AttestationEndpoints;
  /**
   * The CI platform's identity token, when the agent runs inside a CI job: asked for afresh at
   * each attestation and sent with the evidence as `ci_token` (src/agent/ci-token-source.ts).
   */
  readonly ciToken?: () => Promise<string>;
}

/**
 * How a runner proves itself to the attestation authority. `SoftwareAttester` sends its measured
 * baseline as is (hosts without a TPM; the token says `software-measurement`); `VtpmAttester`
 * extends the baseline into a per-runner vTPM and answers a challenge with a quote.
 */
export interface Attester {
  readonly kind: 'software-measurement' | 'tpm';
  /**
   * Whether `attest` may be called again while the job runs, each time with fresh evidence (a
   * new challenge and quote). The software path has no fresh evidence to give: its token is not
   * renewed.
   */
  readonly reattests: boolean;
  /** Attest (again, for continuous re-attestation) and return a fresh token. */
  attest(context: AttestationContext): Promise<IssuedToken>;
  /** Release what the attester holds for the runner (the vTPM is destroyed). */
  destroy(): Promise<void>;
}

/** The software-only path: the baseline, self-reported; a policy can demand more. */
export class SoftwareAttester implements Attester {
  readonly kind = 'software-measurement' as const;
  readonly reattests = false;

  async attest(c: AttestationContext): Promise<IssuedToken> {
    const ci = c.ciToken === undefined ? undefined : await c.ciToken();
    // Self-reported throughout: with no vTPM there is no launcher, the agent measures itself.
    const events = c.baseline.events.some((e) => e.type === 'agent')
      ? c.baseline.events
      : [...(await launchMeasurements()), ...c.baseline.events];
    return c.endpoints.attest({
      jobId: c.jobId,
      runnerKey: c.runnerKey,
      evidence: {
        type: 'software-measurement',
        events,
        pcrs: replayToRecord(events),
        ...(ci === undefined ? {} : { ci_token: ci }),
      },
    });
  }

  destroy(): Promise<void> {
    return Promise.resolve();
  }
}

/** How long before its token expires a runner re-attests, by default, in seconds. */
export const REATTEST_MARGIN_SECONDS = 60;

/**
 * Whether a runner must prove itself again before it uses its token: the attester can give fresh
 * evidence and the token has less than `marginSeconds` left (continuous authentication).
 */
export function needsReattestation(
  attester: Pick<Attester, 'reattests'>,
  token: Pick<IssuedToken, 'expiresAt'>,
  now: Date = new Date(),
  marginSeconds: number = REATTEST_MARGIN_SECONDS,
): boolean {
  return attester.reattests && token.expiresAt - now.getTime() / 1000 < marginSeconds;
}

/** RFC 7638 SHA-256 thumbprint bytes of an EC P-256 public JWK. */
export function jwkThumbprintBytes(jwk: JWK): Buffer {
  return createHash('sha256')
    .update(JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y }))
    .digest();
}

/**
 * Answer a challenge with a vTPM: activate the credential, quote the selected PCRs with
 * SHA-256(nonce ‖ runner key thumbprint) as qualifying data, read the PCRs. The evidence body of
 * POST /v1/attestation/evidence.
 */
export async function answerChallenge(
  tpm: VirtualTpm,
  challenge: Challenge,
  runnerKey: JWK,
  eventLog: readonly unknown[],
): Promise<Record<string, unknown>> {
  const secret = await tpm.activateCredential(Buffer.from(challenge.credential, 'base64'));
  const qualifying = createHash('sha256')
    .update(Buffer.from(challenge.nonce, 'base64'))
    .update(jwkThumbprintBytes(runnerKey))
    .digest();
  const pcrs = challenge.pcr_selection.sha256;
  const { attest, signature } = await tpm.quote(qualifying, pcrs);
  return {
    session: challenge.session,
    secret: secret.toString('base64'),
    quote: attest.toString('base64'),
    signature: signature.toString('base64'),
    pcrs: { sha256: await tpm.readPcrs(pcrs) },
    event_log: eventLog,
  };
}

/** The identity part of a challenge request for a vTPM. */
export async function challengeRequest(
  tpm: VirtualTpm,
  runnerKey: JWK,
  jobId: string,
): Promise<Record<string, unknown>> {
  return {
    ek_cert: (await tpm.ekCertificate()).toString('base64'),
    ak_public: (await tpm.akPublic()).toString('base64'),
    runner_key: { kty: 'EC', crv: 'P-256', x: runnerKey.x, y: runnerKey.y },
    job_id: jobId,
  };
}

/**
 * Attestation with a per-runner vTPM from a pool of pre-manufactured states. The pool hands the
 * vTPM over with the agent already measured into it by the launcher (src/agent/launcher.ts); the
 * agent's baseline (sandbox profile, toolchain, job binding) is extended once after it, and the
 * log sent is the launcher's events followed by the agent's. Each attestation (the first, and each re-attestation before
 * the token expires) answers a fresh challenge with a fresh quote.
 */
export class VtpmAttester implements Attester {
  readonly kind = 'tpm' as const;
  readonly reattests = true;
  readonly #pool: VtpmPool;
  #tpm: VirtualTpm | undefined;
  #extended = false;

  constructor(pool: VtpmPool) {
    this.#pool = pool;
  }

  async attest(c: AttestationContext): Promise<IssuedToken> {
    const { attestationChallenge, attestationEvidence } = c.endpoints;
    if (attestationChallenge === undefined || attestationEvidence === undefined) {
      throw new GatehouseError('BAD_CONFIG', 'the control plane does not offer TPM attestation');
    }
    this.#tpm ??= await this.#pool.take();
    const tpm = this.#tpm;
    if (!this.#extended) {
      await tpm.extend(c.baseline.events);
      this.#extended = true;
    }
    const challenge = await attestationChallenge.call(
      c.endpoints,
      await challengeRequest(tpm, c.runnerKey, c.jobId),
    );
    const evidence = await answerChallenge(tpm, challenge, c.runnerKey, [
      ...tpm.launched,
      ...c.baseline.events,
    ]);
    if (c.ciToken !== undefined) evidence.ci_token = await c.ciToken();
    return attestationEvidence.call(c.endpoints, evidence);
  }

  async destroy(): Promise<void> {
    const tpm = this.#tpm;
    this.#tpm = undefined;
    await tpm?.destroy();
  }
}
