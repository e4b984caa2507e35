import type { DatabaseSync } from 'node:sqlite';
import type { TokenStore } from './store.ts';

/** Revoked token ids of the embedded store. */
export class SqliteTokenStore implements TokenStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async revoke(jti: string, expiresAt: number): Promise<void> {
    this.#db
      .prepare('INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING')
      .run(jti, expiresAt);
    // Revocations of tokens that have expired on their own are no longer needed.
    this.#db
      .prepare('DELETE FROM revoked_tokens WHERE expires_at < ?')
      .run(Math.floor(Date.now() / 1000) - 3600);
  }

  async isRevoked(jti: string): Promise<boolean> {
    return this.#db.prepare('SELECT 1 FROM revoked_tokens WHERE jti = ?').get(jti) !== undefined;
  }
}
