import { optional, type PgRow, PgTables, pgError } from './postgres-support.ts';
import type { VulnRecord, VulnStore } from './store.ts';

/** Records per statement of an import (each row of `vulns` takes five bind parameters). */
const PER_STATEMENT = 2_000;

function vulnOf(r: PgRow, packages: VulnRecord['packages']): VulnRecord {
  return {
    id: String(r.id),
    modified: String(r.modified),
    withdrawn: optional(r.withdrawn) ?? null,
    aliases: JSON.parse(String(r.aliases)) as string[],
    json: String(r.json),
    packages,
  };
}

/** The vulnerability database in PostgreSQL: OSV records and the packages they affect. */
export class PostgresVulnStore extends PgTables implements VulnStore {
  async upsert(records: VulnRecord[]): Promise<void> {
    // A record named twice counts as its last copy, as if written one after the other.
    const byId = new Map(records.map((r) => [r.id, r]));
    const unique = [...byId.values()];
    try {
      await this.atomically(async (sql) => {
        for (let i = 0; i < unique.length; i += PER_STATEMENT) {
          const part = unique.slice(i, i + PER_STATEMENT);
          const rows = part.map((r) => ({
            id: r.id,
            modified: r.modified,
            withdrawn: r.withdrawn,
            aliases: JSON.stringify(r.aliases),
            json: r.json,
          }));
          await sql`
            INSERT INTO vulns ${sql(rows, 'id', 'modified', 'withdrawn', 'aliases', 'json')}
            ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn,
              aliases = excluded.aliases, json = excluded.json`;
          await sql`DELETE FROM vuln_packages WHERE vuln_id = ANY(${sql.array(part.map((r) => r.id))}::text[])`;
          const packages = part.flatMap((r) =>
            r.packages.map((p) => ({ vuln_id: r.id, ecosystem: p.ecosystem, name: p.name })),
          );
          for (let k = 0; k < packages.length; k += PER_STATEMENT * 3) {
            const slice = packages.slice(k, k + PER_STATEMENT * 3);
            await sql`
              INSERT INTO vuln_packages ${sql(slice, 'vuln_id', 'ecosystem', 'name')}
              ON CONFLICT DO NOTHING`;
          }
        }
      });
    } catch (e) {
      throw pgError('cannot store vulnerability records', e);
    }
  }

  async #withPackages(rows: readonly PgRow[]): Promise<VulnRecord[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => String(r.id));
    const packages = await this.query(
      'cannot read vulnerability packages',
      (sql) => sql`
        SELECT vuln_id, ecosystem, name FROM vuln_packages WHERE vuln_id = ANY(${sql.array(ids)}::text[])
        ORDER BY vuln_id, ecosystem, name`,
    );
    const of = new Map<string, VulnRecord['packages']>();
    for (const p of packages) {
      const list = of.get(String(p.vuln_id)) ?? [];
      list.push({ ecosystem: String(p.ecosystem), name: String(p.name) });
      of.set(String(p.vuln_id), list);
    }
    return rows.map((r) => vulnOf(r, of.get(String(r.id)) ?? []));
  }

  async get(id: string): Promise<VulnRecord | undefined> {
    const rows = await this.query(
      `cannot read vulnerability ${id}`,
      (sql) => sql`SELECT * FROM vulns WHERE id = ${id}`,
    );
    const [found] = await this.#withPackages(rows);
    return found;
  }

  async findByPackage(ecosystem: string, name: string): Promise<VulnRecord[]> {
    const rows = await this.query(
      'cannot look up vulnerabilities',
      (sql) => sql`
        SELECT v.* FROM vulns v JOIN vuln_packages p ON p.vuln_id = v.id
        WHERE p.ecosystem = ${ecosystem} AND p.name = ${name} AND v.withdrawn IS NULL ORDER BY v.id`,
    );
    return this.#withPackages(rows);
  }

  async modifiedIndex(): Promise<Map<string, string>> {
    const rows = await this.query(
      'cannot read the vulnerability index',
      (sql) => sql`SELECT id, modified FROM vulns`,
    );
    return new Map(rows.map((r) => [String(r.id), String(r.modified)]));
  }

  async all(): Promise<VulnRecord[]> {
    // Packages are not needed by callers loading the whole database (they parse the JSON).
    const rows = await this.query(
      'cannot read the vulnerability database',
      (sql) => sql`SELECT * FROM vulns ORDER BY id`,
    );
    return rows.map((r) => vulnOf(r, []));
  }

  async count(): Promise<number> {
    const [r] = await this.query(
      'cannot count vulnerabilities',
      (sql) => sql`SELECT COUNT(*)::bigint AS n FROM vulns`,
    );
    return Number(r?.n);
  }

  async newestModified(): Promise<string | undefined> {
    const [r] = await this.query(
      'cannot read the vulnerability database age',
      (sql) => sql`SELECT MAX(modified) AS m FROM vulns`,
    );
    return optional(r?.m);
  }

  async generation(): Promise<number> {
    // Moved in the writer's transaction by a trigger on `vulns` (migration 11), by any instance.
    const [r] = await this.query(
      'reading the vulnerability database generation',
      (sql) => sql`SELECT generation FROM vuln_generation WHERE id = 1`,
    );
    if (r === undefined) throw pgError('reading the vulnerability database generation', 'no row');
    return Number(r.generation);
  }
}
