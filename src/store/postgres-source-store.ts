import { optional, type PgRow, PgTables } from './postgres-support.ts';
import type {
  SourceProtectionRecord,
  SourceRefHeadRecord,
  SourceReviewRecord,
  SourceSignerRecord,
  SourceStore,
} from './store.ts';

/** Scope value for keys trusted for every repository (the same as in the SQLite store). */
const GLOBAL = '*';

function signerOf(r: PgRow): SourceSignerRecord {
  const rec: SourceSignerRecord = {
    id: String(r.id),
    principal: String(r.principal),
    format: String(r.format) as SourceSignerRecord['format'],
    publicKey: String(r.public_key),
    createdAt: String(r.created_at),
  };
  if (r.scope !== GLOBAL) rec.repository = String(r.scope);
  return rec;
}

/** Source-origin tables of the PostgreSQL store. */
export class PostgresSourceStore extends PgTables implements SourceStore {
  async protect(r: SourceProtectionRecord): Promise<void> {
    await this.query(
      `cannot protect ${r.ref} of ${r.repository}`,
      (sql) => sql`
        INSERT INTO source_protection (repository, ref_pattern, rule, created_at)
        VALUES (${r.repository}, ${r.ref}, ${JSON.stringify(r.rule)}, ${r.createdAt})
        ON CONFLICT (repository, ref_pattern) DO UPDATE SET rule = excluded.rule, created_at = excluded.created_at`,
    );
  }

  async unprotect(repository: string, ref: string): Promise<boolean> {
    const rows = await this.query(
      `cannot unprotect ${ref} of ${repository}`,
      (sql) =>
        sql`DELETE FROM source_protection WHERE repository = ${repository} AND ref_pattern = ${ref} RETURNING 1`,
    );
    return rows.length > 0;
  }

  async protections(repository?: string): Promise<SourceProtectionRecord[]> {
    const rows = await this.query('cannot read source protections', (sql) =>
      repository === undefined
        ? sql`SELECT * FROM source_protection ORDER BY repository, ref_pattern`
        : sql`SELECT * FROM source_protection WHERE repository = ${repository} ORDER BY ref_pattern`,
    );
    return rows.map((r) => ({
      repository: String(r.repository),
      ref: String(r.ref_pattern),
      rule: JSON.parse(String(r.rule)) as SourceProtectionRecord['rule'],
      createdAt: String(r.created_at),
    }));
  }

  async addReview(r: SourceReviewRecord): Promise<void> {
    await this.query(
      `cannot keep review ${r.id.slice(0, 12)}`,
      (sql) => sql`
        INSERT INTO source_reviews (id, repository, commit_id, reviewer, record, signature, created_at)
        VALUES (${r.id}, ${r.repository}, ${r.commit}, ${r.reviewer}, ${r.record}, ${r.signature}, ${r.createdAt})`,
      `review ${r.id.slice(0, 12)} is already kept`,
    );
  }

  async reviews(repository: string): Promise<SourceReviewRecord[]> {
    const rows = await this.query(
      'cannot read reviews',
      (sql) => sql`SELECT * FROM source_reviews WHERE repository = ${repository} ORDER BY created_at, id`,
    );
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
    await this.query(
      `cannot trust signer key ${s.id}`,
      (sql) => sql`
        INSERT INTO source_signers (id, scope, principal, format, public_key, created_at)
        VALUES (${s.id}, ${s.repository ?? GLOBAL}, ${s.principal}, ${s.format}, ${s.publicKey}, ${s.createdAt})`,
      `signer key ${s.id} is already trusted there`,
    );
  }

  async removeSigner(id: string, repository?: string): Promise<boolean> {
    const rows = await this.query(`cannot remove signer key ${id}`, (sql) =>
      repository === undefined
        ? sql`DELETE FROM source_signers WHERE id = ${id} RETURNING 1`
        : sql`DELETE FROM source_signers WHERE id = ${id} AND scope = ${repository} RETURNING 1`,
    );
    return rows.length > 0;
  }

  async signers(repository?: string): Promise<SourceSignerRecord[]> {
    const rows = await this.query('cannot read trusted signers', (sql) =>
      repository === undefined
        ? sql`SELECT * FROM source_signers ORDER BY principal, id, scope`
        : sql`SELECT * FROM source_signers WHERE scope IN (${GLOBAL}, ${repository}) ORDER BY principal, id, scope`,
    );
    return rows.map(signerOf);
  }

  async refHead(repository: string, ref: string): Promise<SourceRefHeadRecord | undefined> {
    const [r] = await this.query(
      `cannot read the head of ${ref}`,
      (sql) => sql`SELECT * FROM source_ref_heads WHERE repository = ${repository} AND ref = ${ref}`,
    );
    if (r === undefined) return undefined;
    const rec: SourceRefHeadRecord = {
      repository: String(r.repository),
      ref: String(r.ref),
      head: String(r.head),
      seenAt: String(r.seen_at),
    };
    const to = optional(r.rewritten_to);
    const at = optional(r.rewritten_at);
    if (to !== undefined) rec.rewrittenTo = to;
    if (at !== undefined) rec.rewrittenAt = at;
    return rec;
  }

  async setRefHead(r: SourceRefHeadRecord): Promise<void> {
    await this.query(
      `cannot keep the head of ${r.ref}`,
      (sql) => sql`
        INSERT INTO source_ref_heads (repository, ref, head, seen_at, rewritten_to, rewritten_at)
        VALUES (${r.repository}, ${r.ref}, ${r.head}, ${r.seenAt}, ${r.rewrittenTo ?? null}, ${r.rewrittenAt ?? null})
        ON CONFLICT (repository, ref) DO UPDATE SET head = excluded.head, seen_at = excluded.seen_at,
          rewritten_to = excluded.rewritten_to, rewritten_at = excluded.rewritten_at`,
    );
  }
}
