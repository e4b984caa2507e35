/**
 * Offline verification of a gatehouse (Sigstore v0.3, DSSE) bundle against a trusted root: the log
 * entry (SET, checkpoint, inclusion proof, body), the certificate chain at the integrated time, its
 * signed certificate timestamps, the identity, the DSSE signature and the in-toto subject. Each check throws a GatehouseError with
 * its own code; nothing is returned unless everything holds.
 */
import '../signing/reflect-metadata-shim.ts';
import { createPublicKey, verify as cryptoVerify, type KeyObject, X509Certificate } from 'node:crypto';
import { sha256 } from '../common/encoding.ts';
import { type ErrorCode, GatehouseError } from '../common/errors.ts';
import type { ParsedBundle, ParsedTlogEntry } from '../signing/bundle.ts';
import { verifyEnvelope } from '../signing/dsse.ts';
import { INTOTO_PAYLOAD_TYPE, parseStatement, type Statement, type Subject } from '../signing/intoto.ts';
import {
  isWithin,
  type ParsedTrustedRoot,
  parseTrustedRoot,
  type TrustedLog,
} from '../signing/trust-root.ts';
import { verifyWitnessQuorum, type WitnessKey } from '../tlog/cosignature.ts';
import { verifySigningCertificate } from './ca-chain.ts';
import { verifyCertificateIdentity } from './cert-identity.ts';
import { verifyScts } from './sct.ts';
import { verifiedTimestampTime } from './timestamps.ts';
import {
  checkInclusionProof,
  checkProofCheckpoint,
  inclusionPromisePayload,
  parseEntryBody,
} from './tlog-inclusion.ts';

export interface VerifyArtifactOptions {
  /** SHA-256 of the artifact. */
  artifactDigest: Uint8Array;
  bundle: ParsedBundle;
  /** The trusted root: its JSON document, or already parsed. */
  trustedRoot: unknown;
  /** Expected SAN URI of the signing certificate (exact match). */
  identity?: string;
  /** Expected Fulcio issuer extension (exact match). */
  issuer?: string;
  /** Not used for certificate validity (the log's integrated time is); reserved for policy. */
  now?: Date;
  /**
   * Require the checkpoint of each log entry to carry cosignatures by `threshold` distinct
   * witnesses among `keys` (c2sp.org/tlog-cosignature): the log showed this tree to them.
   */
  witnesses?: { keys: readonly WitnessKey[]; threshold: number };
}

export interface VerifiedArtifact {
  /** Times from RFC 3161 timestamps the bundle carries, each verified. */
  timestamps: Date[];
  identity: string;
  issuer: string | undefined;
  subjects: Subject[];
  predicateType: string;
  statement: Statement;
  logIndex: number;
  /** When the log integrated the entry: the time the certificate was checked at. */
  integratedTime: Date;
  /** The required witnesses that cosigned the entry's checkpoint (names). */
  witnesses: string[];
}

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new GatehouseError(code, message, cause === undefined ? {} : { cause });
}

/**
 * Verify a bundle for an artifact, offline.
 * @throws GatehouseError BAD_BUNDLE, LOG_PROOF_INVALID, CHECKPOINT_INVALID, CERTIFICATE_INVALID,
 *   IDENTITY_MISMATCH, SIGNATURE_INVALID, SUBJECT_MISMATCH
 */
export function verifyArtifactBundle(options: VerifyArtifactOptions): VerifiedArtifact {
  const root = isParsedRoot(options.trustedRoot)
    ? options.trustedRoot
    : parseTrustedRoot(options.trustedRoot);
  const { bundle } = options;
  if (options.artifactDigest.length !== 32) fail('BAD_INPUT', 'the artifact digest is not a SHA-256 digest');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(bundle.leafCertificate);
  } catch (e) {
    fail('BAD_BUNDLE', 'the bundle certificate is not a valid X.509 certificate', e);
  }

  // 1. The log: every entry must be proven; the first SET-verified one gives the signing time.
  let integratedTime: Date | undefined;
  let logIndex = -1;
  const witnessed = new Set<string>();
  for (const [i, entry] of bundle.tlogEntries.entries()) {
    const log = findLog(root, entry, i);
    verifyInclusionPromise(entry, log, i);
    verifyEntryInclusion(entry, log, i);
    verifyEntryBody(entry, bundle, i);
    // The checkpoint was verified with the log key above; its cosignatures sign the same body.
    if (options.witnesses !== undefined) {
      const { keys, threshold } = options.witnesses;
      const found = verifyWitnessQuorum(entry.inclusionProof?.checkpoint ?? '', keys, threshold, options.now);
      for (const f of found) witnessed.add(f.key.name);
    }
    if (integratedTime === undefined) {
      integratedTime = new Date(entry.integratedTime * 1000);
      logIndex = entry.logIndex;
    }
  }
  if (integratedTime === undefined) fail('LOG_PROOF_INVALID', 'the bundle has no transparency log entry');

  // 2. Trusted time from timestamp authorities, over the envelope signature: independent of the log.
  const times = [integratedTime];
  const signature = Buffer.from(bundle.envelope.signatures[0]?.sig ?? '', 'base64');
  for (const [i, der] of bundle.rfc3161Timestamps.entries()) {
    times.push(verifiedTimestampTime(der, signature, root.timestampAuthorities, i));
  }

  // 3. The certificate, at every verified time (a short-lived leaf has long expired by now). Each
  // time is checked on its own: a CA trusted at that time suffices.
  let issuerCert: X509Certificate | undefined;
  for (const t of times)
    issuerCert = verifySigningCertificate(leaf, root.certificateAuthorities, [t], 'integrated');

  // 3b. The leaf was logged: an SCT from a CT log the root trusts (a root that lists CT logs
  // promises every leaf is in one), so a certificate issued outside the CA's logged path, by a
  // stolen intermediate key say, is refused even though it chains.
  if (root.ctlogs.length > 0 && issuerCert !== undefined) verifyScts(leaf, issuerCert, root.ctlogs);
  const ident = verifyCertificateIdentity(leaf, 'URI', options);

  // 3. The signature, by the certified key.
  const { payloadType, payload } = verifyEnvelope(bundle.envelope, leaf.publicKey);

  // 4. The statement names the artifact.
  if (payloadType !== INTOTO_PAYLOAD_TYPE) {
    fail('BAD_BUNDLE', `the envelope payload type is '${payloadType}', expected '${INTOTO_PAYLOAD_TYPE}'`);
  }
  let statement: Statement;
  try {
    statement = parseStatement(payload);
  } catch (e) {
    fail('BAD_BUNDLE', e instanceof Error ? e.message : 'the in-toto statement is malformed', e);
  }
  const want = Buffer.from(options.artifactDigest).toString('hex');
  if (!statement.subject.some((s) => s.digest.sha256 === want)) {
    fail('SUBJECT_MISMATCH', `no subject of the attestation has the artifact digest sha256:${want}`);
  }
  return {
    timestamps: times.slice(1),
    identity: ident.identity,
    issuer: ident.issuer,
    subjects: statement.subject,
    predicateType: statement.predicateType,
    statement,
    logIndex,
    integratedTime,
    witnesses: [...witnessed],
  };
}

