import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { type Immediate, isUniqueViolation, type Row, storeError } from './sqlite-support.ts';
import type { SecurityActRecord, SecurityActStore } from './store.ts';

function parseAct(r: Row): SecurityActRecord {
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

/** The security role's versioned acts in the embedded store. */
export class SqliteActStore implements SecurityActStore {
  readonly #db: DatabaseSync;
  readonly #immediate: Immediate;

  constructor(db: DatabaseSync, immediate: Immediate) {
    this.#db = db;
    this.#immediate = immediate;
  }

  async append(record: SecurityActRecord): Promise<void> {
    this.#immediate(() => {
      // Read and insert in one write transaction: two publications of the same version cannot
      // both pass the "exactly next" check.
      const latest = this.#db
        .prepare('SELECT MAX(version) AS v FROM security_acts WHERE kind = ? AND name = ?')
        .get(record.kind, record.name) as Row | undefined;
      const next = Number(latest?.v ?? 0) + 1;
      if (record.version !== next)
        throw new GatehouseError(
          'CONFLICT',
          `${record.kind} ${record.name} version ${record.version} is not the next version (${next})`,
        );
      try {
        this.#db
          .prepare(
            'INSERT INTO security_acts (kind, name, version, content, signature, key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
          )
          .run(
            record.kind,
            record.name,
            record.version,
            record.content,
            record.signature,
            record.keyId,
            record.createdAt,
          );
      } catch (e) {
        if (isUniqueViolation(e))
          throw new GatehouseError(
            'CONFLICT',
            `${record.kind} ${record.name} version ${record.version} exists`,
          );
        throw storeError(`cannot record ${record.kind} ${record.name}`, e);
      }
    });
  }

  async latest(kind: string, name: string): Promise<SecurityActRecord | undefined> {
    const r = this.#db
      .prepare('SELECT * FROM security_acts WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1')
      .get(kind, name) as Row | undefined;
    return r === undefined ? undefined : parseAct(r);
  }

  async listLatest(kind: string): Promise<SecurityActRecord[]> {
    const rows = this.#db
      .prepare(
        `SELECT a.* FROM security_acts a
           JOIN (SELECT name, MAX(version) AS v FROM security_acts WHERE kind = ? GROUP BY name) m
             ON a.name = m.name AND a.version = m.v
          WHERE a.kind = ? ORDER BY a.name`,
      )
      .all(kind, kind) as Row[];
    return rows.map(parseAct);
  }

  async history(kind: string, name: string): Promise<SecurityActRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM security_acts WHERE kind = ? AND name = ? ORDER BY version DESC')
      .all(kind, name) as Row[];
    return rows.map(parseAct);
  }
}
