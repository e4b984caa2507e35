import type { CheckFailure } from '../tpm/quote.ts';
import { CHECKS } from './checks.ts';
import type { PlatformReferenceValues } from './evidence/platform-evidence.ts';
import { type MeasurementEvent, PCR_ALLOCATION } from './measurement.ts';

/** Known-good digests a runner's measurements are appraised against. */
export interface ReferenceValues {
  /** Allowed agent manifest digests. */
  readonly agent: readonly string[];
  /** Allowed sandbox-profile digests. */
  readonly sandboxProfile: readonly string[];
  /** Absolute binary path → allowed digests. Every listed path must be measured. */
  readonly toolchain: Readonly<Record<string, readonly string[]>>;
  /** Reference values of cloud and TEE evidence, per kind; a kind without them approves nothing. */
  readonly platforms?: PlatformReferenceValues | undefined;
}

/**
 * Appraise a replayed event log against reference values and the job binding: each event in its
 * allocated PCR, exactly one sandbox-profile, agent and job event, every digest a reference
 * value, every required toolchain binary measured once, and the job event binding this job and
 * nonce. Replay against claimed or quoted PCRs is the caller's check.
 */
export function appraiseBaseline(
  events: readonly MeasurementEvent[],
  reference: ReferenceValues,
  jobId: string | undefined,
  expectedJobDigest: string | undefined,
): CheckFailure[] {
  const out: CheckFailure[] = [];
  const log = (message: string) => out.push({ check: CHECKS.eventLogMalformed, message });
  const ref = (message: string) => out.push({ check: CHECKS.referenceValues, message });
  // Each event sits in its allocated PCR, and each singleton appears exactly once, so that a
  // second, unappraised agent or profile cannot hide next to an approved one.
  for (const [i, e] of events.entries()) {
    if (e.pcr !== PCR_ALLOCATION[e.type])
      log(`event ${i} (${e.type}) is in PCR ${e.pcr}, not PCR ${PCR_ALLOCATION[e.type]}`);
  }
  const ofType = (t: MeasurementEvent['type']) => events.filter((e) => e.type === t);
  for (const t of ['sandbox-profile', 'agent', 'job'] as const) {
    const n = ofType(t).length;
    if (n !== 1) log(`expected exactly one ${t} event, got ${n}`);
  }
  for (const e of ofType('sandbox-profile')) {
    if (!reference.sandboxProfile.includes(e.digest))
      ref(`sandbox profile digest ${e.digest} is not a reference value`);
  }
  for (const e of ofType('agent')) {
    if (!reference.agent.includes(e.digest)) ref(`agent digest ${e.digest} is not a reference value`);
  }
  const seen = new Set<string>();
  for (const e of ofType('toolchain')) {
    if (seen.has(e.name)) log(`toolchain ${e.name} is measured more than once`);
    seen.add(e.name);
    const allowed = Object.hasOwn(reference.toolchain, e.name) ? reference.toolchain[e.name] : undefined;
    if (allowed === undefined) ref(`toolchain ${e.name} has no reference value`);
    else if (!allowed.includes(e.digest))
      ref(`toolchain ${e.name} digest ${e.digest} is not a reference value`);
  }
  for (const path of Object.keys(reference.toolchain)) {
    if (!seen.has(path)) ref(`toolchain ${path} is required by the reference values but was not measured`);
  }
  // Freshness and binding: the job event commits to this job's nonce.
  for (const e of ofType('job')) {
    if (jobId !== undefined && e.name !== jobId)
      out.push({ check: CHECKS.jobBinding, message: `the job event names job '${e.name}', not '${jobId}'` });
    if (expectedJobDigest !== undefined && e.digest !== expectedJobDigest) {
      out.push({
        check: CHECKS.jobBinding,
        message: 'the job event digest does not bind this job and nonce',
      });
    }
  }
  return out;
}
