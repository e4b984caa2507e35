/**
 * Runner hosts proving themselves with their own TPM. Enrollment: the EK certificate along a
 * full path to a trusted manufacturer CA, credential activation for the host AK, a quote over the
 * boot PCRs 0–7 whose TCG event log is parsed and replayed, appraisal against the host's boot
 * reference values, and TPM2_Certify of the host's vTPM CA key by that AK. Afterwards, the host
 * quotes again on an interval, on every pool refill and before claiming a job (a fresh-enough
 * record is reused); a quote whose PCRs leave the reference values quarantines the host until the
 * security role clears it (a newer enrollment version).
 */
import { createHash, randomBytes, timingSafeEqual, type X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { AttestationStore, HostAttestationRecord } from '../store/store.ts';
import { makeCredential } from '../tpm/credential.ts';
import {
  type EkCaCrl,
  keyIdentifierOf,
  type VtpmEkIssuer,
  verifyEkCertificatePath,
} from '../tpm/ek-certificate.ts';
import { type BootEvent, describeBootEvent, parseEventLog, replayBootLog } from '../tpm/event-log.ts';
import type { HostTpm } from '../tpm/host-tpm.ts';
import { PCR_RESET_VALUE } from '../tpm/pcr.ts';
import { akAttributeProblem, appraiseQuote, type CheckFailure, verifyTpmSignature } from '../tpm/quote.ts';
import {
  objectName,
  parseCertifyAttest,
  parseTpm2bPublic,
  publicKeyOf,
  TPM_ALG,
  TPMA_OBJECT,
} from '../tpm/structures.ts';
import { CHECKS, EvidenceRejectedError } from './checks.ts';
import type { HostTpmRecord } from './host-tpm-record.ts';
import { HOST_PCRS } from './host-tpm-record.ts';
import type { HostEnrollment } from './hosts.ts';

export { HOST_PCRS };

/** What {@link HostAttestation} needs to know to trust an EK path. */
export interface HostEkTrust {
  anchors: () => readonly X509Certificate[];
  crls: () => readonly EkCaCrl[];
  revokedCas: () => ReadonlySet<string>;
}

function rejected(failures: CheckFailure[], what: string): EvidenceRejectedError {
  return new EvidenceRejectedError(failures, what);
}

/** The quote's qualifying data: SHA-256(purpose ‖ nonce ‖ the host's request-key thumbprint). */
function qualifying(purpose: string, nonce: Buffer, hostKeyThumbprint: string): Buffer {
  return createHash('sha256')
    .update(`gatehouse-host-${purpose}\0`)
    .update(nonce)
    .update(Buffer.from(hostKeyThumbprint, 'base64url'))
    .digest();
}

/** The qualifying data of a host's re-quote over `nonce` (what a host quoting over the API signs). */
export function hostQuoteQualifyingData(nonce: Uint8Array, hostName: string): Buffer {
  return createHash('sha256')
    .update('gatehouse-host-requote\0')
    .update(nonce)
    .update(hostName, 'utf8')
    .digest();
}

/** Appraise a host quote over PCRs 0–7 and its boot log: the failures, and the quoted PCRs. */
function appraiseBootQuote(
  q: { attest: Buffer; signature: Buffer; pcrs: Record<string, string> },
  log: Buffer,
  akPublic: Buffer,
  qualifyingData: Buffer,
  reference: Readonly<Record<string, string>> | undefined,
): { failures: CheckFailure[]; events: BootEvent[] } {
  const failures: CheckFailure[] = [];
  const ak = parseTpm2bPublic(akPublic, 'host AK');
  const reported = new Map<number, Buffer>();
  for (const i of HOST_PCRS) reported.set(i, Buffer.from(q.pcrs[String(i)] ?? '', 'hex'));
  failures.push(
    ...appraiseQuote(q.attest, q.signature, { ak, qualifyingData, pcrs: HOST_PCRS, reported }).failures,
  );
  let events: BootEvent[] = [];
  try {
    events = parseEventLog(log).events;
    const replayed = replayBootLog(events);
    for (const i of HOST_PCRS)
      if ((replayed[String(i)] ?? PCR_RESET_VALUE) !== q.pcrs[String(i)])
        failures.push({
          check: CHECKS.eventLogReplay,
          message: `the host's boot event log does not replay to PCR ${i}`,
        });
  } catch (e) {
    failures.push({
      check: CHECKS.eventLogMalformed,
      message: isGatehouseError(e) ? e.message : 'unreadable boot log',
    });
  }
  if (reference !== undefined) {
    for (const i of HOST_PCRS) {
      if (reference[String(i)] === q.pcrs[String(i)]) continue;
      const changed = events.filter((e) => e.pcr === i).map(describeBootEvent);
      failures.push({
        check: CHECKS.hostBootState,
        message: `host boot PCR ${i} is ${q.pcrs[String(i)]?.slice(0, 16)}…, not its reference value ${reference[String(i)]?.slice(0, 16)}…${changed.length > 0 ? ` (its events: ${changed.slice(0, 6).join('; ')})` : ''}`,
      });
    }
  }
  return { failures, events };
}

/** Attributes the vTPM CA key must have: born in the TPM, bound to it and to its parent, signing only. */
const CA_KEY_REQUIRED =
  TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.sign;

/**
 * Verify a TPM2_Certify of the vTPM CA key by the host AK: made by the TPM, of type CERTIFY, over
 * `qualifyingData`, naming exactly that key, signed by the AK; the key fixedTPM|fixedParent,
 * sensitiveDataOrigin, signing and not decrypting, SHA-256 named.
 */
function verifyCaCertify(
  certify: { attest: Buffer; signature: Buffer },
  akPublic: Buffer,
  caPublic: Buffer,
  qualifyingData: Buffer,
): CheckFailure[] {
  const fail = (message: string): CheckFailure[] => [{ check: CHECKS.vtpmCaKey, message }];
  try {
    const ca = parseTpm2bPublic(caPublic, 'vTPM CA key');
    if ((ca.objectAttributes & CA_KEY_REQUIRED) !== CA_KEY_REQUIRED)
      return fail(
        'the vTPM CA key is not a signing key born in and bound to the host TPM (fixedTPM, fixedParent, sensitiveDataOrigin, sign)',
      );
    if ((ca.objectAttributes & TPMA_OBJECT.decrypt) !== 0) return fail('the vTPM CA key can also decrypt');
    if (ca.nameAlg !== TPM_ALG.SHA256 || ca.ecc === undefined)
      return fail('the vTPM CA key is not an ECC key named with SHA-256');
    const info = parseCertifyAttest(certify.attest);
    if (!info.extraData.equals(qualifyingData))
      return fail("the certification's qualifying data is not this enrollment's");
    if (!info.name.equals(objectName(ca)))
      return fail('the certification names another key than the vTPM CA key');
    if (!verifyTpmSignature(certify.signature, parseTpm2bPublic(akPublic, 'host AK'), certify.attest))
      return fail('the certification of the vTPM CA key is not signed by the host AK');
    return [];
  } catch (e) {
    return fail(isGatehouseError(e) ? e.message : 'the certification does not parse');
  }
}

const b64 = (max: number) =>
  z
    .string()
    .max(Math.ceil(max / 3) * 4)
    .refine((v) => Buffer.from(v, 'base64').toString('base64') === v, 'must be canonical base64');

/** The body of POST /v1/hosts/:name/quote. */
const hostQuoteBodySchema = z.strictObject({
  session: z.string().regex(/^[A-Za-z0-9_-]{22,64}$/),
  quote: b64(4096),
  signature: b64(1024),
  pcrs: z.record(z.string().regex(/^[0-7]$/), z.string().regex(/^[0-9a-f]{64}$/)),
  boot_log: b64(2 * 1024 * 1024),
});

/** A host's standing for the authority: whether its vTPMs may attest, and why not. */
export interface HostStanding {
  readonly host: string;
  readonly problem: string | undefined;
  readonly check: string | undefined;
}

/** Host attestation: enrollment evidence, re-quotes, quarantine and the vTPM issuers it vouches for. */
export class HostAttestation {
  readonly #store: AttestationStore;
  readonly #trust: HostEkTrust;
  readonly #intervalMs: number;
  readonly #maxAgeMs: number;
  readonly #now: () => Date;

  constructor(options: {
    store: AttestationStore;
    trust: HostEkTrust;
    /** How often a host quotes again (seconds); default 300. */
    intervalSeconds?: number;
    /** How old the last quote may be when a vTPM of the host attests (seconds); default twice the interval. */
    maxAgeSeconds?: number;
    now?: () => Date;
  }) {
    this.#store = options.store;
    this.#trust = options.trust;
    this.#intervalMs = (options.intervalSeconds ?? 300) * 1000;
    this.#maxAgeMs = (options.maxAgeSeconds ?? 2 * (options.intervalSeconds ?? 300)) * 1000;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Appraise a host TPM for enrollment, the verifier's side done here against the host TPM it is
   * given: EK path, credential activation for the AK, a boot quote with its event log (against
   * `bootReference` when given, else the values quoted become the reference the security role
   * signs), and the certification of the vTPM CA key.
   * @returns the TPM record for the enrollment and the boot events
   * @throws EvidenceRejectedError listing every failed check
   */
  async appraiseForEnrollment(
    tpm: HostTpm,
    hostKeyThumbprint: string,
    bootReference?: Readonly<Record<string, string>>,
  ): Promise<{ tpm: HostTpmRecord; events: BootEvent[] }> {
    const what = 'host enrollment';
    const ekDer = await tpm.ekCertificate();
    let ek: ReturnType<typeof verifyEkCertificatePath>;
    try {
      const { X509Certificate } = await import('node:crypto');
      ek = verifyEkCertificatePath(ekDer, {
        anchors: this.#trust.anchors(),
        intermediates: (await tpm.ekIntermediates()).map((p) => new X509Certificate(p)),
        crls: this.#trust.crls(),
        revokedCas: this.#trust.revokedCas(),
        now: this.#now(),
      });
    } catch (e) {
      const untrusted = isGatehouseError(e) && 'reason' in e && e.reason === 'untrusted';
      throw rejected(
        [
          {
            check: untrusted ? CHECKS.ekCertUntrusted : CHECKS.ekCertMalformed,
            message: isGatehouseError(e) ? e.message : 'unreadable',
          },
        ],
        what,
      );
    }
    const akPublic = await tpm.ensureAk();
    const ak = parseTpm2bPublic(akPublic, 'host AK');
    const akProblem = akAttributeProblem(ak);
    if (akProblem !== undefined)
      throw rejected([{ check: CHECKS.akNotRestrictedSigning, message: akProblem }], what);
    // Credential activation: only the TPM holding the certified EK recovers the secret, and only
    // for an AK of exactly this Name.
    const secret = randomBytes(32);
    const activated = await tpm.activateCredential(makeCredential(ek.publicKey, objectName(ak), secret));
    const failures: CheckFailure[] = [];
    if (activated.length !== secret.length || !timingSafeEqual(activated, secret))
      failures.push({
        check: CHECKS.credentialMismatch,
        message: 'the host AK is not in the TPM holding the certified EK',
      });
    const nonce = randomBytes(32);
    const quote = await tpm.quote(qualifying('enroll', nonce, hostKeyThumbprint), HOST_PCRS);
    const boot = appraiseBootQuote(
      quote,
      await tpm.bootLog(),
      akPublic,
      qualifying('enroll', nonce, hostKeyThumbprint),
      bootReference,
    );
    failures.push(...boot.failures);
    const caPublic = await tpm.ensureVtpmCaKey();
    const certify = await tpm.certifyVtpmCaKey(qualifying('vtpm-ca', nonce, hostKeyThumbprint));
    failures.push(
      ...verifyCaCertify(certify, akPublic, caPublic, qualifying('vtpm-ca', nonce, hostKeyThumbprint)),
    );
    if (failures.length > 0) throw rejected(failures, what);
    const bootPcrs: Record<string, string> = {};
    for (const i of HOST_PCRS) bootPcrs[String(i)] = quote.pcrs[String(i)] ?? '';
    return {
      tpm: {
        ekCertSha256: createHash('sha256').update(ekDer).digest('hex'),
        ekPath: [...ek.path],
        akPublic: akPublic.toString('base64'),
        akName: objectName(ak).toString('hex'),
        vtpmCaPublic: caPublic.toString('base64'),
        vtpmCaKeyId: keyIdentifierOf(publicKeyOf(parseTpm2bPublic(caPublic, 'vTPM CA key'))),
        bootPcrs,
      },
      events: boot.events,
    };
  }

  /**
   * Have the host quote its boot PCRs again, unless its last quote is younger than the interval
   * (and was trusted, against this enrollment): the cheap path before every job. A quote that
   * leaves the reference values quarantines the host, and `onQuarantine` runs.
   * @returns the record now in force
   * @throws GatehouseError TPM_UNAVAILABLE when the host TPM cannot quote (nothing is recorded)
   */
  async requote(
    host: HostEnrollment,
    openTpm: HostTpm | (() => Promise<HostTpm>),
    options: { force?: boolean; onQuarantine?: (record: HostAttestationRecord) => Promise<void> } = {},
  ): Promise<HostAttestationRecord> {
    const enrolled = host.tpm;
    if (enrolled === undefined)
      throw new GatehouseError('BAD_INPUT', `runner host ${host.name} is not enrolled with a TPM`);
    const last = await this.#store.hostAttestation(host.name);
    const now = this.#now().getTime();
    if (
      options.force !== true &&
      last !== undefined &&
      last.enrollmentVersion === host.version &&
      (last.status === 'quarantined' || now - last.quotedAt < this.#intervalMs)
    )
      return last;
    const nonce = randomBytes(32);
    // The TPM is reached only when a quote is due: the fresh path is one store read.
    const tpm = typeof openTpm === 'function' ? await openTpm() : openTpm;
    const quote = await tpm.quote(hostQuoteQualifyingData(nonce, host.name), HOST_PCRS);
    return this.#record(host, nonce, quote, await tpm.bootLog(), options.onQuarantine);
  }

  /**
   * Appraise a boot-state quote by the host's enrolled AK over `nonce` and keep the result: the
   * log replayed, the PCRs equal to the enrolled reference values, else quarantined.
   */
  async #record(
    host: HostEnrollment,
    nonce: Buffer,
    quote: { attest: Buffer; signature: Buffer; pcrs: Record<string, string> },
    log: Buffer,
    onQuarantine?: (record: HostAttestationRecord) => Promise<void>,
  ): Promise<HostAttestationRecord> {
    const enrolled = host.tpm;
    if (enrolled === undefined)
      throw new GatehouseError('BAD_INPUT', `runner host ${host.name} is not enrolled with a TPM`);
    // Checked against the enrolled AK: a different TPM answering (a copied home elsewhere) fails.
    const akPublic = Buffer.from(enrolled.akPublic, 'base64');
    const boot = appraiseBootQuote(
      quote,
      log,
      akPublic,
      hostQuoteQualifyingData(nonce, host.name),
      enrolled.bootPcrs,
    );
    const record: HostAttestationRecord = {
      host: host.name,
      enrollmentVersion: host.version,
      status: boot.failures.length === 0 ? 'trusted' : 'quarantined',
      quotedAt: this.#now().getTime(),
      ...(boot.failures.length === 0
        ? {}
        : {
            reason: boot.failures
              .map((f) => `${f.check}: ${f.message}`)
              .join('; ')
              .slice(0, 2000),
          }),
      pcrs: Object.fromEntries(HOST_PCRS.map((i) => [String(i), quote.pcrs[String(i)] ?? ''])),
    };
    await this.#store.putHostAttestation(record);
    if (record.status === 'quarantined') await onQuarantine?.(record);
    return record;
  }

  /**
   * A host quoting over the API, step 1: nothing to do when its last quote under this enrollment
   * is younger than the interval (or it is quarantined), else a single-use nonce for 60 seconds.
   */
  async quoteChallenge(
    host: HostEnrollment,
  ): Promise<{ fresh: true } | { fresh: false; session: string; nonce: string }> {
    if (host.tpm === undefined)
      throw new GatehouseError('BAD_INPUT', `runner host ${host.name} is not enrolled with a TPM`);
    const last = await this.#store.hostAttestation(host.name);
    const now = this.#now().getTime();
    if (
      last !== undefined &&
      last.enrollmentVersion === host.version &&
      (last.status === 'quarantined' || now - last.quotedAt < this.#intervalMs)
    )
      return { fresh: true };
    const nonce = randomBytes(32);
    const session = randomBytes(18).toString('base64url');
    await this.#store.openSession(
      {
        id: session,
        state: JSON.stringify({ kind: 'host-quote', host: host.name, nonce: nonce.toString('base64') }),
        expiresAt: now + 60_000,
        createdAt: new Date(now).toISOString(),
      },
      10_000,
    );
    return { fresh: false, session, nonce: nonce.toString('base64') };
  }

  /**
   * A host quoting over the API, step 2: the answer to its challenge (single use, 60 s), appraised
   * and kept like a local re-quote.
   * @throws GatehouseError BAD_INPUT for an unknown, spent, expired or foreign session, or a malformed body
   */
  async submitQuote(host: HostEnrollment, body: unknown): Promise<HostAttestationRecord> {
    const parsed = hostQuoteBodySchema.safeParse(body);
    if (!parsed.success)
      throw new GatehouseError(
        'BAD_INPUT',
        `host quote ${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? 'malformed'}`,
      );
    const taken = await this.#store.takeSession(parsed.data.session);
    if (taken.status !== 'taken')
      throw new GatehouseError(
        'BAD_INPUT',
        `host quote session ${taken.status === 'spent' ? 'already answered' : 'unknown'}`,
      );
    let state: { kind?: string; host?: string; nonce?: string } = {};
    try {
      state = JSON.parse(taken.session.state) as typeof state;
    } catch {
      // unreadable: refused below
    }
    if (state.kind !== 'host-quote' || state.host !== host.name || typeof state.nonce !== 'string')
      throw new GatehouseError('BAD_INPUT', "the host quote session is not this host's");
    if (this.#now().getTime() > taken.session.expiresAt)
      throw new GatehouseError('BAD_INPUT', 'the host quote challenge expired');
    const b = parsed.data;
    return this.#record(
      host,
      Buffer.from(state.nonce, 'base64'),
      { attest: Buffer.from(b.quote, 'base64'), signature: Buffer.from(b.signature, 'base64'), pcrs: b.pcrs },
      Buffer.from(b.boot_log, 'base64'),
    );
  }

  /**
   * Whether a host's vTPMs may attest now: enrolled with a TPM, not revoked, not quarantined (for
   * this enrollment version), and quoted within the maximum age.
   */
  async standing(host: HostEnrollment | undefined, name: string): Promise<HostStanding> {
    const no = (check: string, problem: string): HostStanding => ({ host: name, check, problem });
    if (host === undefined) return no(CHECKS.hostUnknown, `runner host ${name} is not enrolled`);
    if (host.revoked === true) return no(CHECKS.hostUntrusted, `runner host ${name} is revoked`);
    if (host.tpm === undefined)
      return no(CHECKS.attestationMode, `runner host ${name} is not enrolled with a TPM`);
    const last = await this.#store.hostAttestation(name);
    if (last !== undefined && last.enrollmentVersion === host.version && last.status === 'quarantined')
      return no(
        CHECKS.hostQuarantined,
        `runner host ${name} is quarantined: ${last.reason ?? 'its boot state drifted'}`,
      );
    if (last === undefined || last.enrollmentVersion !== host.version)
      return no(
        CHECKS.hostQuoteStale,
        `runner host ${name} has not quoted its boot state since enrollment version ${host.version}`,
      );
    const age = this.#now().getTime() - last.quotedAt;
    if (age > this.#maxAgeMs)
      return no(
        CHECKS.hostQuoteStale,
        `runner host ${name}'s last boot-state quote is ${Math.round(age / 1000)} s old (at most ${this.#maxAgeMs / 1000} s)`,
      );
    return { host: name, check: undefined, problem: undefined };
  }

  /** The vTPM CA keys of every host enrolled with a TPM, with the host each belongs to. */
  static issuersOf(hosts: readonly HostEnrollment[]): VtpmEkIssuer[] {
    const out: VtpmEkIssuer[] = [];
    for (const h of hosts) {
      if (h.tpm === undefined) continue;
      try {
        out.push({
          host: h.name,
          keyId: h.tpm.vtpmCaKeyId,
          publicKey: publicKeyOf(parseTpm2bPublic(Buffer.from(h.tpm.vtpmCaPublic, 'base64'), 'vTPM CA key')),
        });
      } catch {
        // An unusable key vouches for nothing.
      }
    }
    return out;
  }
}
