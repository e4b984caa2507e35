/**
 * Checkpoints as C2SP signed notes (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint):
 *
 *     <origin>\n<tree size>\n<base64 root hash>\n[extension lines\n]\n— <key name> <base64(key hint ‖ signature)>\n
 *
 * The signature is ECDSA P-256 / SHA-256 over the note body (every byte up to and including the
 * newline before the blank line), as Rekor v1 signs its checkpoints. The key hint is the first four
 * bytes of SHA-256(DER SubjectPublicKeyInfo), i.e. of the log ID, which is what sigstore-js matches
 * against the `logId.keyId` of the trusted root's tlog.
 */
import { createPublicKey, verify as cryptoVerify, timingSafeEqual } from 'node:crypto';
import { sha256 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Signer } from '../signing/signer.ts';
import { isStrictBase64 } from '../signing/strict-base64.ts';

/** The signed content of a checkpoint. */
export interface Checkpoint {
  origin: string;
  treeSize: number;
  rootHash: Uint8Array;
  /** Optional extension lines after the root hash, uninterpreted. */
  extensions: string[];
}

/** One signature line of a signed note. */
export interface NoteSignature {
  name: string;
  keyHint: Uint8Array;
  signature: Uint8Array;
}

/** The verification key of a log: the name in its signature lines and its public key. */
export interface CheckpointKey {
  name: string;
  /** ECDSA (signs SHA-256 of the note) or Ed25519 key, DER SubjectPublicKeyInfo. */
  spkiDer: Uint8Array;
  /**
   * The key hint signature lines carry; default the first four bytes of SHA-256 of the SPKI
   * (gatehouse and Rekor v1). A trusted root's log ID gives it for other logs (Rekor v2).
   */
  keyHint?: Uint8Array;
}

const MAX_NOTE_BYTES = 64 * 1024;
const MAX_SIGNATURES = 64;
const EM_DASH = '\u2014';
const KEY_NAME = /^[^\s+]+$/;

function invalid(message: string): GatehouseError {
  return new GatehouseError('CHECKPOINT_INVALID', message);
}

/** Decode base64 that must be canonical (padding, alphabet); `what` names it in the error. */
function strictBase64(s: string, what: string): Buffer {
  if (!isStrictBase64(s)) throw invalid(`${what} is not valid base64`);
  return Buffer.from(s, 'base64');
}

/** The first four bytes of SHA-256 of the DER public key: the note key hint. */
export function keyHint(spkiDer: Uint8Array): Uint8Array {
  return new Uint8Array(sha256(spkiDer).subarray(0, 4));
}

/**
 * Check a key name for a signature line: non-empty, no whitespace, no '+'.
 * @throws GatehouseError BAD_CONFIG
 */
export function assertKeyName(name: string): void {
  if (!KEY_NAME.test(name)) {
    throw new GatehouseError(
      'BAD_CONFIG',
      `'${name}' cannot name a note key: it must be non-empty, without spaces or '+'`,
    );
  }
}

