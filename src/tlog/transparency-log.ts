/**
 * The append-only transparency log: entries in the store, RFC 6962 Merkle tree over their leaf
 * hashes, Rekor-style signed entry timestamps (SET) and C2SP checkpoints signed by the log key.
 *
 * Proofs and checkpoints read O(log n) hashes of perfect subtrees the store keeps as appends
 * complete them (leaf hashes at level 0, interior nodes above), never the whole tree. The log
 * computes those hashes (stored-tree.ts); the store only keeps them.
 *
 * Appends are batched: the entries appended in one tick go to the store in one transaction, and
 * one checkpoint signature covers them all; an append is acknowledged only once its batch is
 * durable and signed, and its inclusion proof is against that checkpoint (or a later signed one).
 */
import { canonicalJson, sha256, sha256Hex, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Envelope } from '../signing/dsse.ts';
import type { Signer } from '../signing/signer.ts';
import type { CosignatureStore, LogStore, NewLogEntryRecord } from '../store/store.ts';
import { assertKeyName, signCheckpoint } from './checkpoint.ts';
import { GroupCommit, type LogBatching } from './group-commit.ts';
import { consistencyRanges, foldSubtrees, inclusionRanges, leafHash, subtreesOf } from './merkle.ts';
import { appendEntries, fillMissingNodes } from './stored-tree.ts';

export interface TransparencyLogOptions {
  store: LogStore;
  /** The log key: signs SETs and checkpoints. */
  signer: Signer;
  /** The checkpoint origin, also the key name in its signature lines (no spaces), e.g. `gatehouse.example/log`. */
  origin: string;
  /** Clock, for tests. */
  now?: () => Date;
  /** Called after each append (the home moves its log anchor forward). */
  onAppend?: () => void;
  /**
   * Witness cosignatures kept beside checkpoints (src/tlog/witness-client.ts): every checkpoint
   * the log signs carries those of its tree.
   */
  cosignatures?: CosignatureStore;
  /** How appends are grouped into batches (src/tlog/group-commit.ts); default `DEFAULT_LOG_BATCHING`. */
  batching?: Partial<LogBatching>;
}

/** Signed notes kept for reuse, newest last: every proof of a batch's entries carries the batch's. */
const SIGNED_NOTES_KEPT = 64;

/** What the log promises about a freshly appended entry. */
export interface AppendedEntry {
  index: number;
  /** Seconds since the epoch. */
  integratedTime: number;
  /** Hex SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  logId: string;
  /** The signed entry timestamp: DER ECDSA signature over {@link setPayload}. */
  inclusionPromise: Uint8Array;
}

export interface InclusionProof {
  logIndex: number;
  treeSize: number;
  rootHash: Uint8Array;
  hashes: Uint8Array[];
  /** The signed note for `treeSize` and `rootHash`. */
  checkpoint: string;
}

export interface ConsistencyProof {
  first: number;
  second: number;
  firstRoot: Uint8Array;
  secondRoot: Uint8Array;
  hashes: Uint8Array[];
}

/**
 * The bytes a SET signs, exactly as Rekor v1 and sigstore-js build them: canonical JSON of
 * `{ body: base64(canonicalized body), integratedTime, logID: hex log id, logIndex }`.
 */
export function setPayload(entry: {
  body: Uint8Array;
  integratedTime: number;
  logId: string;
  logIndex: number;
}): Buffer {
  return Buffer.from(
    canonicalJson({
      body: toBase64(entry.body),
      integratedTime: entry.integratedTime,
      logID: entry.logId,
      logIndex: entry.logIndex,
    }),
    'utf8',
  );
}

/**
 * The Rekor `dsse` v0.0.1 canonical entry body for a signed envelope and its signing certificate,
 * in the shape sigstore-js compares with a bundle: one signature equal to the envelope's, and the
 * SHA-256 of the payload. `envelopeHash` is the SHA-256 of the envelope's canonical JSON.
 * @throws GatehouseError BAD_INPUT unless the envelope carries exactly one signature
 */
export function dsseEntryBody(envelope: Envelope, certificatePem: string): Uint8Array {
  const [first, ...more] = envelope.signatures;
  if (first === undefined || more.length > 0) {
    throw new GatehouseError('BAD_INPUT', 'a dsse log entry needs an envelope with exactly one signature');
  }
  const body = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256Hex(canonicalJson(envelope)) },
      payloadHash: { algorithm: 'sha256', value: sha256Hex(Buffer.from(envelope.payload, 'base64')) },
      signatures: [
        { signature: first.sig, verifier: Buffer.from(certificatePem, 'utf8').toString('base64') },
      ],
    },
  };
  return Buffer.from(canonicalJson(body), 'utf8');
}

