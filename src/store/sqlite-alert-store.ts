import type { DatabaseSync } from 'node:sqlite';
import { type Row, SqliteTables, storeError } from './sqlite-support.ts';
import type { AlertDeliveryRecord, AlertDeliveryState, AlertStore } from './store.ts';

function parseDelivery(r: Row): AlertDeliveryRecord {
  return {
    id: String(r.id),
    eventId: String(r.event_id),
    endpoint: String(r.endpoint),
    type: String(r.type),
    event: String(r.event),
    state: String(r.state) as AlertDeliveryState,
    attempts: Number(r.attempts),
    nextAttemptAt: String(r.next_attempt_at),
    ...(r.last_error === null || r.last_error === undefined ? {} : { lastError: String(r.last_error) }),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
  };
}

/** The alerts outbox in the embedded store. */
export class SqliteAlertStore extends SqliteTables implements AlertStore {
  constructor(db: DatabaseSync) {
    super(db);
  }

  async enqueue(records: readonly AlertDeliveryRecord[]): Promise<void> {
    try {
      for (const r of records)
        this.run(
          `INSERT INTO alert_deliveries (id, event_id, endpoint, type, event, state, attempts, next_attempt_at,
             last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (event_id, endpoint) DO NOTHING`,
          r.id,
          r.eventId,
          r.endpoint,
          r.type,
          r.event,
          r.state,
          r.attempts,
          r.nextAttemptAt,
          r.lastError ?? null,
          r.createdAt,
          r.updatedAt,
        );
    } catch (e) {
      throw storeError('cannot record an alert', e);
    }
  }

  async claimDue(now: string, leaseUntil: string, limit: number): Promise<AlertDeliveryRecord[]> {
    // One statement: a second dispatcher finds the rows already leased past `now`.
    return this.rows(
      `UPDATE alert_deliveries SET next_attempt_at = ?
        WHERE id IN (SELECT id FROM alert_deliveries WHERE state = 'pending' AND next_attempt_at <= ?
                      ORDER BY next_attempt_at LIMIT ?)
          AND state = 'pending' AND next_attempt_at <= ?
        RETURNING *`,
      leaseUntil,
      now,
      limit,
      now,
    ).map(parseDelivery);
  }

  async settle(
    id: string,
    change: Pick<AlertDeliveryRecord, 'state' | 'attempts' | 'nextAttemptAt' | 'updatedAt'> & {
      lastError?: string;
    },
  ): Promise<void> {
    this.run(
      'UPDATE alert_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?',
      change.state,
      change.attempts,
      change.nextAttemptAt,
      change.lastError ?? null,
      change.updatedAt,
      id,
    );
  }

  async get(id: string): Promise<AlertDeliveryRecord | undefined> {
    const r = this.row('SELECT * FROM alert_deliveries WHERE id = ?', id);
    return r === undefined ? undefined : parseDelivery(r);
  }

  async list(options: { state?: AlertDeliveryState; limit: number }): Promise<AlertDeliveryRecord[]> {
    return this.listed('alert_deliveries', 'created_at DESC, id', options.limit, {
      column: 'state',
      value: options.state,
    }).map(parseDelivery);
  }
}
