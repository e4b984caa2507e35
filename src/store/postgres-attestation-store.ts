import { GatehouseError } from '../common/errors.ts';
import { optional, type PgRow, PgTables } from './postgres-support.ts';
import type {
  AttestationRefusalRecord,
  AttestationSessionRecord,
  AttestationStore,
  HostAttestationRecord,
  ReferenceValueBundleRecord,
  TakenSession,
} from './store.ts';

function bundleOf(r: PgRow): ReferenceValueBundleRecord {
  return {
    version: Number(r.version),
    digest: String(r.digest),
    payload: String(r.payload),
    signature: String(r.signature),
    keyId: String(r.key_id),
    publishedAt: String(r.published_at),
  };
}

function refusalOf(r: PgRow): AttestationRefusalRecord {
  const jobId = optional(r.job_id);
  return {
    id: String(r.id),
    stage: String(r.stage) as AttestationRefusalRecord['stage'],
    ...(jobId === undefined ? {} : { jobId }),
    failedChecks: JSON.parse(String(r.failed_checks)) as AttestationRefusalRecord['failedChecks'],
    createdAt: String(r.created_at),
  };
}

/** Attestation tables of the PostgreSQL store: bundles, refusals, open challenges, AK counters. */
export class PostgresAttestationStore extends PgTables implements AttestationStore {
  async publishReferenceValues(r: ReferenceValueBundleRecord): Promise<void> {
    const conflict = `reference values version ${r.version} is not the next version (published concurrently?)`;
    // Check and insert in one statement; two publishers of the same version meet the primary key.
    const rows = await this.query(
      'cannot publish reference values',
      (sql) => sql`
        INSERT INTO reference_value_bundles (version, digest, payload, signature, key_id, published_at)
        SELECT ${r.version}, ${r.digest}, ${r.payload}, ${r.signature}, ${r.keyId}, ${r.publishedAt}
        WHERE ${r.version}::int = (SELECT COALESCE(MAX(version), 0) + 1 FROM reference_value_bundles)
        RETURNING version`,
      conflict,
    );
    if (rows.length !== 1) throw new GatehouseError('CONFLICT', conflict);
  }

  async latestReferenceValues(): Promise<ReferenceValueBundleRecord | undefined> {
    const [r] = await this.query(
      'cannot read reference values',
      (sql) => sql`SELECT * FROM reference_value_bundles ORDER BY version DESC LIMIT 1`,
    );
    return r === undefined ? undefined : bundleOf(r);
  }

  async getReferenceValues(version: number): Promise<ReferenceValueBundleRecord | undefined> {
    if (!Number.isSafeInteger(version)) return undefined;
    const [r] = await this.query(
      'cannot read reference values',
      (sql) => sql`SELECT * FROM reference_value_bundles WHERE version = ${version}`,
    );
    return r === undefined ? undefined : bundleOf(r);
  }

  async referenceValueHistory(): Promise<ReferenceValueBundleRecord[]> {
    const rows = await this.query(
      'cannot read reference values',
      (sql) => sql`SELECT * FROM reference_value_bundles ORDER BY version DESC`,
    );
    return rows.map(bundleOf);
  }

  async addRefusal(r: AttestationRefusalRecord): Promise<void> {
    await this.query(
      'cannot record an attestation refusal',
      (sql) => sql`
        INSERT INTO attestation_refusals (id, stage, job_id, failed_checks, created_at)
        VALUES (${r.id}, ${r.stage}, ${r.jobId ?? null}, ${JSON.stringify(r.failedChecks)}, ${r.createdAt})`,
    );
  }

