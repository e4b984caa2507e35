import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import type { Row } from './sqlite-support.ts';
import type { AttestationRefusalRecord, AttestationStore, ReferenceValueBundleRecord } from './store.ts';

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
export class SqliteAttestationStore implements AttestationStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async publishReferenceValues(r: ReferenceValueBundleRecord): Promise<void> {
    // Check and insert in one statement so that two publishers cannot both take the next version.
    const res = this.#db
      .prepare(
        `INSERT INTO reference_value_bundles (version, digest, payload, signature, key_id, published_at)
         SELECT ?, ?, ?, ?, ?, ? WHERE ? = (SELECT COALESCE(MAX(version), 0) + 1 FROM reference_value_bundles)`,
      )
      .run(r.version, r.digest, r.payload, r.signature, r.keyId, r.publishedAt, r.version);
    if (Number(res.changes) !== 1)
      throw new GatehouseError(
        'CONFLICT',
        `reference values version ${r.version} is not the next version (published concurrently?)`,
      );
  }

  async latestReferenceValues(): Promise<ReferenceValueBundleRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM reference_value_bundles ORDER BY version DESC LIMIT 1').get() as
      | Row
      | undefined;
    return r === undefined ? undefined : bundleOf(r);
  }

  async getReferenceValues(version: number): Promise<ReferenceValueBundleRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM reference_value_bundles WHERE version = ?').get(version) as
      | Row
      | undefined;
    return r === undefined ? undefined : bundleOf(r);
  }

  async referenceValueHistory(): Promise<ReferenceValueBundleRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM reference_value_bundles ORDER BY version DESC')
      .all() as Row[];
    return rows.map(bundleOf);
  }

  async addRefusal(r: AttestationRefusalRecord): Promise<void> {
    this.#db
      .prepare(
        'INSERT INTO attestation_refusals (id, stage, job_id, failed_checks, created_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(r.id, r.stage, r.jobId ?? null, JSON.stringify(r.failedChecks), r.createdAt);
  }

  async listRefusals(options: { limit?: number; jobId?: string } = {}): Promise<AttestationRefusalRecord[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 10_000));
    const rows = (
      options.jobId === undefined
        ? this.#db
            .prepare('SELECT * FROM attestation_refusals ORDER BY created_at DESC, rowid DESC LIMIT ?')
            .all(limit)
        : this.#db
            .prepare(
              'SELECT * FROM attestation_refusals WHERE job_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?',
            )
            .all(options.jobId, limit)
    ) as Row[];
    return rows.map(refusalOf);
  }
}
