import type { VulnStore } from '../store/store.ts';
import { type CurrentVulnIndex, VulnIndex } from './vuln-index.ts';

/**
 * The vulnerability database held in memory for the life of a process, kept current: each
 * {@link current} call reads the store's generation (one indexed row) and reloads when any
 * process has written records since the index was loaded. A server and a separate
 * `gatehouse vulndb import` therefore never disagree for longer than one decision.
 */
export class LiveVulnIndex implements CurrentVulnIndex {
  readonly #vulns: VulnStore;
  #loaded: { generation: number; index: VulnIndex } | undefined;
  #loading: { generation: number; index: Promise<VulnIndex> } | undefined;

  constructor(vulns: VulnStore) {
    this.#vulns = vulns;
  }

  /**
   * The index of the database as it is now, loading it when it changed (concurrent callers share
   * one load). A failed load is not remembered: the next call tries again.
   * @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD (a stored record that no longer parses):
   *   callers fail closed, never falling back to an older index
   */
  async current(): Promise<VulnIndex> {
    // Read before loading: a write that lands during the load leaves a newer generation in the
    // store, so the next call reloads rather than trusting an index that might have missed it.
    const generation = await this.#vulns.generation();
    if (this.#loaded?.generation === generation) return this.#loaded.index;
    if (this.#loading?.generation === generation) return this.#loading.index;
    const loading = { generation, index: VulnIndex.load(this.#vulns) };
    this.#loading = loading;
    try {
      const index = await loading.index;
      if (this.#loaded === undefined || this.#loading === loading) this.#loaded = { generation, index };
      return index;
    } finally {
      if (this.#loading === loading) this.#loading = undefined;
    }
  }

  /** The generation the held index was loaded at, if one is held. */
  get generation(): number | undefined {
    return this.#loaded?.generation;
  }
}