  async listRefusals(options: { limit?: number; jobId?: string } = {}): Promise<AttestationRefusalRecord[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 10_000));
    const { jobId } = options;
    const rows = await this.query('cannot list attestation refusals', (sql) =>
      jobId === undefined
        ? sql`SELECT * FROM attestation_refusals ORDER BY created_at DESC, seq DESC LIMIT ${limit}`
        : sql`SELECT * FROM attestation_refusals WHERE job_id = ${jobId} ORDER BY created_at DESC, seq DESC LIMIT ${limit}`,
    );
    return rows.map(refusalOf);
  }

  async openSession(r: AttestationSessionRecord, maxOpen: number): Promise<void> {
    const forgetBefore = Date.now() - 60_000;
    await this.query('cannot keep an attestation session', async (sql) => {
      await sql`DELETE FROM attestation_sessions WHERE expires_at < ${forgetBefore}`;
      // Past the bound, the oldest unanswered challenges go first.
      await sql`
        DELETE FROM attestation_sessions WHERE id IN (
          SELECT id FROM attestation_sessions WHERE spent_at IS NULL
          ORDER BY expires_at DESC, id OFFSET ${Math.max(0, maxOpen - 1)})`;
      await sql`
        INSERT INTO attestation_sessions (id, job_id, state, expires_at, created_at)
        VALUES (${r.id}, ${r.jobId ?? null}, ${r.state}, ${r.expiresAt}, ${r.createdAt})`;
    });
  }

  async takeSession(id: string): Promise<TakenSession> {
    const now = new Date().toISOString();
    // One statement: of two instances handed the same answer, one spends the session.
    const [r] = await this.query(
      'cannot take an attestation session',
      (sql) => sql`
        UPDATE attestation_sessions SET spent_at = ${now} WHERE id = ${id} AND spent_at IS NULL RETURNING *`,
    );
    if (r !== undefined) {
      const jobId = optional(r.job_id);
      return {
        status: 'taken',
        session: {
          id: String(r.id),
          ...(jobId === undefined ? {} : { jobId }),
          state: String(r.state),
          expiresAt: Number(r.expires_at),
          createdAt: String(r.created_at),
        },
      };
    }
    const [spent] = await this.query(
      'cannot read an attestation session',
      (sql) => sql`SELECT 1 FROM attestation_sessions WHERE id = ${id}`,
    );
    return spent === undefined ? { status: 'unknown' } : { status: 'spent' };
  }

  async akCounters(akName: string): Promise<{ resetCount: number; restartCount: number } | undefined> {
    const [r] = await this.query(
      'cannot read AK counters',
      (sql) => sql`SELECT reset_count, restart_count FROM ak_counters WHERE ak_name = ${akName}`,
    );
    return r === undefined
      ? undefined
      : { resetCount: Number(r.reset_count), restartCount: Number(r.restart_count) };
  }

  async putAkCounters(akName: string, c: { resetCount: number; restartCount: number }): Promise<void> {
    const now = new Date().toISOString();
    await this.query(
      'cannot keep AK counters',
      (sql) => sql`
        INSERT INTO ak_counters (ak_name, reset_count, restart_count, updated_at)
        VALUES (${akName}, ${c.resetCount}, ${c.restartCount}, ${now})
        ON CONFLICT (ak_name) DO UPDATE SET reset_count = excluded.reset_count,
          restart_count = excluded.restart_count, updated_at = excluded.updated_at
        WHERE (excluded.reset_count, excluded.restart_count) > (ak_counters.reset_count, ak_counters.restart_count)`,
    );
  }

  async hostAttestation(host: string): Promise<HostAttestationRecord | undefined> {
    const [r] = await this.query(
      'cannot read the host attestation',
      (sql) => sql`SELECT * FROM host_attestations WHERE host = ${host}`,
    );
    return r === undefined
      ? undefined
      : {
          host: String(r.host),
          enrollmentVersion: Number(r.enrollment_version),
          status: r.status === 'trusted' ? 'trusted' : 'quarantined',
          quotedAt: Number(r.quoted_at),
          ...(r.reason === null || r.reason === undefined ? {} : { reason: String(r.reason) }),
          pcrs: JSON.parse(String(r.pcrs)) as Record<string, string>,
        };
  }

  async putHostAttestation(h: HostAttestationRecord): Promise<void> {
    const now = new Date().toISOString();
    const pcrs = JSON.stringify(h.pcrs);
    const reason = h.reason ?? null;
    await this.query(
      'cannot keep the host attestation',
      (sql) => sql`
        INSERT INTO host_attestations (host, enrollment_version, status, quoted_at, reason, pcrs, updated_at)
        VALUES (${h.host}, ${h.enrollmentVersion}, ${h.status}, ${h.quotedAt}, ${reason}, ${pcrs}, ${now})
        ON CONFLICT (host) DO UPDATE SET enrollment_version = excluded.enrollment_version,
          status = excluded.status, quoted_at = excluded.quoted_at, reason = excluded.reason,
          pcrs = excluded.pcrs, updated_at = excluded.updated_at`,
    );
  }
}
