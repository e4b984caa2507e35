import { PgTables } from './postgres-support.ts';
import type { TokenStore } from './store.ts';

/** Revoked token ids and spent single-use ids of the PostgreSQL store, shared by every instance. */
export class PostgresTokenStore extends PgTables implements TokenStore {
  async revoke(jti: string, expiresAt: number): Promise<void> {
    await this.useOnce(jti, expiresAt);
  }

  async useOnce(jti: string, expiresAt: number): Promise<boolean> {
    const rows = await this.query(
      'cannot record a token id',
      (sql) => sql`
        INSERT INTO revoked_tokens (jti, expires_at) VALUES (${jti}, ${expiresAt})
        ON CONFLICT (jti) DO NOTHING RETURNING jti`,
    );
    // Revocations of tokens that have expired on their own are no longer needed.
    const horizon = Math.floor(Date.now() / 1000) - 3600;
    await this.query(
      'cannot forget expired token ids',
      (sql) => sql`DELETE FROM revoked_tokens WHERE expires_at < ${horizon}`,
    );
    return rows.length === 1;
  }

  async isRevoked(jti: string): Promise<boolean> {
    const rows = await this.query(
      'cannot read revoked token ids',
      (sql) => sql`SELECT 1 FROM revoked_tokens WHERE jti = ${jti}`,
    );
    return rows.length > 0;
  }
}
