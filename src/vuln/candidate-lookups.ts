import type { VulnStore } from '../store/store.ts';
import { type Candidate, candidatesOf } from './candidates.ts';
import { type OsvRecord, parseOsvJson } from './osv.ts';
import { packageKey } from './osv-package.ts';
import type { VulnLookup } from './vuln-index.ts';

/** Candidates per package, prepared from the records `recordsOf` finds on first use, then kept. */
abstract class PreparedLookup {
  readonly #recordsOf: (ecosystem: string, name: string) => Promise<readonly OsvRecord[]>;
  readonly #readAhead: boolean;
  readonly #cache = new Map<string, Candidate[]>();

  protected constructor(
    recordsOf: (ecosystem: string, name: string) => Promise<readonly OsvRecord[]>,
    readAhead: boolean,
  ) {
    this.#recordsOf = recordsOf;
    this.#readAhead = readAhead;
  }

  async candidates(ecosystem: string, name: string): Promise<readonly Candidate[]> {
    const key = packageKey(ecosystem, name);
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      hit = candidatesOf(await this.#recordsOf(ecosystem, name), key, this.#readAhead);
      this.#cache.set(key, hit);
    }
    return hit;
  }
}

/**
 * Store-backed lookup: one query per distinct package, parsed once, ranges evaluated as written
 * (no reading ahead). It is the reference the in-memory index is tested against.
 * Its candidates() throws GatehouseError STORE_ERROR, or BAD_OSV_RECORD for a stored record that
 * does not parse.
 */
export class StoreLookup extends PreparedLookup {
  constructor(vulns: VulnStore) {
    super(
      async (ecosystem, name) =>
        (await vulns.findByPackage(ecosystem, name)).map((r) =>
          parseOsvJson(r.json, `vulnerability database record ${r.id}`),
        ),
      false,
    );
  }
}

/** A lookup given as records only (not an index): its records are prepared per package (ranges read ahead). */
export class RecordsLookup extends PreparedLookup {
  constructor(lookup: VulnLookup) {
    super((ecosystem, name) => lookup.recordsFor(ecosystem, name), true);
  }
}
