import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { isUniqueViolation, type Row } from './sqlite-support.ts';
import type {
  SourceProtectionRecord,
  SourceRefHeadRecord,
  SourceReviewRecord,
  SourceSignerRecord,
  SourceStore,
} from './store.ts';

/** Scope value for keys trusted for every repository (SQLite primary keys cannot hold NULL well). */
const GLOBAL = '*';

/** Source-origin tables of the embedded store (migration 7). */
export class SqliteSourceStore implements SourceStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async protect(r: SourceProtectionRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO source_protection (repository, ref_pattern, rule, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repository, ref_pattern) DO UPDATE SET rule = excluded.rule, created_at = excluded.created_at`,
      )
      .run(r.repository, r.ref, JSON.stringify(r.rule), r.createdAt);
  }

  async unprotect(repository: string, ref: string): Promise<boolean> {
    const res = this.#db
      .prepare('DELETE FROM source_protection WHERE repository = ? AND ref_pattern = ?')
      .run(repository, ref);
    return Number(res.changes) > 0;
  }

  async protections(repository?: string): Promise<SourceProtectionRecord[]> {
    const rows = (
      repository === undefined
        ? this.#db.prepare('SELECT * FROM source_protection ORDER BY repository, ref_pattern').all()
        : this.#db
            .prepare('SELECT * FROM source_protection WHERE repository = ? ORDER BY ref_pattern')
            .all(repository)
    ) as Row[];
    return rows.map((r) => ({
      repository: String(r.repository),
      ref: String(r.ref_pattern),
      rule: JSON.parse(String(r.rule)) as SourceProtectionRecord['rule'],
      createdAt: String(r.created_at),
    }));
  }

  async addReview(r: SourceReviewRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          `INSERT INTO source_reviews (id, repository, commit_id, reviewer, record, signature, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(r.id, r.repository, r.commit, r.reviewer, r.record, r.signature, r.createdAt);
    } catch (e) {
      if (isUniqueViolation(e))
        throw new GatehouseError('CONFLICT', `review ${r.id.slice(0, 12)} is already kept`);
      throw new GatehouseError('STORE_ERROR', `cannot keep review ${r.id.slice(0, 12)}`, { cause: e });
    }
  }

  async reviews(repository: string): Promise<SourceReviewRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM source_reviews WHERE repository = ? ORDER BY created_at, id')
      .all(repository) as Row[];
    return rows.map((r) => ({
      id: String(r.id),
      repository: String(r.repository),
      commit: String(r.commit_id),
      reviewer: String(r.reviewer),
      record: String(r.record),
      signature: String(r.signature),
      createdAt: String(r.created_at),
    }));
  }

  async addSigner(s: SourceSignerRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          `INSERT INTO source_signers (id, scope, principal, format, public_key, created_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(s.id, s.repository ?? GLOBAL, s.principal, s.format, s.publicKey, s.createdAt);
    } catch (e) {
      if (isUniqueViolation(e))
        throw new GatehouseError('CONFLICT', `signer key ${s.id} is already trusted there`);
      throw new GatehouseError('STORE_ERROR', `cannot trust signer key ${s.id}`, { cause: e });
    }
  }

  async removeSigner(id: string, repository?: string): Promise<boolean> {
    const res =
      repository === undefined
        ? this.#db.prepare('DELETE FROM source_signers WHERE id = ?').run(id)
        : this.#db.prepare('DELETE FROM source_signers WHERE id = ? AND scope = ?').run(id, repository);
    return Number(res.changes) > 0;
  }

  async signers(repository?: string): Promise<SourceSignerRecord[]> {
    const rows = (
      repository === undefined
        ? this.#db.prepare('SELECT * FROM source_signers ORDER BY principal, id, scope').all()
        : this.#db
            .prepare('SELECT * FROM source_signers WHERE scope IN (?, ?) ORDER BY principal, id, scope')
            .all(GLOBAL, repository)
    ) as Row[];
    return rows.map((r) => {
      const rec: SourceSignerRecord = {
        id: String(r.id),
        principal: String(r.principal),
        format: String(r.format) as SourceSignerRecord['format'],
        publicKey: String(r.public_key),
        createdAt: String(r.created_at),
      };
      if (r.scope !== GLOBAL) rec.repository = String(r.scope);
      return rec;
    });
  }

  async refHead(repository: string, ref: string): Promise<SourceRefHeadRecord | undefined> {
    const r = this.#db
      .prepare('SELECT * FROM source_ref_heads WHERE repository = ? AND ref = ?')
      .get(repository, ref) as Row | undefined;
    if (r === undefined) return undefined;
    const rec: SourceRefHeadRecord = {
      repository: String(r.repository),
      ref: String(r.ref),
      head: String(r.head),
      seenAt: String(r.seen_at),
    };
    if (r.rewritten_to !== null && r.rewritten_to !== undefined) rec.rewrittenTo = String(r.rewritten_to);
    if (r.rewritten_at !== null && r.rewritten_at !== undefined) rec.rewrittenAt = String(r.rewritten_at);
    return rec;
  }

  async setRefHead(r: SourceRefHeadRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO source_ref_heads (repository, ref, head, seen_at, rewritten_to, rewritten_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (repository, ref) DO UPDATE SET head = excluded.head, seen_at = excluded.seen_at,
           rewritten_to = excluded.rewritten_to, rewritten_at = excluded.rewritten_at`,
      )
      .run(r.repository, r.ref, r.head, r.seenAt, r.rewrittenTo ?? null, r.rewrittenAt ?? null);
  }
}
