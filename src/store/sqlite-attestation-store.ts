import { GatehouseError } from '../common/errors.ts';
import { type Row, SqliteTables } from './sqlite-support.ts';
import type {
  AttestationRefusalRecord,
  AttestationSessionRecord,
  AttestationStore,
  HostAttestationRecord,
  ReferenceValueBundleRecord,
  TakenSession,
} from './store.ts';

function bundleOf(r: Row): ReferenceValueBundleRecord {
  return {
    version: Number(r.version),
    digest: String(r.digest),
    payload: String(r.payload),
    signature: String(r.signature),
    keyId: String(r.key_id),
    publishedAt: String(r.published_at),
  };
}

function refusalOf(r: Row): AttestationRefusalRecord {
  return {
    id: String(r.id),
    stage: String(r.stage) as AttestationRefusalRecord['stage'],
    ...(r.job_id === null || r.job_id === undefined ? {} : { jobId: String(r.job_id) }),
    failedChecks: JSON.parse(String(r.failed_checks)) as AttestationRefusalRecord['failedChecks'],
    createdAt: String(r.created_at),
  };
}

/** Attestation tables of the embedded store (migration 8). */
export class SqliteAttestationStore extends SqliteTables implements AttestationStore {
  async publishReferenceValues(r: ReferenceValueBundleRecord): Promise<void> {
    // Check and insert in one statement so that two publishers cannot both take the next version.
    const changed = this.run(
      `INSERT INTO reference_value_bundles (version, digest, payload, signature, key_id, published_at)
       SELECT ?, ?, ?, ?, ?, ? WHERE ? = (SELECT COALESCE(MAX(version), 0) + 1 FROM reference_value_bundles)`,
      r.version,
      r.digest,
      r.payload,
      r.signature,
      r.keyId,
      r.publishedAt,
      r.version,
    );
    if (changed !== 1)
      throw new GatehouseError(
        'CONFLICT',
        `reference values version ${r.version} is not the next version (published concurrently?)`,
      );
  }

  async latestReferenceValues(): Promise<ReferenceValueBundleRecord | undefined> {
    const r = this.row('SELECT * FROM reference_value_bundles ORDER BY version DESC LIMIT 1');
    return r === undefined ? undefined : bundleOf(r);
  }

  async getReferenceValues(version: number): Promise<ReferenceValueBundleRecord | undefined> {
    const r = this.row('SELECT * FROM reference_value_bundles WHERE version = ?', version);
    return r === undefined ? undefined : bundleOf(r);
  }

  async referenceValueHistory(): Promise<ReferenceValueBundleRecord[]> {
    return this.rows('SELECT * FROM reference_value_bundles ORDER BY version DESC').map(bundleOf);
  }

  async addRefusal(r: AttestationRefusalRecord): Promise<void> {
    this.run(
      'INSERT INTO attestation_refusals (id, stage, job_id, failed_checks, created_at) VALUES (?, ?, ?, ?, ?)',
      r.id,
      r.stage,
      r.jobId ?? null,
      JSON.stringify(r.failedChecks),
      r.createdAt,
    );
  }

  async listRefusals(options: { limit?: number; jobId?: string } = {}): Promise<AttestationRefusalRecord[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 10_000));
    return this.listed('attestation_refusals', 'created_at DESC, rowid DESC', limit, {
      column: 'job_id',
      value: options.jobId,
    }).map(refusalOf);
  }

  async openSession(r: AttestationSessionRecord, maxOpen: number): Promise<void> {
    this.run('DELETE FROM attestation_sessions WHERE expires_at < ?', Date.now() - 60_000);
    // Past the bound, the oldest unanswered challenges go first.
    this.run(
      `DELETE FROM attestation_sessions WHERE id IN (
         SELECT id FROM attestation_sessions WHERE spent_at IS NULL
         ORDER BY expires_at DESC, id LIMIT -1 OFFSET ?)`,
      Math.max(0, maxOpen - 1),
    );
    this.run(
      'INSERT INTO attestation_sessions (id, job_id, state, expires_at, created_at) VALUES (?, ?, ?, ?, ?)',
      r.id,
      r.jobId ?? null,
      r.state,
      r.expiresAt,
      r.createdAt,
    );
  }

  async takeSession(id: string): Promise<TakenSession> {
    // One statement: of two callers handed the same answer, one spends the session.
    const r = this.row(
      'UPDATE attestation_sessions SET spent_at = ? WHERE id = ? AND spent_at IS NULL RETURNING *',
      new Date().toISOString(),
      id,
    );
    if (r !== undefined)
      return {
        status: 'taken',
        session: {
          id: String(r.id),
          ...(r.job_id === null || r.job_id === undefined ? {} : { jobId: String(r.job_id) }),
          state: String(r.state),
          expiresAt: Number(r.expires_at),
          createdAt: String(r.created_at),
        },
      };
    return this.row('SELECT 1 FROM attestation_sessions WHERE id = ?', id) === undefined
      ? { status: 'unknown' }
      : { status: 'spent' };
  }

  async akCounters(akName: string): Promise<{ resetCount: number; restartCount: number } | undefined> {
    const r = this.row('SELECT reset_count, restart_count FROM ak_counters WHERE ak_name = ?', akName);
    return r === undefined
      ? undefined
      : { resetCount: Number(r.reset_count), restartCount: Number(r.restart_count) };
  }

  async putAkCounters(akName: string, c: { resetCount: number; restartCount: number }): Promise<void> {
    this.run(
      `INSERT INTO ak_counters (ak_name, reset_count, restart_count, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (ak_name) DO UPDATE SET reset_count = excluded.reset_count,
         restart_count = excluded.restart_count, updated_at = excluded.updated_at
       WHERE (excluded.reset_count, excluded.restart_count) > (ak_counters.reset_count, ak_counters.restart_count)`,
      akName,
      c.resetCount,
      c.restartCount,
      new Date().toISOString(),
    );
  }

  async hostAttestation(host: string): Promise<HostAttestationRecord | undefined> {
    const r = this.row('SELECT * FROM host_attestations WHERE host = ?', host);
    return r === undefined ? undefined : hostAttestationOf(r);
  }

  async putHostAttestation(h: HostAttestationRecord): Promise<void> {
    this.run(
      `INSERT INTO host_attestations (host, enrollment_version, status, quoted_at, reason, pcrs, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (host) DO UPDATE SET enrollment_version = excluded.enrollment_version,
         status = excluded.status, quoted_at = excluded.quoted_at, reason = excluded.reason,
         pcrs = excluded.pcrs, updated_at = excluded.updated_at`,
      h.host,
      h.enrollmentVersion,
      h.status,
      h.quotedAt,
      h.reason ?? null,
      JSON.stringify(h.pcrs),
      new Date().toISOString(),
    );
  }
}

function hostAttestationOf(r: Row): HostAttestationRecord {
  return {
    host: String(r.host),
    enrollmentVersion: Number(r.enrollment_version),
    status: r.status === 'trusted' ? 'trusted' : 'quarantined',
    quotedAt: Number(r.quoted_at),
    ...(r.reason === null || r.reason === undefined ? {} : { reason: String(r.reason) }),
    pcrs: JSON.parse(String(r.pcrs)) as Record<string, string>,
  };
}
