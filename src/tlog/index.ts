export type { Checkpoint, CheckpointKey, NoteSignature } from './checkpoint.ts';
export {
  keyHint,
  parseCheckpointBody,
  parseSignedNote,
  signCheckpoint,
  verifyCheckpoint,
} from './checkpoint.ts';
export {
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
export type {
  AppendedEntry,
  ConsistencyProof,
  InclusionProof,
  TransparencyLogOptions,
} from './transparency-log.ts';
export { decisionEntryBody, dsseEntryBody, setPayload, TransparencyLog } from './transparency-log.ts';
