/**
 * Group commit for a log's appends: the items submitted in one tick are written together, in one
 * store transaction (and, for the transparency log, under one checkpoint signature). A caller
 * hears back only once the write of its batch has finished, so an acknowledged item is durable.
 */
import { GatehouseError } from '../common/errors.ts';

/**
 * How appends are grouped into batches. On an idle log a batch closes at the next turn of the
 * event loop (every item submitted in the same turn joins it), so a lone append waits for nothing.
 * On a busy log (items already waiting when a batch is written) the next batch closes `tickMs`
 * later, so that one transaction and one signature cover what arrives meanwhile. A batch never
 * holds more than `maxEntries`; a full one closes at once.
 */
export interface LogBatching {
  /** How long a busy log gathers items before writing the next batch, ms. */
  tickMs: number;
  /** The most items in one batch (one transaction). */
  maxEntries: number;
}

/**
 * The defaults (docs/decisions.md, issue 15): a busy log gathers for 5 ms (a lone append waits for
 * nothing), and a batch holds at most 1,024 entries, so that one transaction stays a few
 * milliseconds and a burst never waits behind one huge write.
 */
export const DEFAULT_LOG_BATCHING: Readonly<LogBatching> = Object.freeze({ tickMs: 5, maxEntries: 1024 });

/**
 * The batching settings with the defaults filled in, checked.
 * @throws GatehouseError BAD_CONFIG
 */
export function logBatching(given: Partial<LogBatching> = {}): LogBatching {
  const b = { ...DEFAULT_LOG_BATCHING, ...given };
  if (!Number.isSafeInteger(b.maxEntries) || b.maxEntries < 1 || !(b.tickMs >= 0 && b.tickMs <= 60_000))
    throw new GatehouseError(
      'BAD_CONFIG',
      `log batching needs maxEntries ≥ 1 and 0 ≤ tickMs ≤ 60000, not ${b.maxEntries} and ${b.tickMs}`,
    );
  return b;
}

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (e: unknown) => void;
}

/**
 * Batches of submitted items, written one batch at a time by `write`, which answers one result per
 * item, in order. A failed write fails every item of its batch and no other.
 */
export class GroupCommit<I, O> {
  readonly #write: (items: readonly I[]) => Promise<readonly O[]>;
  readonly #batching: LogBatching;
  /** Items waiting for the next batch, in the order of the calls. */
  #pending: Pending<I, O>[] = [];
  /** The batches being written, one after another; undefined while none is. */
  #writing: Promise<void> | undefined;
  #tick: NodeJS.Immediate | undefined;

  constructor(write: (items: readonly I[]) => Promise<readonly O[]>, batching: Partial<LogBatching> = {}) {
    this.#write = write;
    this.#batching = logBatching(batching);
  }

  /** Add an item to the next batch; settles once that batch is written. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Settles once every item submitted so far has been written (or has failed). */
  async drain(): Promise<void> {
    while (this.#pending.length > 0 || this.#writing !== undefined) {
      if (this.#writing === undefined) this.#start();
      await this.#writing;
    }
  }

  /** Close a batch now, at the tick, or when the batch being written is done. */
  #schedule(): void {
    // The writer takes whatever is pending when its batch is done: that is the group commit.
    if (this.#writing !== undefined) return;
    if (this.#pending.length >= this.#batching.maxEntries) {
      this.#start();
      return;
    }
    if (this.#tick !== undefined) return;
    this.#tick = setImmediate(() => this.#start());
  }

  #start(): void {
    if (this.#tick !== undefined) {
      clearImmediate(this.#tick);
      this.#tick = undefined;
    }
    if (this.#writing !== undefined || this.#pending.length === 0) return;
    this.#writing = this.#writeAll();
  }

  /** Write batches until nothing is pending; the last check and the end are one synchronous step. */
  async #writeAll(): Promise<void> {
    try {
      const { tickMs, maxEntries } = this.#batching;
      while (this.#pending.length > 0) {
        await this.#writeBatch(this.#pending.splice(0, maxEntries));
        // Busy: gather for one tick (the writer stays in charge, so arrivals only queue).
        if (tickMs > 0 && this.#pending.length > 0 && this.#pending.length < maxEntries)
          await new Promise((r) => setTimeout(r, tickMs));
      }
    } finally {
      this.#writing = undefined;
    }
  }

  async #writeBatch(batch: readonly Pending<I, O>[]): Promise<void> {
    let results: readonly O[];
    try {
      results = await this.#write(batch.map((p) => p.item));
      if (results.length !== batch.length)
        throw new GatehouseError(
          'STORE_ERROR',
          `a batch of ${batch.length} was written with ${results.length} results`,
        );
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      p.resolve(results[i] as O);
    });
  }
}
