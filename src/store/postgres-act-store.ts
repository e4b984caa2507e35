import { GatehouseError } from '../common/errors.ts';
import { type PgRow, PgTables } from './postgres-support.ts';
import type { SecurityActRecord, SecurityActStore } from './store.ts';

function parseAct(r: PgRow): SecurityActRecord {
  return {
    kind: String(r.kind),
    name: String(r.name),
    version: Number(r.version),
    content: String(r.content),
    signature: String(r.signature),
    keyId: String(r.key_id),
    createdAt: String(r.created_at),
  };
}

/** The security role's versioned acts in the PostgreSQL store. */
export class PostgresActStore extends PgTables implements SecurityActStore {
  async append(record: SecurityActRecord): Promise<void> {
    const what = `${record.kind} ${record.name} version ${record.version}`;
    // Check and insert in one statement: two publications of the same version meet the primary key.
    const rows = await this.query(
      `cannot record ${record.kind} ${record.name}`,
      (sql) => sql`
        INSERT INTO security_acts (kind, name, version, content, signature, key_id, created_at)
        SELECT ${record.kind}, ${record.name}, ${record.version}, ${record.content}, ${record.signature},
               ${record.keyId}, ${record.createdAt}
        WHERE ${record.version}::int = (
          SELECT COALESCE(MAX(version), 0) + 1 FROM security_acts WHERE kind = ${record.kind} AND name = ${record.name})
        RETURNING version`,
      `${what} exists`,
    );
    if (rows.length === 1) return;
    const latest = await this.latest(record.kind, record.name);
    throw new GatehouseError('CONFLICT', `${what} is not the next version (${(latest?.version ?? 0) + 1})`);
  }

  async latest(kind: string, name: string): Promise<SecurityActRecord | undefined> {
    const [r] = await this.query(
      `cannot read ${kind} ${name}`,
      (sql) =>
        sql`SELECT * FROM security_acts WHERE kind = ${kind} AND name = ${name} ORDER BY version DESC LIMIT 1`,
    );
    return r === undefined ? undefined : parseAct(r);
  }

  async listLatest(kind: string): Promise<SecurityActRecord[]> {
    const rows = await this.query(
      `cannot list ${kind} acts`,
      (sql) => sql`
        SELECT DISTINCT ON (name) * FROM security_acts WHERE kind = ${kind} ORDER BY name, version DESC`,
    );
    return rows.map(parseAct);
  }

  async history(kind: string, name: string): Promise<SecurityActRecord[]> {
    const rows = await this.query(
      `cannot read ${kind} ${name}`,
      (sql) => sql`SELECT * FROM security_acts WHERE kind = ${kind} AND name = ${name} ORDER BY version DESC`,
    );
    return rows.map(parseAct);
  }
}
