import type { VulnStore } from '../store/store.ts';
import { type Candidate, candidatesOf } from './candidates.ts';
import { parseOsvJson } from './osv.ts';
import { packageKey } from './osv-package.ts';
import type { VulnLookup } from './vuln-index.ts';

/**
 * Store-backed lookup: one query per distinct package, parsed once, ranges evaluated as written
 * (no reading ahead). It is the reference the in-memory index is tested against.
 */
export class StoreLookup {
  readonly #vulns: VulnStore;
  readonly #cache = new Map<string, Candidate[]>();
  constructor(vulns: VulnStore) {
    this.#vulns = vulns;
  }
  /**
   * The candidates of one package, queried and prepared on first use.
   * @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD (a stored record that does not parse)
   */
  async candidates(ecosystem: string, name: string): Promise<readonly Candidate[]> {
    const key = packageKey(ecosystem, name);
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      const records = (await this.#vulns.findByPackage(ecosystem, name)).map((r) =>
        parseOsvJson(r.json, `vulnerability database record ${r.id}`),
      );
      hit = candidatesOf(records, key, false);
      this.#cache.set(key, hit);
    }
    return hit;
  }
}

/** A lookup given as records only (not an index): its records are prepared per package. */
export class RecordsLookup {
  readonly #lookup: VulnLookup;
  readonly #cache = new Map<string, Candidate[]>();
  constructor(lookup: VulnLookup) {
    this.#lookup = lookup;
  }
  /** The candidates of one package, looked up and prepared on first use (ranges read ahead). */
  async candidates(ecosystem: string, name: string): Promise<readonly Candidate[]> {
    const key = packageKey(ecosystem, name);
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      hit = candidatesOf(await this.#lookup.recordsFor(ecosystem, name), key, true);
      this.#cache.set(key, hit);
    }
    return hit;
  }
}
