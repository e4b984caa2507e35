/** TPM 2.0 structures and arithmetic, MakeCredential, quote and EK-certificate verification, vTPMs. */
export { kdfa, kdfe, makeCredential, parseCredentialBlob } from './credential.ts';
export { EkCertificateError, parseTrustedCa, TCG_OIDS, verifyEkCertificate } from './ek-certificate.ts';
export {
  extendPcr,
  isSha256Hex,
  PCR_COUNT,
  PCR_RESET_VALUE,
  type PcrExtendEvent,
  replayEventLog,
  type Sha256Hex,
} from './pcr.ts';
export {
  ensurePlatformCa,
  PLATFORM_CA_KEY_PURPOSE,
  platformCaPaths,
  sealPlainPlatformCaKey,
  withPlatformCaKeyForTool,
} from './platform-ca.ts';
export { akAttributeProblem, appraiseQuote, type CheckFailure, QUOTE_CHECKS } from './quote.ts';
export {
  objectName,
  parseAttest,
  parseSignature,
  parseTpm2bPublic,
  TPM_ALG,
  TPMA_OBJECT,
} from './structures.ts';
export { manufactureVtpm, VirtualTpm, VTPM_HANDLES, VtpmPool } from './swtpm.ts';
