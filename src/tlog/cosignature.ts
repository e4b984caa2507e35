/**
 * Witness cosignatures of checkpoints, `cosignature/v1` (https://c2sp.org/tlog-cosignature):
 * an Ed25519 note signature over
 *
 *     cosignature/v1\ntime <seconds>\n<checkpoint note body>
 *
 * whose signature blob is key ID ‖ u64 timestamp ‖ Ed25519 signature, the key ID being
 * SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]. Witness keys travel as signed-note verifier keys
 * (`<name>+<hex key ID>+<base64(0x04 ‖ public key)>`).
 */
import { createHash, createPublicKey, type KeyObject, sign, timingSafeEqual, verify } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { isStrictBase64 } from '../signing/strict-base64.ts';
import { assertKeyName, parseSignedNote } from './checkpoint.ts';

const ED25519_ALG = 0x04;
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const EM_DASH = '\u2014';
/** Cosignatures dated further ahead than this are refused. */
const FUTURE_SKEW_SECONDS = 60;

/** A witness's public key as verifiers hold it. */
export interface WitnessKey {
  name: string;
  /** The 4-byte note key ID. */
  keyId: Buffer;
  publicKey: KeyObject;
  /** The verifier key string it came from. */
  vkey: string;
}

function bad(message: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', message);
}

/** The note key ID of an Ed25519 cosigner. */
export function cosignerKeyId(name: string, rawPublicKey: Uint8Array): Buffer {
  return createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.of(ED25519_ALG), rawPublicKey]))
    .digest()
    .subarray(0, 4);
}

/** The 32 raw bytes of an Ed25519 public key. @throws GatehouseError BAD_INPUT */
export function rawEd25519(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519') throw bad('a witness key must be an Ed25519 key');
  return key.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length);
}

/** The verifier key string of a witness. */
export function formatVkey(name: string, publicKey: KeyObject): string {
  assertKeyName(name);
  const raw = rawEd25519(publicKey);
  return `${name}+${cosignerKeyId(name, raw).toString('hex')}+${Buffer.concat([Buffer.of(ED25519_ALG), raw]).toString('base64')}`;
}

/**
 * Parse a witness verifier key (`name+hexid+base64`), checking that the key ID is the key's.
 * @throws GatehouseError BAD_INPUT naming what is wrong
 */
export function parseVkey(vkey: string): WitnessKey {
  const parts = vkey.trim().split('+');
  // The base64 part may itself contain '+': the name and the ID never do.
  const [name = '', id = '', ...rest] = parts;
  const b64 = rest.join('+');
  if (name === '' || !/^[0-9a-f]{8}$/.test(id) || !isStrictBase64(b64))
    throw bad(`'${vkey}' is not a witness key (name+hex key ID+base64 key)`);
  const blob = Buffer.from(b64, 'base64');
  if (blob.length !== 33 || blob[0] !== ED25519_ALG)
    throw bad(`witness key '${name}' is not an Ed25519 (type 0x04) cosignature key`);
  const raw = blob.subarray(1);
  const keyId = cosignerKeyId(name, raw);
  if (keyId.toString('hex') !== id)
    throw bad(`witness key '${name}' has key ID ${id}, not its key's ${keyId.toString('hex')}`);
  const publicKey = createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
    format: 'der',
    type: 'spki',
  });
  return { name, keyId, publicKey, vkey: vkey.trim() };
}

/** The message a cosignature/v1 signs. */
export function cosignedMessage(noteBody: string, timestamp: number): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${noteBody}`, 'utf8');
}

/** A cosignature line (without its newline) over `noteBody` at `timestamp` (seconds). */
export function cosign(noteBody: string, name: string, privateKey: KeyObject, timestamp: number): string {
  if (!Number.isSafeInteger(timestamp) || timestamp <= 0)
    throw bad('a cosignature needs a positive timestamp');
  const raw = rawEd25519(createPublicKey(privateKey));
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestamp));
  const signature = sign(null, cosignedMessage(noteBody, timestamp), privateKey);
  return `${EM_DASH} ${name} ${Buffer.concat([cosignerKeyId(name, raw), ts, signature]).toString('base64')}`;
}

/** One verified cosignature. */
export interface VerifiedCosignature {
  key: WitnessKey;
  timestamp: number;
  /** The signature line, without its newline. */
  line: string;
}

/**
 * The cosignatures of `note` by the given witnesses that verify, one per witness (the newest).
 * Lines by other keys are ignored; a line with a known witness's name and key ID that does not
 * verify, or is dated in the future, makes the note invalid (a forged or broken cosignature).
 * @throws GatehouseError CHECKPOINT_INVALID
 */
export function verifiedCosignatures(
  note: string,
  witnesses: readonly WitnessKey[],
  now: Date = new Date(),
): VerifiedCosignature[] {
  const { body, signatures } = parseSignedNote(note);
  const lines = note.slice(note.indexOf('\n\n') + 2).split('\n');
  const out = new Map<string, VerifiedCosignature>();
  for (const [i, s] of signatures.entries()) {
    const key = witnesses.find(
      (w) => w.name === s.name && s.keyHint.length === 4 && timingSafeEqual(Buffer.from(s.keyHint), w.keyId),
    );
    if (key === undefined) continue;
    const sig = Buffer.from(s.signature);
    if (sig.length !== 8 + 64)
      throw new GatehouseError('CHECKPOINT_INVALID', `the cosignature by '${key.name}' is not 72 bytes`);
    const timestamp = Number(sig.readBigUInt64BE(0));
    let ok = false;
    try {
      ok = verify(null, cosignedMessage(body, timestamp), key.publicKey, sig.subarray(8));
    } catch {
      ok = false;
    }
    if (!ok)
      throw new GatehouseError(
        'CHECKPOINT_INVALID',
        `the cosignature by witness '${key.name}' does not verify`,
      );
    if (timestamp > now.getTime() / 1000 + FUTURE_SKEW_SECONDS)
      throw new GatehouseError(
        'CHECKPOINT_INVALID',
        `the cosignature by witness '${key.name}' is dated in the future`,
      );
    const prior = out.get(key.vkey);
    if (prior === undefined || prior.timestamp < timestamp)
      out.set(key.vkey, { key, timestamp, line: lines[i] ?? '' });
  }
  return [...out.values()];
}

/**
 * Require `threshold` distinct witnesses among `witnesses` to have cosigned `note`.
 * @throws GatehouseError CHECKPOINT_INVALID naming how many cosigned and which were missing
 */
export function verifyWitnessQuorum(
  note: string,
  witnesses: readonly WitnessKey[],
  threshold: number,
  now?: Date,
): VerifiedCosignature[] {
  const found = verifiedCosignatures(note, witnesses, now);
  if (found.length < threshold) {
    const missing = witnesses.filter((w) => !found.some((f) => f.key.vkey === w.vkey)).map((w) => w.name);
    throw new GatehouseError(
      'CHECKPOINT_INVALID',
      `the checkpoint carries ${found.length} of the ${threshold} required witness cosignatures (missing: ${missing.join(', ')})`,
    );
  }
  return found;
}
