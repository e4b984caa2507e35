/**
 * Persistence behind one interface. Every method is async so that a networked adapter
 * (PostgreSQL) fits the same contract as the embedded SQLite one; every adapter passes
 * `describeStoreContract`.
 */

export type JobState = 'queued' | 'running' | 'submitted' | 'allowed' | 'denied' | 'quarantined' | 'failed';

/** One step of a job's lifecycle, with its timing. */
export interface JobStep {
  name: string;
  startedAt: string;
  durationMs: number;
  ok: boolean;
  detail?: string;
}

export interface JobRecord {
  id: string;
  project: string;
  state: JobState;
  /** Base64 of the 32 random bytes the runner must bind its evidence to. */
  nonce: string;
  createdAt: string;
  updatedAt: string;
  steps: JobStep[];
  /** Outcome details once the job is decided or failed. */
  result?: Record<string, unknown>;
}

export type DecisionOutcome = 'allow' | 'deny' | 'quarantine';

export interface DecisionRecord {
  id: string;
  jobId: string;
  project: string;
  outcome: DecisionOutcome;
  /** sha256 hex of the canonical policy document that made the decision. */
  policyDigest: string;
  /** Subjects the decision is about: name and sha256 hex. */
  subjects: { name: string; sha256: string }[];
  reasons: { rule: string; message: string; [k: string]: unknown }[];
  createdAt: string;
  /** Index of the decision's entry in the transparency log. */
  logIndex: number;
}

export interface LogEntryRecord {
  index: number;
  /** Canonical entry body: the bytes the Merkle leaf hashes. */
  body: Uint8Array;
  /** RFC 6962 leaf hash of `body`, computed by the log when it appended the entry. */
  leafHash: Uint8Array;
  /** Seconds since the epoch when the log integrated the entry. */
  integratedTime: number;
}

export interface VulnRecord {
  id: string;
  modified: string;
  withdrawn: string | null;
  aliases: string[];
  /** The whole OSV record as imported. */
  json: string;
  /** (ecosystem, package name) pairs the record affects, for lookup. Names normalised per ecosystem. */
  packages: { ecosystem: string; name: string }[];
}

export interface JobStore {
  create(job: JobRecord): Promise<void>;
  get(id: string): Promise<JobRecord | undefined>;
  /** Replace the mutable fields of an existing job. Throws NOT_FOUND. */
  update(id: string, change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result'>>): Promise<JobRecord>;
  list(options?: { limit?: number; project?: string }): Promise<JobRecord[]>;
  countByState(): Promise<Record<string, number>>;
}

export interface DecisionStore {
  create(decision: DecisionRecord): Promise<void>;
  get(id: string): Promise<DecisionRecord | undefined>;
  list(options?: { limit?: number; jobId?: string }): Promise<DecisionRecord[]>;
  countByOutcome(): Promise<Record<string, number>>;
}

export interface LogStore {
  /** Append entries atomically; returns their indices, consecutive from the current size. */
  append(entries: { body: Uint8Array; leafHash: Uint8Array; integratedTime: number }[]): Promise<number[]>;
  size(): Promise<number>;
  get(index: number): Promise<LogEntryRecord | undefined>;
  /** Leaf hashes for indices [start, end), in order. */
  leafHashes(start: number, end: number): Promise<Uint8Array[]>;
}

export interface VulnStore {
  /** Insert or replace records atomically, keyed by id. */
  upsert(records: VulnRecord[]): Promise<void>;
  get(id: string): Promise<VulnRecord | undefined>;
  /** Records that name the package, withdrawn ones excluded. */
  findByPackage(ecosystem: string, name: string): Promise<VulnRecord[]>;
  /** id → modified, for incremental import. */
  modifiedIndex(): Promise<Map<string, string>>;
  count(): Promise<number>;
}

export interface TokenStore {
  /** Mark a token id revoked until `expiresAt` (after which it is dead anyway). */
  revoke(jti: string, expiresAt: number): Promise<void>;
  isRevoked(jti: string): Promise<boolean>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly jobs: JobStore;
  readonly decisions: DecisionStore;
  readonly log: LogStore;
  readonly vulns: VulnStore;
  readonly tokens: TokenStore;
  /** Run `fn` so that all of its writes land together or not at all. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Applied schema version. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