function isParsedRoot(v: unknown): v is ParsedTrustedRoot {
  return (
    typeof v === 'object' &&
    v !== null &&
    Array.isArray((v as ParsedTrustedRoot).tlogs) &&
    (v as ParsedTrustedRoot).tlogs.every((t) => Buffer.isBuffer(t.spkiDer)) &&
    !('mediaType' in v)
  );
}

function findLog(root: ParsedTrustedRoot, entry: ParsedTlogEntry, i: number): TrustedLog {
  const when = new Date(entry.integratedTime * 1000);
  const log = root.tlogs.find((t) => t.logId.equals(entry.logId) && isWithin(t.validFor, when));
  if (log === undefined) {
    fail(
      'LOG_PROOF_INVALID',
      `tlog entry ${i} is from log ${entry.logId.toString('hex')}, not a trusted log at that time`,
    );
  }
  return log;
}

function logKey(log: TrustedLog): KeyObject {
  try {
    return createPublicKey({ key: log.spkiDer, format: 'der', type: 'spki' });
  } catch (e) {
    fail('LOG_PROOF_INVALID', `the trusted log key of ${log.baseUrl} is not a valid public key`, e);
  }
}

function verifyInclusionPromise(entry: ParsedTlogEntry, log: TrustedLog, i: number): void {
  if (entry.signedEntryTimestamp === undefined) {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} has no signed entry timestamp to prove its integrated time`);
  }
  const data = inclusionPromisePayload(entry, entry.integratedTime);
  if (!cryptoVerify('sha256', data, logKey(log), entry.signedEntryTimestamp)) {
    fail(
      'LOG_PROOF_INVALID',
      `the signed entry timestamp of tlog entry ${i} does not verify with the log key`,
    );
  }
}

function verifyEntryInclusion(entry: ParsedTlogEntry, log: TrustedLog, i: number): void {
  const proof = entry.inclusionProof;
  if (proof === undefined) fail('LOG_PROOF_INVALID', `tlog entry ${i} has no inclusion proof`);
  if (proof.logIndex !== entry.logIndex) {
    fail(
      'LOG_PROOF_INVALID',
      `tlog entry ${i} is at index ${entry.logIndex} but its proof is for ${proof.logIndex}`,
    );
  }
  checkProofCheckpoint(proof.checkpoint, proof, log, i);
  checkInclusionProof(entry.canonicalizedBody, proof, i);
}

/** Check that the entry body records this envelope's signature, payload and certificate. */
function verifyEntryBody(entry: ParsedTlogEntry, bundle: ParsedBundle, i: number): void {
  const b = parseEntryBody(entry, i) as {
    spec?: {
      payloadHash?: { algorithm?: unknown; value?: unknown };
      signatures?: { signature?: unknown; verifier?: unknown }[];
    };
  };
  if (entry.kind !== 'dsse' || entry.version !== '0.0.1') {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} has unsupported kind ${entry.kind} ${entry.version}`);
  }
  const sigs = b.spec?.signatures;
  const [sig] = bundle.envelope.signatures;
  if (!Array.isArray(sigs) || sigs.length !== 1 || sig === undefined || sigs[0]?.signature !== sig.sig) {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} records a different signature than the envelope`);
  }
  const payloadHash = sha256(Buffer.from(bundle.envelope.payload, 'base64')).toString('hex');
  if (b.spec?.payloadHash?.algorithm !== 'sha256' || b.spec.payloadHash.value !== payloadHash) {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} records a different payload than the envelope`);
  }
  const verifier = sigs[0]?.verifier;
  let loggedCert: Buffer | undefined;
  try {
    loggedCert =
      typeof verifier === 'string' ? new X509Certificate(Buffer.from(verifier, 'base64')).raw : undefined;
  } catch {
    loggedCert = undefined;
  }
  if (loggedCert === undefined || !loggedCert.equals(bundle.leafCertificate)) {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} records a different certificate than the bundle`);
  }
}
