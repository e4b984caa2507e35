/**
 * Offline verification of any Sigstore bundle against a trusted root, as the sigstore-conformance
 * suite defines it: transparency log entries (Rekor v1 SETs, Rekor v2 checkpoints, inclusion
 * proofs, entry bodies of kinds hashedrekord, dsse and intoto), RFC 3161 timestamps, the signing
 * certificate at every verified time (chain, CA window, SCTs, identity) or a given public key, and
 * the signature over the artifact or the DSSE envelope naming it. Nothing is returned unless
 * everything holds.
 */
import '../signing/reflect-metadata-shim.ts';
import {
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { type ErrorCode, GatehouseError } from '../common/errors.ts';
import { preAuthEncoding } from '../signing/dsse.ts';
import { isWithin, type ParsedTrustedRoot, type TrustedLog } from '../signing/trust-root.ts';
import { verifySigningCertificate } from './ca-chain.ts';
import { verifyCertificateIdentity } from './cert-identity.ts';
import { verifyPrehashedEcdsa } from './ecdsa-prehash.ts';
import { verifyScts } from './sct.ts';
import type { SigstoreBundle, SigstoreTlogEntry } from './sigstore-bundle.ts';
import { verifiedTimestampTime } from './timestamps.ts';
import {
  checkInclusionProof,
  checkProofCheckpoint,
  inclusionPromisePayload,
  parseEntryBody,
} from './tlog-inclusion.ts';

/** The artifact: its bytes, or only its SHA-256 digest. */
export type ArtifactInput = { bytes: Uint8Array } | { sha256: Uint8Array };

export interface SigstoreVerifyOptions {
  bundle: SigstoreBundle;
  trustedRoot: ParsedTrustedRoot;
  artifact: ArtifactInput;
  /** Verify with this key instead of a certificate identity (managed keys). */
  publicKey?: KeyObject;
  /** Exact certificate SAN (URI or e-mail) required. */
  identity?: string;
  /** Exact Fulcio OIDC issuer required. */
  issuer?: string;
  /** Current time (times in the future are refused). */
  now?: Date;
}

export interface SigstoreVerified {
  /** SAN of the signing certificate, absent for key-signed bundles. */
  identity: string | undefined;
  issuer: string | undefined;
  /** Every time that was verified (SETs and RFC 3161 timestamps). */
  times: Date[];
}

/** Clock skew tolerated between a log or TSA and this machine. */
const SKEW_MS = 60_000;

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new GatehouseError(code, message, cause === undefined ? {} : { cause });
}

function hashFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}

function safeVerify(alg: string | null, data: Uint8Array, key: KeyObject, sig: Uint8Array): boolean {
  try {
    return cryptoVerify(alg, data, key, sig);
  } catch {
    return false;
  }
}

function keyOf(der: Buffer, keyDetails: string, what: string): KeyObject {
  try {
    return createPublicKey({
      key: der,
      format: 'der',
      type: keyDetails.startsWith('PKCS1') ? 'pkcs1' : 'spki',
    });
  } catch (e) {
    fail('LOG_PROOF_INVALID', `${what} is not a valid public key`, e);
  }
}

/**
 * Verify a Sigstore bundle for an artifact, offline.
 * @throws GatehouseError BAD_INPUT, LOG_PROOF_INVALID, CHECKPOINT_INVALID, TIMESTAMP_INVALID,
 *   CERTIFICATE_INVALID, IDENTITY_MISMATCH, SIGNATURE_INVALID, SUBJECT_MISMATCH
 */
