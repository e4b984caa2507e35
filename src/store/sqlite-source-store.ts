import { SqliteTables } from './sqlite-support.ts';
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
export class SqliteSourceStore extends SqliteTables implements SourceStore {
  async protect(r: SourceProtectionRecord): Promise<void> {
    this.run(
      `INSERT INTO source_protection (repository, ref_pattern, rule, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (repository, ref_pattern) DO UPDATE SET rule = excluded.rule, created_at = excluded.created_at`,
      r.repository,
      r.ref,
      JSON.stringify(r.rule),
      r.createdAt,
    );
  }

  async unprotect(repository: string, ref: string): Promise<boolean> {
    return (
      this.run('DELETE FROM source_protection WHERE repository = ? AND ref_pattern = ?', repository, ref) > 0
    );
  }

  async protections(repository?: string): Promise<SourceProtectionRecord[]> {
    const rows =
      repository === undefined
        ? this.rows('SELECT * FROM source_protection ORDER BY repository, ref_pattern')
        : this.rows('SELECT * FROM source_protection WHERE repository = ? ORDER BY ref_pattern', repository);
    return rows.map((r) => ({
      repository: String(r.repository),
      ref: String(r.ref_pattern),
      rule: JSON.parse(String(r.rule)) as SourceProtectionRecord['rule'],
      createdAt: String(r.created_at),
    }));
  }

  async addReview(r: SourceReviewRecord): Promise<void> {
    this.insertNew(
      `INSERT INTO source_reviews (id, repository, commit_id, reviewer, record, signature, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [r.id, r.repository, r.commit, r.reviewer, r.record, r.signature, r.createdAt],
      {
        conflict: `review ${r.id.slice(0, 12)} is already kept`,
        failure: `cannot keep review ${r.id.slice(0, 12)}`,
      },
    );
  }

  async reviews(repository: string): Promise<SourceReviewRecord[]> {
    const rows = this.rows(
      'SELECT * FROM source_reviews WHERE repository = ? ORDER BY created_at, id',
      repository,
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
    this.insertNew(
      `INSERT INTO source_signers (id, scope, principal, format, public_key, created_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
      [s.id, s.repository ?? GLOBAL, s.principal, s.format, s.publicKey, s.createdAt],
      { conflict: `signer key ${s.id} is already trusted there`, failure: `cannot trust signer key ${s.id}` },
    );
  }

  async removeSigner(id: string, repository?: string): Promise<boolean> {
    const changed =
      repository === undefined
        ? this.run('DELETE FROM source_signers WHERE id = ?', id)
        : this.run('DELETE FROM source_signers WHERE id = ? AND scope = ?', id, repository);
    return changed > 0;
  }

  async signers(repository?: string): Promise<SourceSignerRecord[]> {
    const rows =
      repository === undefined
        ? this.rows('SELECT * FROM source_signers ORDER BY principal, id, scope')
        : this.rows(
            'SELECT * FROM source_signers WHERE scope IN (?, ?) ORDER BY principal, id, scope',
            GLOBAL,
            repository,
          );
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
    const r = this.row('SELECT * FROM source_ref_heads WHERE repository = ? AND ref = ?', repository, ref);
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
    this.run(
      `INSERT INTO source_ref_heads (repository, ref, head, seen_at, rewritten_to, rewritten_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (repository, ref) DO UPDATE SET head = excluded.head, seen_at = excluded.seen_at,
         rewritten_to = excluded.rewritten_to, rewritten_at = excluded.rewritten_at`,
      r.repository,
      r.ref,
      r.head,
      r.seenAt,
      r.rewrittenTo ?? null,
      r.rewrittenAt ?? null,
    );
  }
}
