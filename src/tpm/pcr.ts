import { createHash } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';

/** A SHA-256 PCR value or event digest: 32 bytes as 64 lowercase hex characters. */
export type Sha256Hex = string;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The value of every SHA-256 PCR after reset: 32 zero bytes. */
export const PCR_RESET_VALUE: Sha256Hex = '0'.repeat(64);

/** PCR indices a TPM 2.0 has (0–23). */
export const PCR_COUNT = 24;

/** True when `s` is 64 lowercase hex characters. */
export function isSha256Hex(s: unknown): s is Sha256Hex {
  return typeof s === 'string' && SHA256_HEX.test(s);
}

/**
 * One TPM2_PCR_Extend on the SHA-256 bank: `new = SHA-256(old ‖ digest)`.
 * @throws GatehouseError BAD_INPUT when either value is not 32 bytes of lowercase hex
 */
export function extendPcr(current: Sha256Hex, digest: Sha256Hex): Sha256Hex {
  if (!isSha256Hex(current)) throw new GatehouseError('BAD_INPUT', 'PCR value is not 32 bytes of hex');
  if (!isSha256Hex(digest)) throw new GatehouseError('BAD_INPUT', 'event digest is not 32 bytes of hex');
  return createHash('sha256')
    .update(Buffer.from(current, 'hex'))
    .update(Buffer.from(digest, 'hex'))
    .digest('hex');
}

/** The part of an event-log entry that PCR replay reads. */
export interface PcrExtendEvent {
  readonly pcr: number;
  readonly digest: Sha256Hex;
}

/**
 * Replay an event log from reset, in order, and return the final value of every PCR it touched,
 * keyed by PCR index. PCRs the log never extends are absent (not reported as the reset value), so
 * that a comparison with claimed values also catches a claimed PCR the log cannot explain.
 * @throws GatehouseError BAD_INPUT on a PCR index outside 0–23 or a malformed digest
 */
export function replayEventLog(events: readonly PcrExtendEvent[]): Record<number, Sha256Hex> {
  const pcrs: Record<number, Sha256Hex> = {};
  for (const [i, event] of events.entries()) {
    if (!Number.isInteger(event.pcr) || event.pcr < 0 || event.pcr >= PCR_COUNT) {
      throw new GatehouseError('BAD_INPUT', `event ${i} names PCR ${String(event.pcr)}, outside 0–23`);
    }
    if (!isSha256Hex(event.digest)) {
      throw new GatehouseError('BAD_INPUT', `event ${i} has a digest that is not 32 bytes of hex`);
    }
    pcrs[event.pcr] = extendPcr(pcrs[event.pcr] ?? PCR_RESET_VALUE, event.digest);
  }
  return pcrs;
}
