import { GatehouseError } from '../common/errors.ts';
import type { JobState } from '../store/store.ts';

/**
 * The job state machine. A job moves forward only: queued → running (its runner attested) →
 * submitted (outputs handed to the gate) → allowed | denied | quarantined; any unfinished state may
 * end in failed, and a job not yet submitted in cancelled (its runner was stopped on purpose).
 * Final states never change again.
 */
const transitions: Readonly<Record<JobState, readonly JobState[]>> = {
  queued: ['running', 'failed', 'cancelled'],
  running: ['submitted', 'failed', 'cancelled'],
  submitted: ['allowed', 'denied', 'quarantined', 'failed'],
  allowed: [],
  denied: [],
  quarantined: [],
  failed: [],
  cancelled: [],
};

/** @throws GatehouseError CONFLICT when `from → to` is not a transition of the machine */
export function assertTransition(jobId: string, from: JobState, to: JobState): void {
  if (!transitions[from].includes(to)) {
    throw new GatehouseError('CONFLICT', `job ${jobId} is ${from} and cannot become ${to}`);
  }
}
