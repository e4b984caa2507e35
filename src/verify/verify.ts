/**
 * Offline verification of a gatehouse (Sigstore v0.3, DSSE) bundle against a trusted root: the log
 * entry (SET, checkpoint, inclusion proof, body), the certificate chain at the integrated time, the
 * identity, the DSSE signature and the in-toto subject. Each check throws a GatehouseError with
 * its own code; nothing is returned unless everything holds.
 */
import '../signing/reflect-metadata-shim.ts';
import { createPublicKey, verify as cryptoVerify, type KeyObject, X509Certificate } from 'node:crypto';
import { sha256 } from '../common/encoding.ts';
import { type ErrorCode, GatehouseError } from '../common/errors.ts';
import type { ParsedBundle, ParsedTlogEntry } from '../signing/bundle.ts';
import { verifyEnvelope } from '../signing/dsse.ts';
import { INTOTO_PAYLOAD_TYPE, parseStatement, type Statement, type Subject } from '../signing/intoto.ts';
import { verifyTimestamp } from '../signing/rfc3161.ts';
import {
  isWithin,
  type ParsedTrustedRoot,
  parseTrustedRoot,
  type TrustedLog,
} from '../signing/trust-root.ts';
import { verifyCheckpoint } from '../tlog/checkpoint.ts';
import { setPayload } from '../tlog/transparency-log.ts';
import { chainProblem } from './ca-chain.ts';
import { readCertificateNames } from './cert-identity.ts';
import { checkInclusionProof } from './tlog-inclusion.ts';

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
}

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

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
  for (const [i, entry] of bundle.tlogEntries.entries()) {
    const log = findLog(root, entry, i);
    verifyInclusionPromise(entry, log, i);
    verifyEntryInclusion(entry, log, i);
    verifyEntryBody(entry, bundle, i);
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
    try {
      times.push(verifyTimestamp(der, signature, root.timestampAuthorities).genTime);
    } catch (e) {
      if (e instanceof GatehouseError) fail(e.code, `timestamp ${i}: ${e.message}`, e);
      throw e;
    }
  }

  // 3. The certificate, at every verified time (a short-lived leaf has long expired by now).
  for (const t of times) verifyChain(leaf, root, t);
  const ident = certificateIdentity(leaf);
  if (options.identity !== undefined && ident.identity !== options.identity) {
    fail(
      'IDENTITY_MISMATCH',
      `the certificate identity is '${ident.identity}', expected '${options.identity}'`,
    );
  }
  if (options.issuer !== undefined && ident.issuer !== options.issuer) {
    fail(
      'IDENTITY_MISMATCH',
      `the certificate issuer is '${ident.issuer ?? '(none)'}', expected '${options.issuer}'`,
    );
  }

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
  const data = setPayload({
    body: entry.canonicalizedBody,
    integratedTime: entry.integratedTime,
    logId: entry.logId.toString('hex'),
    logIndex: entry.logIndex,
  });
  if (!cryptoVerify('sha256', data, logKey(log), entry.signedEntryTimestamp)) {
    fail(
      'LOG_PROOF_INVALID',
      `the signed entry timestamp of tlog entry ${i} does not verify with the log key`,
    );
  }
}

/** The checkpoint key name a log signs with: its base URL without the scheme (as Rekor does). */
function checkpointKeyName(baseUrl: string): string {
  return baseUrl.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
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
  const checkpoint = verifyCheckpoint(proof.checkpoint, {
    name: checkpointKeyName(log.baseUrl),
    spkiDer: log.spkiDer,
  });
  if (checkpoint.treeSize !== proof.treeSize || !Buffer.from(checkpoint.rootHash).equals(proof.rootHash)) {
    fail('CHECKPOINT_INVALID', `the checkpoint of tlog entry ${i} is not for the proof's tree size and root`);
  }
  checkInclusionProof(entry.canonicalizedBody, proof, i);
}

/** Check that the entry body records this envelope's signature, payload and certificate. */
function verifyEntryBody(entry: ParsedTlogEntry, bundle: ParsedBundle, i: number): void {
  let body: unknown;
  try {
    body = JSON.parse(entry.canonicalizedBody.toString('utf8'));
  } catch (e) {
    fail('LOG_PROOF_INVALID', `the body of tlog entry ${i} is not JSON`, e);
  }
  const b = body as {
    kind?: unknown;
    apiVersion?: unknown;
    spec?: {
      payloadHash?: { algorithm?: unknown; value?: unknown };
      signatures?: { signature?: unknown; verifier?: unknown }[];
    };
  };
  if (b.kind !== entry.kind || b.apiVersion !== entry.version) {
    fail(
      'LOG_PROOF_INVALID',
      `the body of tlog entry ${i} is not of the declared kind ${entry.kind} ${entry.version}`,
    );
  }
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

function validAt(cert: X509Certificate, when: Date): boolean {
  return cert.validFromDate <= when && when <= cert.validToDate;
}

/** Chain the leaf to a trusted CA, every certificate valid at `when`. */
function verifyChain(leaf: X509Certificate, root: ParsedTrustedRoot, when: Date): void {
  if (leaf.ca) fail('CERTIFICATE_INVALID', 'the signing certificate is a CA certificate');
  if (!(leaf.keyUsage ?? []).includes(CODE_SIGNING)) {
    fail('CERTIFICATE_INVALID', 'the signing certificate lacks the codeSigning extended key usage');
  }
  if (!validAt(leaf, when)) {
    fail(
      'CERTIFICATE_INVALID',
      `the signing certificate was not valid at the integrated time ${when.toISOString()} (valid ${leaf.validFromDate.toISOString()} to ${leaf.validToDate.toISOString()})`,
    );
  }
  const problems: string[] = [];
  for (const [n, ca] of root.certificateAuthorities.entries()) {
    if (!isWithin(ca.validFor, when)) {
      problems.push(`CA ${n} is not valid at that time`);
      continue;
    }
    const r = chainProblem(leaf, ca, [when]);
    if (!('problem' in r)) return;
    problems.push(`CA ${n}: ${r.problem}`);
  }
  fail(
    'CERTIFICATE_INVALID',
    `the signing certificate does not chain to a trusted CA (${problems.join('; ') || 'no CA'})`,
  );
}

/** The SAN URI and Fulcio issuer of a leaf. */
function certificateIdentity(leaf: X509Certificate): { identity: string; issuer: string | undefined } {
  const { uris, issuer } = readCertificateNames(leaf.raw);
  const [identity, ...more] = uris;
  if (identity === undefined || more.length > 0) {
    fail('IDENTITY_MISMATCH', `the signing certificate has ${uris.length} URI SANs; exactly one is required`);
  }
  return { identity, issuer };
}