/** The note body of a checkpoint, ending with a newline. */
export function formatCheckpoint(cp: Checkpoint): string {
  const lines = [
    cp.origin,
    String(cp.treeSize),
    Buffer.from(cp.rootHash).toString('base64'),
    ...cp.extensions,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Sign a checkpoint as a signed note with `signer`, under the key name `name`.
 * @throws GatehouseError BAD_CONFIG when the name or origin cannot appear in a note
 */
export async function signCheckpoint(cp: Checkpoint, signer: Signer, name: string): Promise<string> {
  assertKeyName(name);
  if (cp.origin.length === 0 || cp.origin.includes('\n')) {
    throw new GatehouseError('BAD_CONFIG', 'a checkpoint origin must be one non-empty line');
  }
  const body = formatCheckpoint(cp);
  const signature = await signer.sign(Buffer.from(body, 'utf8'));
  const blob = Buffer.concat([keyHint(signer.publicKeySpki()), signature]).toString('base64');
  return `${body}\n${EM_DASH} ${name} ${blob}\n`;
}

/**
 * Split a signed note into its body and signature lines, strictly.
 * @throws GatehouseError CHECKPOINT_INVALID
 */
export function parseSignedNote(text: string): { body: string; signatures: NoteSignature[] } {
  if (typeof text !== 'string') throw invalid('the checkpoint is not a string');
  if (Buffer.byteLength(text, 'utf8') > MAX_NOTE_BYTES) throw invalid('the checkpoint is too large');
  if (text.includes('\r')) throw invalid('the checkpoint contains a carriage return');
  const split = text.indexOf('\n\n');
  if (split < 0) throw invalid('the checkpoint has no blank line between the note and its signatures');
  const body = text.slice(0, split + 1);
  const sigText = text.slice(split + 2);
  if (!sigText.endsWith('\n')) throw invalid('the checkpoint signatures do not end with a newline');
  const lines = sigText.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw invalid('the checkpoint has too many signature lines');
  const signatures = lines.map((line, i) => {
    const parts = line.split(' ');
    if (parts.length !== 3 || parts[0] !== EM_DASH) {
      throw invalid(`checkpoint signature line ${i + 1} is not '— <name> <signature>'`);
    }
    const [, name = '', b64 = ''] = parts;
    if (!KEY_NAME.test(name)) throw invalid(`checkpoint signature line ${i + 1} has an invalid key name`);
    const blob = strictBase64(b64, `checkpoint signature line ${i + 1}`);
    if (blob.length < 5) throw invalid(`checkpoint signature line ${i + 1} is too short`);
    return {
      name,
      keyHint: new Uint8Array(blob.subarray(0, 4)),
      signature: new Uint8Array(blob.subarray(4)),
    };
  });
  return { body, signatures };
}

/**
 * Parse a checkpoint note body (origin, size, root hash, extension lines).
 * @throws GatehouseError CHECKPOINT_INVALID
 */
export function parseCheckpointBody(body: string): Checkpoint {
  if (!body.endsWith('\n')) throw invalid('the checkpoint body does not end with a newline');
  const lines = body.slice(0, -1).split('\n');
  const [origin, size, root, ...extensions] = lines;
  if (origin === undefined || origin.length === 0) throw invalid('the checkpoint has no origin line');
  if (size === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw invalid(`the checkpoint tree size '${size ?? ''}' is not a decimal integer`);
  }
  if (root === undefined) throw invalid('the checkpoint has no root hash line');
  const rootHash = strictBase64(root, 'the checkpoint root hash');
  if (rootHash.length !== 32) throw invalid('the checkpoint root hash is not 32 bytes');
  if (extensions.some((l) => l.length === 0)) throw invalid('the checkpoint has an empty extension line');
  return { origin, treeSize: Number(size), rootHash: new Uint8Array(rootHash), extensions };
}

/**
 * Verify a signed checkpoint against the log's key and return its content. Signatures by other
 * keys are ignored (a note may carry witness cosignatures), but one by `key` must be present and valid.
 * @throws GatehouseError CHECKPOINT_INVALID
 */
export function verifyCheckpoint(note: string, key: CheckpointKey, expectedOrigin?: string): Checkpoint {
  const { body, signatures } = parseSignedNote(note);
  const checkpoint = parseCheckpointBody(body);
  if (expectedOrigin !== undefined && checkpoint.origin !== expectedOrigin) {
    throw invalid(`the checkpoint origin '${checkpoint.origin}' is not the log's origin '${expectedOrigin}'`);
  }
  const hint = key.keyHint ?? keyHint(key.spkiDer);
  const ours = signatures.filter((s) => s.name === key.name && timingSafeEqual(s.keyHint, hint));
  if (ours.length === 0) throw invalid(`the checkpoint carries no signature by the log key '${key.name}'`);
  let publicKey: ReturnType<typeof createPublicKey>;
  try {
    publicKey = createPublicKey({ key: Buffer.from(key.spkiDer), format: 'der', type: 'spki' });
  } catch (e) {
    throw new GatehouseError('CHECKPOINT_INVALID', 'the log public key is not a valid SPKI key', {
      cause: e,
    });
  }
  const data = Buffer.from(body, 'utf8');
  // Every signature claiming to be ours must verify: a bad one is a forgery attempt, not noise.
  for (const s of ours) {
    const alg = publicKey.asymmetricKeyType === 'ed25519' ? null : 'sha256';
    let ok = false;
    try {
      ok = cryptoVerify(alg, data, publicKey, s.signature);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw invalid(`the checkpoint signature by '${key.name}' does not verify`);
    }
  }
  return checkpoint;
}
