/**
 * The log's side of https://c2sp.org/tlog-witness: it sends each witness its newest checkpoint
 * with a consistency proof from the size that witness last cosigned, checks the cosignature it
 * gets back, and keeps it beside the checkpoint (the store's `cosignatures`), so that every
 * checkpoint of that tree the log signs afterwards carries it (src/tlog/transparency-log.ts).
 */
import { GatehouseError } from '../common/errors.ts';
import type { CosignatureStore } from '../store/store.ts';
import { verifiedCosignatures, type WitnessKey } from './cosignature.ts';
import type { TransparencyLog } from './transparency-log.ts';

/** A witness the log asks: where its add-checkpoint lives, and its key. */
export interface WitnessEndpoint {
  /** The submission prefix; requests go to `<url>/add-checkpoint`. */
  url: string;
  key: WitnessKey;
}

/** What one round of asking the witnesses got. */
export interface CosignRound {
  /** The tree size the round asked to be cosigned. */
  treeSize: number;
  results: { witness: string; cosigned: boolean; problem?: string }[];
}

export interface LogWitnessingOptions {
  log: TransparencyLog;
  cosignatures: CosignatureStore;
  witnesses: readonly WitnessEndpoint[];
  /** Per request; default 5 s. */
  timeoutMs?: number;
}

/** Asks the log's witnesses for cosignatures, one round at a time. */
export class LogWitnessing {
  readonly #o: LogWitnessingOptions;
  #queue: Promise<unknown> = Promise.resolve();
  #done: CosignRound | undefined;

  constructor(o: LogWitnessingOptions) {
    this.#o = o;
  }

  /** The witnesses asked. */
  witnesses(): readonly WitnessEndpoint[] {
    return this.#o.witnesses;
  }

  /**
   * Have a tree of at least `minSize` entries cosigned: a round already done (or under way) for
   * such a tree is reused, otherwise the current tree is sent to every witness. A witness that
   * refuses or cannot be reached is reported, never thrown: whether cosignatures are required is
   * the verifier's decision.
   */
  cosign(minSize = 0): Promise<CosignRound> {
    const run = async (): Promise<CosignRound> => {
      const done = this.#done;
      if (done !== undefined && done.treeSize >= minSize) return done;
      const round = await this.#round();
      this.#done = round;
      return round;
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #round(): Promise<CosignRound> {
    const { log, cosignatures } = this.#o;
    const { treeSize, rootHash } = await log.rootHash();
    const note = await log.checkpoint(treeSize);
    const latest = await cosignatures.latestByKey();
    const have = await cosignatures.forTreeSize(treeSize);
    const results = await Promise.all(
      this.#o.witnesses.map(async (w) => {
        const id = `${w.key.name}+${w.key.keyId.toString('hex')}`;
        if (have.some((c) => c.keyName === w.key.name && Buffer.from(c.keyId).equals(w.key.keyId)))
          return { witness: w.key.name, cosigned: true };
        try {
          await this.#ask(w, note, treeSize, rootHash, latest.get(id) ?? 0);
          return { witness: w.key.name, cosigned: true };
        } catch (e) {
          return {
            witness: w.key.name,
            cosigned: false,
            problem: e instanceof Error ? e.message : String(e),
          };
        }
      }),
    );
    return { treeSize, results };
  }

  /** One witness: add-checkpoint from `oldSize`, once more from the size a 409 names. */
  async #ask(
    w: WitnessEndpoint,
    note: string,
    treeSize: number,
    rootHash: Uint8Array,
    oldSize: number,
  ): Promise<void> {
    let old = oldSize;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (old > treeSize)
        throw new GatehouseError(
          'CONFLICT',
          `the witness has cosigned tree size ${old}, larger than this log's ${treeSize}`,
        );
      const proof =
        old === 0 || old === treeSize ? [] : (await this.#o.log.consistencyProof(old, treeSize)).hashes;
      const body = `old ${old}\n${proof.map((h) => `${Buffer.from(h).toString('base64')}\n`).join('')}\n${note}`;
      const url = `${w.url.replace(/\/+$/, '')}/add-checkpoint`;
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          body,
          headers: { 'content-type': 'text/plain; charset=utf-8' },
          signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000),
        });
      } catch (e) {
        throw new GatehouseError('UNREACHABLE', `witness ${w.key.name} at ${url} cannot be reached`, {
          cause: e,
        });
      }
      const text = (await res.text()).slice(0, 4096);
      if (res.status === 409 && /^\d{1,16}\n$/.test(text)) {
        old = Number(text.trim());
        continue;
      }
      if (res.status !== 200)
        throw new GatehouseError(
          'UNREACHABLE',
          `witness ${w.key.name} answered ${res.status}: ${text.trim().slice(0, 200)}`,
        );
      // The answer is signature lines: checked as part of the note, and kept only if valid.
      const found = verifiedCosignatures(`${note}${text}`, [w.key]);
      if (found.length === 0)
        throw new GatehouseError(
          'CHECKPOINT_INVALID',
          `witness ${w.key.name} returned no cosignature by its key`,
        );
      for (const c of found) {
        await this.#o.cosignatures.add({
          treeSize,
          rootHash,
          keyName: c.key.name,
          keyId: c.key.keyId,
          timestamp: c.timestamp,
          line: c.line,
        });
      }
      return;
    }
    throw new GatehouseError('CONFLICT', `witness ${w.key.name} keeps answering with a conflicting size`);
  }
}
