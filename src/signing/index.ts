export type { BundleLogEntry, ParsedBundle, ParsedTlogEntry } from './bundle.ts';
export { buildBundle, parseBundle } from './bundle.ts';
export type { LeafExtensions, LeafRequest } from './ca.ts';
export { FULCIO_OIDS, InternalCa } from './ca.ts';
export type { Envelope } from './dsse.ts';
export { parseEnvelope, preAuthEncoding, signEnvelope, verifyEnvelope } from './dsse.ts';
export { EphemeralSigner, FileKeySigner } from './file-key-signer.ts';
export type { ProvenanceInput, ResourceDescriptor, SlsaProvenanceV1, Statement, Subject } from './intoto.ts';
export {
  INTOTO_PAYLOAD_TYPE,
  makeStatement,
  parseStatement,
  SLSA_PROVENANCE_V1,
  STATEMENT_V1_TYPE,
  slsaProvenance,
  statementPayload,
} from './intoto.ts';
export type { Signer } from './signer.ts';
export type { ParsedTrustedRoot, TrustedRootInput, TrustedRootJson } from './trust-root.ts';
export { buildTrustedRoot, parseTrustedRoot, TRUSTED_ROOT_MEDIA_TYPE } from './trust-root.ts';
