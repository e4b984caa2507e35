/**
 * A transparency log witness (https://c2sp.org/tlog-witness): for each log it knows (by origin
 * and key), it keeps the latest checkpoint it cosigned and cosigns a new one only when a
 * consistency proof shows the new tree extends it. A fork — a checkpoint by the genuine log key
 * that is not an extension of what the witness saw — is refused and never cosigned.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { isStrictBase64 } from '../signing/strict-base64.ts';
import type { WitnessStore } from '../store/store.ts';
import { type CheckpointKey, parseCheckpointBody, parseSignedNote, verifyCheckpoint } from './checkpoint.ts';
import { cosign } from './cosignature.ts';
import { EMPTY_ROOT, verifyConsistency } from './merkle.ts';

/** At most this many consistency proof lines (the protocol's limit). */
const MAX_PROOF_LINES = 63;
/** Request bodies larger than this are refused. */
export const MAX_ADD_CHECKPOINT_BYTES = 128 * 1024;

/** Why a witness refused, in the protocol's terms: the HTTP status it answers with. */
export type WitnessRefusalKind =
  | 'bad-request'
  | 'unknown-log'
  | 'bad-signature'
  | 'conflict'
  | 'inconsistent';

/** A refusal of add-checkpoint; `size` is the witness's tree size for a conflict. */
export class WitnessRefusal extends GatehouseError {
  readonly kind: WitnessRefusalKind;
  readonly size: number | undefined;

  constructor(kind: WitnessRefusalKind, message: string, size?: number) {
    const code = {
      'bad-request': 'BAD_INPUT',
      'unknown-log': 'NOT_FOUND',
      'bad-signature': 'CHECKPOINT_INVALID',
      conflict: 'CONFLICT',
      inconsistent: 'LOG_INCONSISTENT',
    } as const;
    super(code[kind], message);
    this.kind = kind;
    this.size = size;
  }
}

/** A log the witness watches: its origin, and the key its checkpoints are signed with. */
export interface WitnessedLog {
  origin: string;
  key: CheckpointKey;
}

export interface WitnessOptions {
  /** The witness's name: the key name of its cosignature lines. */
  name: string;
  /** The witness's Ed25519 private key. */
  key: KeyObject;
  logs: readonly WitnessedLog[];
  store: WitnessStore;
  now?: () => Date;
}

/** The parts of an add-checkpoint request body. */
export interface AddCheckpointRequest {
  oldSize: number;
  proof: Uint8Array[];
  checkpoint: string;
}

/**
 * Parse an add-checkpoint body: `old <size>\n`, up to 63 base64 hash lines, an empty line, the
 * checkpoint.
 * @throws WitnessRefusal bad-request
 */
export function parseAddCheckpoint(body: string): AddCheckpointRequest {
  const fail = (m: string): never => {
    throw new WitnessRefusal('bad-request', m);
  };
  const end = body.indexOf('\n\n');
  if (end < 0) fail('the request has no empty line before the checkpoint');
  const head = body.slice(0, end).split('\n');
  const [old = '', ...hashes] = head;
  const m = /^old (0|[1-9][0-9]{0,15})$/.exec(old);
  if (m === null) fail(`the first line '${old.slice(0, 40)}' is not 'old <size>'`);
  if (hashes.length > MAX_PROOF_LINES) fail(`more than ${MAX_PROOF_LINES} consistency proof lines`);
  const proof = hashes.map((h, i) => {
    if (!isStrictBase64(h)) fail(`consistency proof line ${i + 1} is not base64`);
    const b = Buffer.from(h, 'base64');
    if (b.length !== 32) fail(`consistency proof line ${i + 1} is not a 32-byte hash`);
    return new Uint8Array(b);
  });
  return { oldSize: Number(m?.[1]), proof, checkpoint: body.slice(end + 2) };
}

/** The SHA-256 of an origin, hex: where a witness serves its latest checkpoint of that log. */
export function originHash(origin: string): string {
  return createHash('sha256').update(origin, 'utf8').digest('hex');
}

/** The witness. Cosigns consistent checkpoints of the logs it knows. */
export class Witness {
  readonly name: string;
  readonly #key: KeyObject;
  readonly #logs: readonly WitnessedLog[];
  readonly #store: WitnessStore;
  readonly #now: () => Date;

  constructor(o: WitnessOptions) {
    this.name = o.name;
    this.#key = o.key;
    this.#logs = o.logs;
    this.#store = o.store;
    this.#now = o.now ?? (() => new Date());
  }