/** The canonical entry body for a gate decision (which is a record, not a signature). */
export function decisionEntryBody(decision: object): Uint8Array {
  return Buffer.from(
    canonicalJson({ apiVersion: '0.0.1', kind: 'gatehouse-decision', spec: decision }),
    'utf8',
  );
}

/**
 * The log. One instance per process is the sequencer; the store makes appends atomic and refuses
 * one that another writer overtook, which then starts over at the new size.
 */
export class TransparencyLog {
  readonly origin: string;
  /** Hex SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  readonly logId: string;
  readonly #store: LogStore;
  readonly #signer: Signer;
  readonly #now: () => Date;
  readonly #onAppend: (() => void) | undefined;
  readonly #cosignatures: CosignatureStore | undefined;
  /** Appends in batches, in the order of the calls (which their indices follow). */
  readonly #batches: GroupCommit<NewLogEntryRecord, number>;
  /** The newest tree a batch of this instance was signed at: proofs default to it. */
  #latest: number | undefined;
  /** Signed notes by tree size, with the root they sign (hex), oldest first. */
  readonly #notes = new Map<number, { root: string; note: string }>();
  /** The fill of missing interior nodes, started by the first use of the tree (see {@link fillMissingNodes}). */
  #nodesComplete: Promise<void> | undefined;

  /** @throws GatehouseError BAD_CONFIG when the origin cannot name a note key */
  constructor(options: TransparencyLogOptions) {
    assertKeyName(options.origin);
    this.origin = options.origin;
    this.#store = options.store;
    this.#signer = options.signer;
    this.#now = options.now ?? (() => new Date());
    this.#onAppend = options.onAppend;
    this.#cosignatures = options.cosignatures;
    this.#batches = new GroupCommit((entries) => this.#writeBatch(entries), options.batching);
    this.logId = sha256Hex(options.signer.publicKeySpki());
  }