export function verifySigstoreBundle(options: SigstoreVerifyOptions): SigstoreVerified {
  const { bundle, trustedRoot: root } = options;
  const now = options.now ?? new Date();
  const artifactDigest =
    'bytes' in options.artifact
      ? createHash('sha256').update(options.artifact.bytes).digest()
      : Buffer.from(options.artifact.sha256);
  if (artifactDigest.length !== 32) fail('BAD_INPUT', 'the artifact digest is not a SHA-256 digest');

  // Which key signed: the certificate's, or the one the verifier was given.
  let signingKey: KeyObject;
  let leaf: X509Certificate | undefined;
  if (options.publicKey !== undefined) {
    signingKey = options.publicKey;
  } else if (bundle.material.kind === 'certificate') {
    leaf = bundle.material.leaf;
    signingKey = leaf.publicKey;
  } else {
    fail('SIGNATURE_INVALID', 'the bundle is signed with a key, but no --key was given to verify it with');
  }

  // 1. Log entries: each proven and matching what the bundle signed; SETs give verified times.
  if (bundle.tlogEntries.length === 0) fail('LOG_PROOF_INVALID', 'the bundle has no transparency log entry');
  const times: Date[] = [];
  const untimedLogs: TrustedLog[] = [];
  for (const [i, entry] of bundle.tlogEntries.entries()) {
    const log = root.tlogs.find((t) => t.logId.equals(entry.logId));
    if (log === undefined)
      fail('LOG_PROOF_INVALID', `tlog entry ${i} is from a log the trusted root does not list`);
    const key = keyOf(log.spkiDer, log.keyDetails, `the trusted key of log ${log.baseUrl}`);
    if (entry.inclusionProof !== undefined) verifyInclusion(entry, log, key, i);
    if (entry.signedEntryTimestamp !== undefined) {
      if (entry.integratedTime === undefined)
        fail('LOG_PROOF_INVALID', `tlog entry ${i} has a promise but no integrated time`);
      const data = inclusionPromisePayload(entry, entry.integratedTime);
      if (!safeVerify(hashFor(key), data, key, entry.signedEntryTimestamp)) {
        fail('LOG_PROOF_INVALID', `the signed entry timestamp of tlog entry ${i} does not verify`);
      }
      const when = new Date(entry.integratedTime * 1000);
      if (when.getTime() > now.getTime() + SKEW_MS)
        fail('LOG_PROOF_INVALID', `tlog entry ${i} is integrated in the future`);
      if (!isWithin(log.validFor, when))
        fail('LOG_PROOF_INVALID', `tlog entry ${i} is outside its log key's trusted window`);
      times.push(when);
    } else {
      if (entry.inclusionProof === undefined)
        fail('LOG_PROOF_INVALID', `tlog entry ${i} has neither an inclusion proof nor a promise`);
      untimedLogs.push(log);
    }
    verifyBody(entry, bundle, artifactDigest, signingKey, leaf, i);
  }

  // 2. RFC 3161 timestamps over the signature.
  for (const [i, der] of bundle.rfc3161Timestamps.entries()) {
    const t = verifiedTimestampTime(der, bundle.content.signature, root.timestampAuthorities, i);
    if (t.getTime() > now.getTime() + SKEW_MS) fail('TIMESTAMP_INVALID', `timestamp ${i} is in the future`);
    times.push(t);
  }
  if (times.length === 0) {
    fail(
      'TIMESTAMP_INVALID',
      'the bundle has no verified time (no signed entry timestamp, no RFC 3161 timestamp)',
    );
  }
  // Entries without an integrated time (Rekor v2) were logged by a key that must be trusted then.
  for (const log of untimedLogs) {
    if (!times.every((t) => isWithin(log.validFor, t))) {
      fail('LOG_PROOF_INVALID', `the log key of ${log.baseUrl} is not trusted at the verified time`);
    }
  }

  // 3. The certificate at every verified time.
  let identity: string | undefined;
  let issuer: string | undefined;
  if (leaf !== undefined && options.publicKey === undefined) {
    const issuerCert = verifySigningCertificate(leaf, root.certificateAuthorities, times, 'verified');
    if (root.ctlogs.length > 0) verifyScts(leaf, issuerCert, root.ctlogs);
    ({ identity, issuer } = verifyCertificateIdentity(leaf, 'URI or e-mail', options));
  }

  // 4. The signature over the artifact, or over the envelope that names it.
  const content = bundle.content;
  if (content.kind === 'messageSignature') {
    if (content.digest !== undefined) {
      if (content.digest.algorithm !== 'SHA2_256' || !content.digest.value.equals(artifactDigest)) {
        fail('SUBJECT_MISMATCH', 'the bundle message digest is not the artifact digest');
      }
    }
    const ok =
      'bytes' in options.artifact
        ? safeVerify(hashFor(signingKey), options.artifact.bytes, signingKey, content.signature)
        : verifyPrehashedEcdsa(signingKey, artifactDigest, content.signature);
    if (!ok) fail('SIGNATURE_INVALID', 'the message signature does not verify with the signing key');
  } else {
    const payload = Buffer.from(content.envelope.payload, 'base64');
    const pae = preAuthEncoding(content.envelope.payloadType, payload);
    if (!safeVerify(hashFor(signingKey), pae, signingKey, content.signature)) {
      fail('SIGNATURE_INVALID', 'the DSSE signature does not verify with the signing key');
    }
    if (content.envelope.payloadType !== 'application/vnd.in-toto+json') {
      fail(
        'SUBJECT_MISMATCH',
        `the envelope payload type '${content.envelope.payloadType}' names no artifact`,
      );
    }
    if (!statementNames(payload, artifactDigest.toString('hex'))) {
      fail(
        'SUBJECT_MISMATCH',
        `no subject of the statement has the artifact digest sha256:${artifactDigest.toString('hex')}`,
      );
    }
  }
  return { identity, issuer, times };
}

