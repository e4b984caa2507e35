import { optional, type PgRow, PgTables } from './postgres-support.ts';
import type { AlertDeliveryRecord, AlertDeliveryState, AlertStore } from './store.ts';

function parseDelivery(r: PgRow): AlertDeliveryRecord {
  const lastError = optional(r.last_error);
  return {
    id: String(r.id),
    eventId: String(r.event_id),
    endpoint: String(r.endpoint),
    type: String(r.type),
    event: String(r.event),
    state: String(r.state) as AlertDeliveryState,
    attempts: Number(r.attempts),
    nextAttemptAt: String(r.next_attempt_at),
    ...(lastError === undefined ? {} : { lastError }),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
  };
}

/** The alerts outbox in the PostgreSQL store, shared by every instance's dispatcher. */
export class PostgresAlertStore extends PgTables implements AlertStore {
  async enqueue(records: readonly AlertDeliveryRecord[]): Promise<void> {
    for (const r of records)
      await this.query(
        'cannot record an alert',
        (sql) => sql`
          INSERT INTO alert_deliveries (id, event_id, endpoint, type, event, state, attempts, next_attempt_at,
            last_error, created_at, updated_at)
          VALUES (${r.id}, ${r.eventId}, ${r.endpoint}, ${r.type}, ${r.event}, ${r.state}, ${r.attempts},
            ${r.nextAttemptAt}, ${r.lastError ?? null}, ${r.createdAt}, ${r.updatedAt})
          ON CONFLICT (event_id, endpoint) DO NOTHING`,
      );
  }

  async claimDue(now: string, leaseUntil: string, limit: number): Promise<AlertDeliveryRecord[]> {
    // SKIP LOCKED: instances claiming at once take disjoint rows.
    const rows = await this.query(
      'cannot claim alerts',
      (sql) => sql`
        UPDATE alert_deliveries SET next_attempt_at = ${leaseUntil}
         WHERE id IN (SELECT id FROM alert_deliveries WHERE state = 'pending' AND next_attempt_at <= ${now}
                       ORDER BY next_attempt_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
        RETURNING *`,
    );
    return rows.map(parseDelivery);
  }

  async settle(
    id: string,
    change: Pick<AlertDeliveryRecord, 'state' | 'attempts' | 'nextAttemptAt' | 'updatedAt'> & {
      lastError?: string;
    },
  ): Promise<void> {
    await this.query(
      `cannot update alert ${id}`,
      (sql) => sql`
        UPDATE alert_deliveries SET state = ${change.state}, attempts = ${change.attempts},
          next_attempt_at = ${change.nextAttemptAt}, last_error = ${change.lastError ?? null},
          updated_at = ${change.updatedAt}
         WHERE id = ${id}`,
    );
  }

  async get(id: string): Promise<AlertDeliveryRecord | undefined> {
    const [r] = await this.query(
      `cannot read alert ${id}`,
      (sql) => sql`SELECT * FROM alert_deliveries WHERE id = ${id}`,
    );
    return r === undefined ? undefined : parseDelivery(r);
  }

  async list(options: { state?: AlertDeliveryState; limit: number }): Promise<AlertDeliveryRecord[]> {
    const rows = await this.query('cannot list alerts', (sql) =>
      options.state === undefined
        ? sql`SELECT * FROM alert_deliveries ORDER BY created_at DESC, id LIMIT ${options.limit}`
        : sql`SELECT * FROM alert_deliveries WHERE state = ${options.state}
               ORDER BY created_at DESC, id LIMIT ${options.limit}`,
    );
    return rows.map(parseDelivery);
  }
}