  /** The origins it witnesses. */
  origins(): string[] {
    return this.#logs.map((l) => l.origin);
  }

  /**
   * add-checkpoint: verify the checkpoint and its consistency with the last one cosigned, record
   * it, and answer with the cosignature line(s).
   * @throws WitnessRefusal with the kind the protocol's status follows from
   */
  async addCheckpoint(body: string): Promise<string> {
    const req = parseAddCheckpoint(body);
    let origin: string;
    try {
      origin = parseCheckpointBody(parseSignedNote(req.checkpoint).body).origin;
    } catch (e) {
      throw new WitnessRefusal('bad-request', e instanceof Error ? e.message : 'the checkpoint is malformed');
    }
    const log = this.#logs.find((l) => l.origin === origin);
    if (log === undefined)
      throw new WitnessRefusal('unknown-log', `this witness does not know the log '${origin}'`);
    let cp: ReturnType<typeof verifyCheckpoint>;
    try {
      cp = verifyCheckpoint(req.checkpoint, log.key, origin);
    } catch (e) {
      throw new WitnessRefusal(
        'bad-signature',
        e instanceof Error ? e.message : 'the checkpoint signature is invalid',
      );
    }
    if (req.oldSize > cp.treeSize)
      throw new WitnessRefusal(
        'bad-request',
        `old size ${req.oldSize} is larger than the checkpoint's ${cp.treeSize}`,
      );
    const state = await this.#store.get(origin);
    const current = state?.treeSize ?? 0;
    if (req.oldSize !== current)
      throw new WitnessRefusal(
        'conflict',
        `this witness last cosigned tree size ${current}, not ${req.oldSize}`,
        current,
      );
    if (cp.treeSize === 0 && !Buffer.from(cp.rootHash).equals(EMPTY_ROOT))
      throw new WitnessRefusal('inconsistent', 'a checkpoint of size 0 must have the empty tree hash');
    if (req.oldSize === 0) {
      if (req.proof.length > 0) throw new WitnessRefusal('inconsistent', 'a proof from size 0 must be empty');
    } else if (req.oldSize === cp.treeSize) {
      if (!Buffer.from(cp.rootHash).equals(Buffer.from(state?.rootHash ?? [])))
        throw new WitnessRefusal(
          'inconsistent',
          `the root of tree size ${cp.treeSize} differs from the one cosigned: a fork`,
        );
    } else {
      try {
        verifyConsistency(
          req.oldSize,
          cp.treeSize,
          req.proof,
          state?.rootHash ?? new Uint8Array(32),
          cp.rootHash,
        );
      } catch (e) {
        throw new WitnessRefusal(
          'inconsistent',
          `tree size ${cp.treeSize} is not proven consistent with size ${req.oldSize} cosigned before (${e instanceof Error ? e.message : 'bad proof'}): a fork or a bad proof`,
        );
      }
    }
    const noteBody = parseSignedNote(req.checkpoint).body;
    const timestamp = Math.max(1, Math.floor(this.#now().getTime() / 1000));
    const line = cosign(noteBody, this.name, this.#key, timestamp);
    // Record before answering, atomically against the size checked: two requests racing from
    // one size cannot both move it (one would roll the other back).
    try {
      await this.#store.advance(req.oldSize, {
        origin,
        treeSize: cp.treeSize,
        rootHash: cp.rootHash,
        checkpoint: `${req.checkpoint}${line}\n`,
        updatedAt: this.#now().toISOString(),
      });
    } catch (e) {
      if (e instanceof GatehouseError && e.code === 'CONFLICT') {
        const now = (await this.#store.get(origin))?.treeSize ?? 0;
        throw new WitnessRefusal('conflict', e.message, now);
      }
      throw e;
    }
    return `${line}\n`;
  }

  /**
   * The latest checkpoint cosigned for the log whose origin hashes to `hash`, with the log's and
   * this witness's signatures.
   * @throws GatehouseError NOT_FOUND
   */
  async latest(hash: string): Promise<string> {
    const log = this.#logs.find((l) => originHash(l.origin) === hash);
    const state = log === undefined ? undefined : await this.#store.get(log.origin);
    if (state === undefined)
      throw new GatehouseError('NOT_FOUND', 'this witness has cosigned no checkpoint of that log');
    return state.checkpoint;
  }
}
