import type { VulnStore } from '../store/store.ts';
import { type Candidate, candidatesOf } from './candidates.ts';
import { normalizePackageName, type OsvRecord, parseOsvJson } from './osv.ts';
import { packageKey } from './osv-package.ts';
import { baseEcosystem } from './versions/ecosystems.ts';

/** Something that yields the index of the vulnerability database as it is now. */
export interface CurrentVulnIndex {
  /** @throws GatehouseError when the database cannot be loaded (matching then fails closed) */
  current(): Promise<VulnIndex>;
}

/** Where matching finds the advisories of one package. */
export interface VulnLookup {
  /** Records naming the package (OSV ecosystem without release, normalised name), by id. */
  recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]>;
}

/**
 * The whole vulnerability database parsed into memory, for evaluating many components (a large
 * SBOM, re-evaluation of every promoted artifact) without a query per component. Each record's
 * ranges are read once here, so matching compares versions without reading them again.
 */
export class VulnIndex implements VulnLookup {
  readonly #byPackage = new Map<string, Candidate[]>();
  /** Records held. */
  readonly size: number;

  private constructor(records: OsvRecord[]) {
    this.size = records.length;
    const byKey = new Map<string, OsvRecord[]>();
    for (const r of records) {
      const seen = new Set<string>();
      for (const a of r.affected) {
        if (a.package === undefined) continue;
        const eco = baseEcosystem(a.package.ecosystem);
        const key = packageKey(eco, normalizePackageName(eco, a.package.name));
        if (seen.has(key)) continue;
        seen.add(key);
        const list = byKey.get(key);
        if (list === undefined) byKey.set(key, [r]);
        else list.push(r);
      }
    }
    // Records in id order per package, as the store returns them, so findings merge alike.
    for (const [key, list] of byKey) {
      list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.#byPackage.set(key, candidatesOf(list, key, true));
    }
  }

  /** Load every record that is not withdrawn. @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD */
  static async load(vulns: VulnStore): Promise<VulnIndex> {
    const rows = await vulns.all();
    return new VulnIndex(
      rows
        .filter((r) => r.withdrawn === null)
        .map((r) => parseOsvJson(r.json, `vulnerability database record ${r.id}`)),
    );
  }

  /** An index over records already parsed (tests, benchmarks). */
  static of(records: OsvRecord[]): VulnIndex {
    return new VulnIndex(records.filter((r) => r.withdrawn === undefined));
  }

  async recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]> {
    return (this.#byPackage.get(packageKey(ecosystem, name)) ?? []).map((c) => c.prepared.record);
  }

  /** The candidates of one package key, ranges read ahead. */
  candidates(key: string): readonly Candidate[] | undefined {
    return this.#byPackage.get(key);
  }
}
