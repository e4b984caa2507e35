/** TPM 2.0 structures and arithmetic. Real vTPM quotes join this surface later. */
export {
  extendPcr,
  isSha256Hex,
  PCR_COUNT,
  PCR_RESET_VALUE,
  type PcrExtendEvent,
  replayEventLog,
  type Sha256Hex,
} from './pcr.ts';