  /** The log ID as raw bytes (the trusted root's `logId.keyId`). */
  logIdBytes(): Uint8Array {
    return new Uint8Array(sha256(this.#signer.publicKeySpki()));
  }

  /**
   * Append one entry and sign its timestamp. It goes in with the other entries of its batch, and
   * the promise settles only once that batch is durable in the store and its checkpoint signed.
   * @throws GatehouseError BAD_INPUT for an empty body, STORE_ERROR
   */
  async append(body: Uint8Array): Promise<AppendedEntry> {
    if (body.length === 0) throw new GatehouseError('BAD_INPUT', 'a log entry body cannot be empty');
    const integratedTime = Math.floor(this.#now().getTime() / 1000);
    const index = await this.#batches.submit({ body, leafHash: leafHash(body), integratedTime });
    const inclusionPromise = await this.#signer.sign(
      setPayload({ body, integratedTime, logId: this.logId, logIndex: index }),
    );
    return { index, integratedTime, logId: this.logId, inclusionPromise };
  }

  /** Settles once every append made so far has been written (or has failed). */
  drain(): Promise<void> {
    return this.#batches.drain();
  }

  /**
   * One batch: its entries in one store transaction, then one checkpoint over the tree they end.
   * Nobody hears of an index before the store holds it durably and the checkpoint is signed, so a
   * crash at any point loses only appends that were never acknowledged.
   */
  async #writeBatch(entries: readonly NewLogEntryRecord[]): Promise<number[]> {
    await this.#treeReady();
    const indices = await appendEntries(this.#store, entries);
    const end = indices.at(-1);
    if (indices.length !== entries.length || end === undefined)
      throw new GatehouseError('STORE_ERROR', 'the store returned fewer indices than entries appended');
    // One signature for the batch: the proofs of its entries are all against this tree.
    const [root] = await this.#rangeHashes([[0, end + 1]]);
    await this.#note(end + 1, root as Uint8Array);
    this.#latest = Math.max(this.#latest ?? 0, end + 1);
    this.#onAppend?.();
    return indices;
  }

  /** Current number of entries. */
  async size(): Promise<number> {
    return this.#store.size();
  }

  /**
   * The signed note for the current tree (or for `treeSize` ≤ the current size): the one a batch
   * signed when there is one for that tree, else signed now.
   */
  async checkpoint(treeSize?: number): Promise<string> {
    const size = await this.#resolveSize(treeSize);
    const [root] = await this.#rangeHashes([[0, size]]);
    return this.#withCosignatures(await this.#note(size, root as Uint8Array), size, root as Uint8Array);
  }

  /** The root hash of the tree of `treeSize` entries (default: current), unsigned. */
  async rootHash(treeSize?: number): Promise<{ treeSize: number; rootHash: Uint8Array }> {
    const size = await this.#resolveSize(treeSize);
    const [root] = await this.#rangeHashes([[0, size]]);
    return { treeSize: size, rootHash: root as Uint8Array };
  }

  /**
   * Fill in the interior nodes of a log written before they were stored, once per instance, before
   * the tree is first read or grown. A failed fill is tried again by the next call.
   */
  #treeReady(): Promise<void> {
    this.#nodesComplete ??= fillMissingNodes(this.#store).catch((e: unknown) => {
      this.#nodesComplete = undefined;
      throw e;
    });
    return this.#nodesComplete;
  }

  /** MTH of each leaf range, from the stored perfect subtrees, in one store read. */
  async #rangeHashes(ranges: readonly [number, number][]): Promise<Uint8Array[]> {
    await this.#treeReady();
    const parts = ranges.map(([s, e]) => subtreesOf(s, e));
    const hashes = await this.#store.subtreeHashes(parts.flat());
    let k = 0;
    return parts.map((p) => {
      const mine = hashes.slice(k, k + p.length);
      k += p.length;
      return foldSubtrees(mine);
    });
  }

  /**
   * The inclusion proof of entry `index` in the tree of `treeSize` entries (default: the newest
   * tree this log signed that holds the entry, else the current one).
   * @throws GatehouseError NOT_FOUND when the entry is not in that tree, BAD_INPUT for a bad size
   */
  async inclusionProof(index: number, treeSize?: number): Promise<InclusionProof> {
    const size = treeSize === undefined ? await this.#proofSize(index) : await this.#resolveSize(treeSize);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new GatehouseError('NOT_FOUND', `log entry ${index} is not in the tree of size ${size}`);
    }
    const [root, ...hashes] = await this.#rangeHashes([[0, size], ...inclusionRanges(index, size)]);
    return {
      logIndex: index,
      treeSize: size,
      rootHash: root as Uint8Array,
      hashes,
      checkpoint: await this.#withCosignatures(
        await this.#note(size, root as Uint8Array),
        size,
        root as Uint8Array,
      ),
    };
  }

  /**
   * The consistency proof between tree sizes `first` and `second` (1 ≤ first ≤ second ≤ size).
   * @throws GatehouseError BAD_INPUT
   */
  async consistencyProof(first: number, second: number): Promise<ConsistencyProof> {
    const size = await this.#resolveSize(second);
    if (!Number.isSafeInteger(first) || first < 1 || first > size) {
      throw new GatehouseError('BAD_INPUT', `cannot prove tree size ${first} consistent with ${size}`);
    }
    const [firstRoot, secondRoot, ...hashes] = await this.#rangeHashes([
      [0, first],
      [0, size],
      ...consistencyRanges(first, size),
    ]);
    return {
      first,
      second: size,
      firstRoot: firstRoot as Uint8Array,
      secondRoot: secondRoot as Uint8Array,
      hashes,
    };
  }

  /** The newest tree this log signed that holds entry `index` (while the store still has it), else the current one. */
  async #proofSize(index: number): Promise<number> {
    const current = await this.#store.size();
    const latest = this.#latest;
    return latest !== undefined && index < latest && latest <= current ? latest : current;
  }

  async #resolveSize(treeSize: number | undefined): Promise<number> {
    const current = await this.#store.size();
    if (treeSize === undefined) return current;
    if (!Number.isSafeInteger(treeSize) || treeSize < 0 || treeSize > current) {
      throw new GatehouseError(
        'BAD_INPUT',
        `tree size ${treeSize} is not between 0 and the log size ${current}`,
      );
    }
    return treeSize;
  }

  /**
   * The log's signed note for a tree: the one already signed for that size and root, else a new
   * one (kept for the proofs that follow). A root that differs from the kept one's is signed
   * afresh, never answered with a note for another tree.
   */
  async #note(treeSize: number, root: Uint8Array): Promise<string> {
    const hex = Buffer.from(root).toString('hex');
    const kept = this.#notes.get(treeSize);
    if (kept !== undefined && kept.root === hex) return kept.note;
    const note = await signCheckpoint(
      { origin: this.origin, treeSize, rootHash: root, extensions: [] },
      this.#signer,
      this.origin,
    );
    this.#notes.delete(treeSize);
    this.#notes.set(treeSize, { root: hex, note });
    for (const oldest of this.#notes.keys()) {
      if (this.#notes.size <= SIGNED_NOTES_KEPT) break;
      this.#notes.delete(oldest);
    }
    return note;
  }

  /** The note with the witness cosignatures kept for its tree (same size, same root). */
  async #withCosignatures(note: string, treeSize: number, root: Uint8Array): Promise<string> {
    if (this.#cosignatures === undefined) return note;
    const lines = (await this.#cosignatures.forTreeSize(treeSize))
      .filter((c) => Buffer.from(c.rootHash).equals(Buffer.from(root)))
      .map((c) => `${c.line}\n`);
    return `${note}${lines.join('')}`;
  }
}
