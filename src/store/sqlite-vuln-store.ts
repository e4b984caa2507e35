import type { DatabaseSync } from 'node:sqlite';
import { type Immediate, type Row, SqliteTables, storeError } from './sqlite-support.ts';
import type { VulnRecord, VulnStore } from './store.ts';

function vulnOf(r: Row, packages: VulnRecord['packages']): VulnRecord {
  return {
    id: String(r.id),
    modified: String(r.modified),
    withdrawn: r.withdrawn === null ? null : String(r.withdrawn),
    aliases: JSON.parse(String(r.aliases)) as string[],
    json: String(r.json),
    packages,
  };
}

/** The vulnerability database of the embedded store: OSV records and the packages they affect. */
export class SqliteVulnStore extends SqliteTables implements VulnStore {
  readonly #immediate: Immediate;
  constructor(db: DatabaseSync, immediate: Immediate) {
    super(db);
    this.#immediate = immediate;
  }

  async upsert(records: VulnRecord[]): Promise<void> {
    this.#immediate(() => {
      const del = this.db.prepare('DELETE FROM vuln_packages WHERE vuln_id = ?');
      const put = this.db.prepare(
        `INSERT INTO vulns (id, modified, withdrawn, aliases, json) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn,
           aliases = excluded.aliases, json = excluded.json`,
      );
      const pkg = this.db.prepare(
        'INSERT OR IGNORE INTO vuln_packages (vuln_id, ecosystem, name) VALUES (?, ?, ?)',
      );
      for (const r of records) {
        put.run(r.id, r.modified, r.withdrawn, JSON.stringify(r.aliases), r.json);
        del.run(r.id);
        for (const p of r.packages) pkg.run(r.id, p.ecosystem, p.name);
      }
    });
  }

  #parse(r: Row): VulnRecord {
    const packages = this.rows(
      'SELECT ecosystem, name FROM vuln_packages WHERE vuln_id = ? ORDER BY ecosystem, name',
      String(r.id),
    );
    return vulnOf(
      r,
      packages.map((p) => ({ ecosystem: String(p.ecosystem), name: String(p.name) })),
    );
  }

  async get(id: string): Promise<VulnRecord | undefined> {
    const r = this.row('SELECT * FROM vulns WHERE id = ?', id);
    return r === undefined ? undefined : this.#parse(r);
  }

  async findByPackage(ecosystem: string, name: string): Promise<VulnRecord[]> {
    const rows = this.rows(
      `SELECT v.* FROM vulns v JOIN vuln_packages p ON p.vuln_id = v.id
       WHERE p.ecosystem = ? AND p.name = ? AND v.withdrawn IS NULL ORDER BY v.id`,
      ecosystem,
      name,
    );
    return rows.map((r) => this.#parse(r));
  }

  async modifiedIndex(): Promise<Map<string, string>> {
    const rows = this.rows('SELECT id, modified FROM vulns');
    return new Map(rows.map((r) => [String(r.id), String(r.modified)]));
  }

  async all(): Promise<VulnRecord[]> {
    // Packages are not needed by callers loading the whole database (they parse the JSON).
    const rows = this.rows('SELECT * FROM vulns ORDER BY id');
    return rows.map((r) => vulnOf(r, []));
  }

  async count(): Promise<number> {
    return Number(this.row('SELECT COUNT(*) AS n FROM vulns')?.n);
  }

  async newestModified(): Promise<string | undefined> {
    const r = this.db.prepare('SELECT MAX(modified) AS m FROM vulns').get() as Row;
    return r.m === null || r.m === undefined ? undefined : String(r.m);
  }

  async generation(): Promise<number> {
    // Moved by triggers on every write to `vulns` (migration 11), in whichever process.
    let r: Row | undefined;
    try {
      r = this.row('SELECT generation FROM vuln_generation WHERE id = 1');
    } catch (e) {
      throw storeError('reading the vulnerability database generation', e);
    }
    if (r === undefined) throw storeError('reading the vulnerability database generation', 'no row');
    return Number(r.generation);
  }
}
