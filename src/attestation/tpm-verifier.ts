import { createHash, randomBytes, timingSafeEqual, type X509Certificate } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { z } from 'zod';
import { isGatehouseError } from '../common/errors.ts';
import type { AttestationSessionRecord, TakenSession } from '../store/store.ts';
import { makeCredential } from '../tpm/credential.ts';
import {
  EkCertificateError,
  type VerifiedEkCertificate,
  type VtpmEkIssuer,
  verifyEkCertificate,
  verifyVtpmEkCertificate,
} from '../tpm/ek-certificate.ts';
import { PCR_RESET_VALUE } from '../tpm/pcr.ts';
import { akAttributeProblem, appraiseQuote, type CheckFailure } from '../tpm/quote.ts';
import {
  akQualifiedNameUnderEk,
  objectName,
  parseTpm2bPublic,
  type TpmsQuote,
  type TpmtPublic,
} from '../tpm/structures.ts';
import { CHECKS, EvidenceRejectedError } from './checks.ts';
import { type MeasurementEvent, measurementEventSchema, replayToRecord } from './measurement.ts';

/** The SHA-256 PCRs every quote must cover, exactly: the measured baseline (see PCR_ALLOCATION). */
export const REQUIRED_PCRS: readonly number[] = Object.freeze([8, 9, 10, 11]);
/** How long a challenge (its nonce and credential) stays usable. */
export const CHALLENGE_TTL_SECONDS = 60;
/** At most this many open challenges; the oldest are dropped first. */
const MAX_SESSIONS = 10_000;

const b64 = (max: number) =>
  z
    .string()
    .max(Math.ceil(max / 3) * 4)
    .refine((s) => Buffer.from(s, 'base64').toString('base64') === s, 'must be canonical base64');
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
const b64url43 = z.string().regex(/^[A-Za-z0-9_-]{43}$/);

/** The body of POST /v1/attestation/challenge. */
export const challengeBodySchema = z.strictObject({
  ek_cert: b64(8192),
  ak_public: b64(2048),
  runner_key: z
    .looseObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64url43, y: b64url43 })
    .refine((k) => k.d === undefined, 'must not contain the private key'),
  /** The job the runner attests for (gatehouse extension; else named by the event log's job event). */
  job_id: z.string().min(1).max(128).optional(),
});

/** The body of POST /v1/attestation/evidence. */
export const evidenceBodySchema = z.strictObject({
  session: z.string().regex(/^[A-Za-z0-9_-]{22,64}$/),
  secret: b64(64),
  quote: b64(4096),
  signature: b64(1024),
  pcrs: z.strictObject({ sha256: z.record(z.string().regex(/^(?:[0-9]|1[0-9]|2[0-3])$/), hex64) }),
  event_log: z.array(measurementEventSchema).min(1).max(1024),
  /** A CI platform's OIDC token (GitHub Actions, GitLab CI), when the runner has one. */
  ci_token: z.string().min(1).max(16384).optional(),
});

/** What the runner gets back from a challenge. */
export interface Challenge {
  readonly session: string;
  readonly nonce: string;
  readonly credential: string;
  readonly pcr_selection: { readonly sha256: readonly number[] };
  readonly expires: string;
}

interface Session {
  readonly ak: TpmtPublic;
  readonly akName: Buffer;
  readonly ek: VerifiedRunnerEk;
  readonly runnerJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  readonly jkt: string;
  readonly nonce: Buffer;
  /** SHA-256 of the credential's secret: the secret itself is never kept. */
  readonly secretSha256: Buffer;
  readonly expiresAt: number;
  readonly jobId: string | undefined;
}

/** What a session keeps in the store, as JSON: enough to check the answer, no secret. */
const sessionStateSchema = z.strictObject({
  ekCert: z.string(),
  akPublic: z.string(),
  runnerJwk: z.strictObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64url43, y: b64url43 }),
  nonce: z.string(),
  secretSha256: hex64,
  issuedAt: z.number().int(),
});

/**
 * Where issued challenges wait for their answer: the store (`AttestationStore`), so that any
 * instance may check an answer to a challenge another issued, or {@link MemoryAttestationSessions}.
 */