function statementNames(payload: Buffer, hex: string): boolean {
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    fail('SUBJECT_MISMATCH', 'the in-toto statement is not JSON');
  }
  const subjects = (statement as { subject?: unknown }).subject;
  if (!Array.isArray(subjects)) return false;
  return subjects.some((s) => (s as { digest?: { sha256?: unknown } })?.digest?.sha256 === hex);
}

function verifyInclusion(entry: SigstoreTlogEntry, log: TrustedLog, key: KeyObject, i: number): void {
  const proof = entry.inclusionProof;
  if (proof === undefined) return;
  if (proof.checkpoint === undefined) {
    // Older bundles: the proof's root is unsigned, so only a verified SET vouches for the entry.
    if (entry.signedEntryTimestamp === undefined) {
      fail('LOG_PROOF_INVALID', `tlog entry ${i} has neither a checkpoint nor a signed entry timestamp`);
    }
  } else {
    checkProofCheckpoint(proof.checkpoint, proof, log, i, {
      spkiDer: key.export({ format: 'der', type: 'spki' }),
      keyHint: log.logId.subarray(0, 4),
    });
  }
  checkInclusionProof(entry.canonicalizedBody, proof, i);
}

type Json = Record<string, unknown> | undefined;

function field(o: unknown, ...path: string[]): unknown {
  let v = o;
  for (const p of path)
    v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
  return v;
}

function b64(v: unknown): Buffer | undefined {
  return typeof v === 'string' ? Buffer.from(v, 'base64') : undefined;
}

/** True when a logged verifier (PEM or DER, certificate or key) is the bundle's signing key. */
function sameVerifier(
  logged: Buffer | undefined,
  key: KeyObject,
  leaf: X509Certificate | undefined,
): boolean {
  if (logged === undefined) return false;
  const text = logged.toString('utf8');
  try {
    if (text.includes('-----BEGIN CERTIFICATE-----') || logged[0] === 0x30) {
      const cert = new X509Certificate(logged);
      return leaf !== undefined ? cert.raw.equals(leaf.raw) : cert.publicKey.equals(key);
    }
  } catch {
    // not a certificate: try a key
  }
  try {
    const k = text.includes('-----BEGIN')
      ? createPublicKey(text)
      : createPublicKey({ key: logged, format: 'der', type: 'spki' });
    return k.equals(key) && leaf === undefined;
  } catch {
    return false;
  }
}

