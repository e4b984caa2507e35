/**
 * What the control plane tells security teams about, as it happens. Parts that decide (the job
 * pipeline, triage) hand an `AlertEvent` to an `AlertSink`; the sink turns it into a CloudEvent
 * and delivers it (src/alerts/webhook-dispatcher.ts). A sink never throws into its caller: an
 * alert that cannot be recorded must not change a decision.
 */

/** The CloudEvent types gatehouse emits (reverse-DNS, as CloudEvents recommends). */
export const ALERT_TYPES = [
  'dev.gatehouse.decision.denied',
  'dev.gatehouse.decision.quarantined',
  'dev.gatehouse.triage.released',
  'dev.gatehouse.triage.rejected',
  'dev.gatehouse.attestation.refused',
  'dev.gatehouse.artifact.revoked',
  'dev.gatehouse.reevaluation.flagged',
  'dev.gatehouse.host.drift',
  'dev.gatehouse.provisioning.surge',
  'dev.gatehouse.runner.unenrolled',
] as const;

export type AlertType = (typeof ALERT_TYPES)[number];

/** One thing that happened: its type, what it is about, and its facts (no secret, ever). */
export interface AlertEvent {
  type: AlertType;
  /** What the event is about, e.g. `decisions/<id>` or `jobs/<id>`. */
  subject: string;
  data: Record<string, unknown>;
}

/** Takes an event to deliver; returns once it is recorded (never rejects). */
export type AlertSink = (event: AlertEvent) => Promise<void>;