export interface AttestationSessions {
  openSession(record: AttestationSessionRecord, maxOpen: number): Promise<void>;
  takeSession(id: string): Promise<TakenSession>;
}

/** Sessions held in this process only (one instance, tests). */
export class MemoryAttestationSessions implements AttestationSessions {
  readonly #open = new Map<string, AttestationSessionRecord>();
  /** Spent sessions until they are forgotten, to tell a replay from an unknown session. */
  readonly #spent = new Map<string, number>();

  async openSession(record: AttestationSessionRecord, maxOpen: number): Promise<void> {
    const forget = Date.now() - 60_000;
    for (const [id, s] of this.#open) if (s.expiresAt < forget) this.#open.delete(id);
    for (const [id, exp] of this.#spent) if (exp < forget) this.#spent.delete(id);
    while (this.#open.size >= maxOpen) {
      const first = this.#open.keys().next().value;
      if (first === undefined) break;
      this.#open.delete(first);
    }
    this.#open.set(record.id, { ...record });
  }

  async takeSession(id: string): Promise<TakenSession> {
    const session = this.#open.get(id);
    if (session === undefined) return this.#spent.has(id) ? { status: 'spent' } : { status: 'unknown' };
    this.#open.delete(id);
    this.#spent.set(id, session.expiresAt);
    return { status: 'taken', session };
  }
}

/** The last TPM clock counters seen for an AK, so that they never go backwards. */
export interface AkCounterStore {
  get(akName: string): Promise<{ resetCount: number; restartCount: number } | undefined>;
  put(akName: string, counters: { resetCount: number; restartCount: number }): Promise<void>;
}

/** An in-process {@link AkCounterStore}. */
export class MemoryAkCounterStore implements AkCounterStore {
  readonly #m = new Map<string, { resetCount: number; restartCount: number }>();
  get(akName: string): Promise<{ resetCount: number; restartCount: number } | undefined> {
    return Promise.resolve(this.#m.get(akName));
  }
  put(akName: string, counters: { resetCount: number; restartCount: number }): Promise<void> {
    this.#m.set(akName, { ...counters });
    return Promise.resolve();
  }
}

/**
 * The runner hosts whose TPM-resident keys issue vTPM EK certificates, and whether each may have
 * its vTPMs attest now (enrolled, not revoked, not quarantined, quoted recently).
 */
export interface VtpmHostChain {
  /** The issuers; `fresh`: not from a cache (a certificate whose issuer was not found). */
  issuers(fresh?: boolean): Promise<readonly VtpmEkIssuer[]>;
  standing(
    host: string,
  ): Promise<{ readonly check: string | undefined; readonly problem: string | undefined }>;
}

/** A verified EK certificate, and the enrolled host whose vTPM CA key issued it (host chain). */
export type VerifiedRunnerEk = VerifiedEkCertificate & { readonly host?: string };

/** TPM evidence that passed every TPM check, for the authority to appraise and sign. */
export interface VerifiedTpmEvidence {
  readonly jobId: string | undefined;
  readonly runnerJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  readonly nonce: string;
  readonly events: readonly MeasurementEvent[];
  readonly pcrs: Readonly<Record<string, string>>;
  readonly akName: string;
  readonly ek: VerifiedRunnerEk;
  readonly quote: TpmsQuote;
  readonly ciToken: string | undefined;
  /** Checks that need the authority's context (reference values, job binding) still to run. */
  readonly failures: CheckFailure[];
}

function issuesOf(e: z.ZodError): CheckFailure[] {
  return e.issues.map((i) => ({
    check: CHECKS.requestMalformed,
    message: `${i.path.join('.') || 'body'}: ${i.message}`,
  }));
}

/**
 * The TPM half of the attestation authority: issues challenges (nonce + MakeCredential to the
 * EK for the AK) and verifies the answers (credential activation, the quote, the event log
 * replay, counters). Challenges live for a minute, are single-use, and are kept where
 * `sessions` says: the store, so that any instance may check the answer.
 */
export class TpmEvidenceVerifier {
  readonly #sessions: AttestationSessions;
  readonly #trusted: () => readonly X509Certificate[];
  readonly #counters: AkCounterStore;
  readonly #now: () => Date;
  readonly #hosts: VtpmHostChain | undefined;

  constructor(options: {
    trustedEkCas: () => readonly X509Certificate[];
    /** vTPM EK certificates issued by enrolled hosts' TPM-resident keys (the home's only path). */
    hostChain?: VtpmHostChain;
    counters?: AkCounterStore;
    /** Where challenges wait for their answer (default: this process only). */
    sessions?: AttestationSessions;
    now?: () => Date;
  }) {
    this.#trusted = options.trustedEkCas;
    this.#counters = options.counters ?? new MemoryAkCounterStore();
    this.#sessions = options.sessions ?? new MemoryAttestationSessions();
    this.#now = options.now ?? (() => new Date());
    this.#hosts = options.hostChain;
  }

  /**
   * Verify an EK certificate: issued by a directly trusted EK CA, or by the vTPM CA key of an
   * enrolled host whose standing allows its vTPMs to attest now.
   * @returns the certificate, or the failed checks
   */
  async #verifyEk(der: Buffer, at: Date): Promise<VerifiedRunnerEk | CheckFailure[]> {
    let first: unknown;
    try {
      return verifyEkCertificate(der, this.#trusted(), at);
    } catch (e) {
      first = e;
    }
    const untrusted = first instanceof EkCertificateError && first.reason === 'untrusted';
    if (!untrusted || this.#hosts === undefined)
      return [
        {
          check: untrusted ? CHECKS.ekCertUntrusted : CHECKS.ekCertMalformed,
          message: isGatehouseError(first) ? first.message : 'unreadable',
        },
      ];
    try {
      let ek: VerifiedRunnerEk & { host: string };
      try {
        ek = verifyVtpmEkCertificate(der, await this.#hosts.issuers(), at);
      } catch (e) {
        // A host enrolled a moment ago may not be in a cached list yet: asked once more, afresh.
        if (!(e instanceof EkCertificateError && e.reason === 'untrusted')) throw e;
        ek = verifyVtpmEkCertificate(der, await this.#hosts.issuers(true), at);
      }
      const standing = await this.#hosts.standing(ek.host);
      if (standing.problem !== undefined)
        return [{ check: standing.check ?? CHECKS.hostUntrusted, message: standing.problem }];
      return ek;
    } catch (e) {
      const reason = e instanceof EkCertificateError ? e.reason : 'malformed';
      return [
        {
          check: reason === 'untrusted' ? CHECKS.ekCertUntrusted : CHECKS.ekCertMalformed,
          message: isGatehouseError(e) ? e.message : 'unreadable',
        },
      ];
    }
  }

  /**
   * The session an answer names, spent now whatever the outcome, rebuilt from what the store
   * kept: the AK parsed again, the EK certificate verified again (against the CAs trusted now, at
   * the time the challenge was issued).
   * @throws EvidenceRejectedError for an unknown, replayed or unusable session
   */
  async #take(id: string): Promise<Session> {
    const taken = await this.#sessions.takeSession(id);
    if (taken.status !== 'taken')
      throw new EvidenceRejectedError(
        [
          taken.status === 'spent'
            ? {
                check: CHECKS.nonceReplayed,
                message: 'this challenge was already answered: a nonce is single-use',
              }
            : {
                check: CHECKS.sessionUnknown,
                message: 'no such attestation session (never issued, or forgotten)',
              },
        ],
        'attestation evidence',
      );
    const unusable = (message: string) =>
      new EvidenceRejectedError([{ check: CHECKS.sessionUnknown, message }], 'attestation evidence');
    let state: z.infer<typeof sessionStateSchema>;
    try {
      state = sessionStateSchema.parse(JSON.parse(taken.session.state));
    } catch {
      throw unusable('the attestation session kept in the store is unreadable');
    }
    const ek = await this.#verifyEk(Buffer.from(state.ekCert, 'base64'), new Date(state.issuedAt));
    if (Array.isArray(ek)) throw new EvidenceRejectedError(ek, 'attestation evidence');
    let ak: TpmtPublic;
    try {
      ak = parseTpm2bPublic(Buffer.from(state.akPublic, 'base64'), 'ak_public');
    } catch (e) {
      throw new EvidenceRejectedError(
        [{ check: CHECKS.akMalformed, message: isGatehouseError(e) ? e.message : 'unusable AK' }],
        'attestation evidence',
      );
    }
    return {
      ak,
      akName: objectName(ak),
      ek,
      runnerJwk: state.runnerJwk,
      jkt: await calculateJwkThumbprint(state.runnerJwk, 'sha256'),
      nonce: Buffer.from(state.nonce, 'base64'),
      secretSha256: Buffer.from(state.secretSha256, 'hex'),
      expiresAt: taken.session.expiresAt,
      jobId: taken.session.jobId,
    };
  }

  /**
   * Check the EK certificate and the AK, and answer with a fresh nonce and a credential only the
   * TPM holding that EK can activate, and only for that AK.
   * @throws EvidenceRejectedError listing every failed check
   */
  async challenge(body: unknown): Promise<Challenge> {
    const parsed = challengeBodySchema.safeParse(body);
    if (!parsed.success) throw new EvidenceRejectedError(issuesOf(parsed.error), 'attestation challenge');
    const req = parsed.data;
    const failures: CheckFailure[] = [];
    const now = this.#now();
    const verified = await this.#verifyEk(Buffer.from(req.ek_cert, 'base64'), now);
    let ek: VerifiedRunnerEk | undefined;
    if (Array.isArray(verified)) failures.push(...verified);
    else ek = verified;
    let ak: TpmtPublic | undefined;
    try {
      ak = parseTpm2bPublic(Buffer.from(req.ak_public, 'base64'), 'ak_public');
      const problem = akAttributeProblem(ak);
      if (problem !== undefined) failures.push({ check: CHECKS.akNotRestrictedSigning, message: problem });
    } catch (e) {
      failures.push({ check: CHECKS.akMalformed, message: isGatehouseError(e) ? e.message : 'unreadable' });
    }
    if (failures.length > 0 || ek === undefined || ak === undefined)
      throw new EvidenceRejectedError(failures, 'attestation challenge');
    const runnerJwk = { kty: 'EC' as const, crv: 'P-256' as const, x: req.runner_key.x, y: req.runner_key.y };
    const nonce = randomBytes(32);
    const secret = randomBytes(32);
    const akName = objectName(ak);
    let credential: Buffer;
    try {
      credential = makeCredential(ek.publicKey, akName, secret);
    } catch (e) {
      throw new EvidenceRejectedError(
        [{ check: CHECKS.ekCertMalformed, message: isGatehouseError(e) ? e.message : 'unusable EK' }],
        'attestation challenge',
      );
    }
    const nowMs = now.getTime();
    const session = randomBytes(18).toString('base64url');
    const expiresAt = nowMs + CHALLENGE_TTL_SECONDS * 1000;
    const state: z.infer<typeof sessionStateSchema> = {
      ekCert: req.ek_cert,
      akPublic: req.ak_public,
      runnerJwk,
      nonce: nonce.toString('base64'),
      secretSha256: createHash('sha256').update(secret).digest('hex'),
      issuedAt: nowMs,
    };
    await this.#sessions.openSession(
      {
        id: session,
        ...(req.job_id === undefined ? {} : { jobId: req.job_id }),
        state: JSON.stringify(state),
        expiresAt,
        createdAt: now.toISOString(),
      },
      MAX_SESSIONS,
    );
    return {
      session,
      nonce: nonce.toString('base64'),
      credential: credential.toString('base64'),
      pcr_selection: { sha256: [...REQUIRED_PCRS] },
      expires: new Date(expiresAt).toISOString(),
    };
  }

  /**
   * Verify the answer to a challenge: the session is known, unspent and unexpired (it is spent
   * now, pass or fail); the activated credential; the quote; the event log replays to the
   * reported PCRs; the AK's reset and restart counts never decrease.
   * @throws EvidenceRejectedError when the session or the body is unusable; otherwise returns
   *   the evidence with any failed checks for the authority to add to and report
   */
  async verify(body: unknown): Promise<VerifiedTpmEvidence> {
    const parsed = evidenceBodySchema.safeParse(body);
    if (!parsed.success) throw new EvidenceRejectedError(issuesOf(parsed.error), 'attestation evidence');
    const req = parsed.data;
    const nowMs = this.#now().getTime();
    // Single use: the session is spent before anything else, whatever the outcome.
    const session = await this.#take(req.session);
    if (nowMs > session.expiresAt) {
      throw new EvidenceRejectedError(
        [
          {
            check: CHECKS.nonceExpired,
            message: `the challenge expired at ${new Date(session.expiresAt).toISOString()}`,
          },
        ],
        'attestation evidence',
      );
    }
    const failures: CheckFailure[] = [];
    const secret = createHash('sha256').update(Buffer.from(req.secret, 'base64')).digest();
    if (!timingSafeEqual(secret, session.secretSha256)) {
      failures.push({
        check: CHECKS.credentialMismatch,
        message: 'the activated credential is wrong: the AK and the EK are not in the same TPM',
      });
    }
    const reported = new Map<number, Buffer>();
    for (const [k, v] of Object.entries(req.pcrs.sha256)) reported.set(Number(k), Buffer.from(v, 'hex'));
    const extra = [...reported.keys()].filter((k) => !REQUIRED_PCRS.includes(k));
    if (extra.length > 0)
      failures.push({
        check: CHECKS.pcrValues,
        message: `PCR values reported that the quote does not cover: ${extra.join(', ')}`,
      });
    const qualifyingData = createHash('sha256')
      .update(session.nonce)
      .update(Buffer.from(session.jkt, 'base64url'))
      .digest();
    const appraisal = appraiseQuote(Buffer.from(req.quote, 'base64'), Buffer.from(req.signature, 'base64'), {
      ak: session.ak,
      qualifyingData,
      pcrs: REQUIRED_PCRS,
      reported,
      qualifiedSigner: akQualifiedNameUnderEk(session.ek.publicKey, session.ak),
    });
    failures.push(...appraisal.failures);
    // The event log must explain every quoted PCR: unextended PCRs stay at reset.
    const replayed = replayToRecord(req.event_log);
    for (const i of REQUIRED_PCRS) {
      const want = replayed[String(i)] ?? PCR_RESET_VALUE;
      if (req.pcrs.sha256[String(i)] !== want)
        failures.push({
          check: CHECKS.eventLogReplay,
          message: `the event log does not replay to the reported PCR ${i}`,
        });
    }
    for (const [i, e] of req.event_log.entries()) {
      if (!REQUIRED_PCRS.includes(e.pcr))
        failures.push({
          check: CHECKS.eventLogReplay,
          message: `event ${i} extends PCR ${e.pcr}, which the quote does not cover`,
        });
    }
    const akName = session.akName.toString('hex');
    const quote = appraisal.quote;
    if (quote !== undefined) {
      const last = await this.#counters.get(akName);
      if (
        last !== undefined &&
        (quote.resetCount < last.resetCount ||
          (quote.resetCount === last.resetCount && quote.restartCount < last.restartCount))
      ) {
        failures.push({
          check: CHECKS.clockRollback,
          message: `the TPM's resetCount/restartCount went back from ${last.resetCount}/${last.restartCount} to ${quote.resetCount}/${quote.restartCount}`,
        });
      }
    }
    if (quote === undefined) throw new EvidenceRejectedError(failures, 'attestation evidence');
    return {
      jobId: session.jobId,
      runnerJwk: session.runnerJwk,
      nonce: session.nonce.toString('base64'),
      events: req.event_log,
      pcrs: req.pcrs.sha256,
      akName,
      ek: session.ek,
      quote,
      ciToken: req.ci_token,
      failures,
    };
  }

  /** Record the counters of an accepted quote (call only once the whole appraisal passed). */
  recordCounters(akName: string, quote: TpmsQuote): Promise<void> {
    return this.#counters.put(akName, { resetCount: quote.resetCount, restartCount: quote.restartCount });
  }
}