/** Check that a log entry body records exactly what this bundle signed, with this key. */
function verifyBody(
  entry: SigstoreTlogEntry,
  bundle: SigstoreBundle,
  artifactDigest: Buffer,
  key: KeyObject,
  leaf: X509Certificate | undefined,
  i: number,
): void {
  const body = parseEntryBody(entry, i) as Json;
  function mismatch(what: string): never {
    fail('LOG_PROOF_INVALID', `tlog entry ${i} records a different ${what} than the bundle`);
  }
  const content = bundle.content;
  const spec = field(body, 'spec');
  const kv = `${entry.kind} ${entry.version}`;
  switch (kv) {
    case 'hashedrekord 0.0.1': {
      if (content.kind !== 'messageSignature') mismatch('kind of content');
      if (!b64(field(spec, 'signature', 'content'))?.equals(content.signature)) mismatch('signature');
      if (
        field(spec, 'data', 'hash', 'algorithm') !== 'sha256' ||
        field(spec, 'data', 'hash', 'value') !== artifactDigest.toString('hex')
      )
        mismatch('artifact digest');
      if (!sameVerifier(b64(field(spec, 'signature', 'publicKey', 'content')), key, leaf))
        mismatch('signing key');
      return;
    }
    case 'hashedrekord 0.0.2': {
      const v = field(spec, 'hashedRekordV002');
      if (!b64(field(v, 'signature', 'content'))?.equals(content.signature)) mismatch('signature');
      const expected =
        content.kind === 'messageSignature'
          ? artifactDigest
          : createHash('sha256')
              .update(
                preAuthEncoding(
                  content.envelope.payloadType,
                  Buffer.from(content.envelope.payload, 'base64'),
                ),
              )
              .digest();
      if (field(v, 'data', 'algorithm') !== 'SHA2_256' || !b64(field(v, 'data', 'digest'))?.equals(expected))
        mismatch('digest');
      const verifier = field(v, 'signature', 'verifier');
      const logged =
        b64(field(verifier, 'x509Certificate', 'rawBytes')) ?? b64(field(verifier, 'publicKey', 'rawBytes'));
      if (!sameVerifier(logged, key, leaf)) mismatch('signing key');
      return;
    }
    case 'dsse 0.0.1':
    case 'dsse 0.0.2': {
      if (content.kind !== 'dsse') mismatch('kind of content');
      const payloadHash = createHash('sha256')
        .update(Buffer.from(content.envelope.payload, 'base64'))
        .digest();
      const v2 = kv === 'dsse 0.0.2';
      const s = v2 ? field(spec, 'dsseV002') : spec;
      const sigs = field(s, 'signatures');
      if (!Array.isArray(sigs) || sigs.length !== 1) mismatch('number of signatures');
      const sig = v2 ? b64(field(sigs[0], 'content')) : b64(field(sigs[0], 'signature'));
      if (!sig?.equals(content.signature)) mismatch('signature');
      const hashOk = v2
        ? field(s, 'payloadHash', 'algorithm') === 'SHA2_256' &&
          b64(field(s, 'payloadHash', 'digest'))?.equals(payloadHash) === true
        : field(s, 'payloadHash', 'algorithm') === 'sha256' &&
          field(s, 'payloadHash', 'value') === payloadHash.toString('hex');
      if (!hashOk) mismatch('payload');
      const verifier = v2
        ? (b64(field(sigs[0], 'verifier', 'x509Certificate', 'rawBytes')) ??
          b64(field(sigs[0], 'verifier', 'publicKey', 'rawBytes')))
        : b64(field(sigs[0], 'verifier'));
      if (!sameVerifier(verifier, key, leaf)) mismatch('signing key');
      return;
    }
    case 'intoto 0.0.2': {
      if (content.kind !== 'dsse') mismatch('kind of content');
      const env = field(spec, 'content', 'envelope');
      const sigs = field(env, 'signatures');
      if (!Array.isArray(sigs) || sigs.length !== 1) mismatch('number of signatures');
      // intoto 0.0.2 stores the base64 signature base64-encoded once more.
      const inner = b64(field(sigs[0], 'sig'))?.toString('utf8');
      if (inner === undefined || !Buffer.from(inner, 'base64').equals(content.signature))
        mismatch('signature');
      const payloadHash = createHash('sha256')
        .update(Buffer.from(content.envelope.payload, 'base64'))
        .digest('hex');
      if (
        field(spec, 'content', 'payloadHash', 'algorithm') !== 'sha256' ||
        field(spec, 'content', 'payloadHash', 'value') !== payloadHash
      )
        mismatch('payload');
      if (
        field(env, 'payloadType') !== undefined &&
        field(env, 'payloadType') !== content.envelope.payloadType
      )
        mismatch('payload type');
      if (!sameVerifier(b64(field(sigs[0], 'publicKey')), key, leaf)) mismatch('signing key');
      return;
    }
    default:
      fail('LOG_PROOF_INVALID', `tlog entry ${i} has unsupported kind ${kv}`);
  }
}
