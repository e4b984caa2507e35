import { SqliteTables } from './sqlite-support.ts';
import type { TokenStore } from './store.ts';

/** Revoked token ids of the embedded store. */
export class SqliteTokenStore extends SqliteTables implements TokenStore {
  async revoke(jti: string, expiresAt: number): Promise<void> {
    await this.useOnce(jti, expiresAt);
  }

  async useOnce(jti: string, expiresAt: number): Promise<boolean> {
    const added = this.run(
      'INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING',
      jti,
      expiresAt,
    );
    // Revocations of tokens that have expired on their own are no longer needed.
    this.run('DELETE FROM revoked_tokens WHERE expires_at < ?', Math.floor(Date.now() / 1000) - 3600);
    return added === 1;
  }

  async isRevoked(jti: string): Promise<boolean> {
    return this.row('SELECT 1 FROM revoked_tokens WHERE jti = ?', jti) !== undefined;
  }
}
