/**
 * Persistence behind one interface. Every method is async so that a networked adapter
 * (PostgreSQL) fits the same contract as the embedded SQLite one; every adapter passes
 * `describeStoreContract`.
 */

export type JobState =
  | 'queued'
  | 'running'
  | 'submitted'
  | 'allowed'
  | 'denied'
  | 'quarantined'
  | 'failed'
  | 'cancelled';

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
  /** The enrolled runner host that claimed the job; a job is claimed once. */
  host?: string;
  /**
   * RFC 7638 thumbprint of the job key the first successful attestation bound (`cnf.jkt`): from
   * then on only that key speaks for the job.
   */
  runnerKey?: string;
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
  /**
   * Replace the mutable fields of an existing job; its `updatedAt` moves forward (never to a
   * value it had). With `expect`, only if the job is still in that state and was last changed at
   * that time: CONFLICT, writing nothing, when another writer (another instance) changed it since.
   * Throws NOT_FOUND.
   */
  update(
    id: string,
    change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result' | 'runnerKey'>>,
    options?: { expect?: Pick<JobRecord, 'state' | 'updatedAt'> },
  ): Promise<JobRecord>;
  /**
   * Claim an unclaimed job for a host, atomically. Throws NOT_FOUND, CONFLICT (another host
   * claimed it first, or it is no longer queued).
   */
  claim(id: string, host: string): Promise<JobRecord>;
  list(options?: { limit?: number; project?: string }): Promise<JobRecord[]>;
  /** Jobs in a state that is not final (queued, running, submitted), oldest change first. */
  listUnfinished(limit?: number): Promise<JobRecord[]>;
  countByState(): Promise<Record<string, number>>;
  /**
   * Keep a job's build log, once: it never changes after (its digest goes into the provenance).
   * Throws CONFLICT, writing nothing, when the job has one already.
   */
  putLog(log: BuildLogRecord): Promise<void>;
  /** A job's build log with its content. */
  getLog(jobId: string): Promise<BuildLogRecord | undefined>;
  /** A job's build log without its content: digest, size, whether it was cut. */
  logSummary(jobId: string): Promise<BuildLogSummary | undefined>;
}

/** What is known about a kept build log without reading it. */
export interface BuildLogSummary {
  jobId: string;
  /** SHA-256 hex of the content as kept. */
  sha256: string;
  size: number;
  /** The runner left output out (the content has a marker line where). */
  truncated: boolean;
  createdAt: string;
}

/** A job's build log as the control plane keeps it: masked and bounded bytes. */
export interface BuildLogRecord extends BuildLogSummary {
  content: Uint8Array;
}

export interface DecisionStore {
  /**
   * Store a decision and, for an allowed one, the SBOM kept with it for re-evaluation: in one
   * transaction, both or neither.
   * @throws GatehouseError CONFLICT when the decision exists, STORE_ERROR
   */
  create(decision: DecisionRecord, kept?: { artifactSbom?: ArtifactSbomRecord }): Promise<void>;
  get(id: string): Promise<DecisionRecord | undefined>;
  list(options?: { limit?: number; jobId?: string }): Promise<DecisionRecord[]>;
  countByOutcome(): Promise<Record<string, number>>;
}

/** An entry as the log hands it to the store. */
export interface NewLogEntryRecord {
  /** Canonical entry body. */
  body: Uint8Array;
  /** RFC 6962 leaf hash of `body`, computed by the log. */
  leafHash: Uint8Array;
  /** Seconds since the epoch when the log integrated the entry. */
  integratedTime: number;
}

/**
 * The hash of one perfect subtree of the log, the 2^level leaves from index·2^level, as the log
 * computed it. Level 0 is an entry's leaf hash; the store keeps the nodes above (level ≥ 1).
 */
export interface LogNodeRecord {
  level: number;
  index: number;
  hash: Uint8Array;
}

/**
 * Entries and tree nodes of the transparency log. The store computes no hashes: the log hands it
 * each entry with its leaf hash and the interior nodes the entries complete, and reads them back
 * by their coordinates. A node once stored never changes.
 */
export interface LogStore {
  /**
   * Append entries at indices start, start + 1, … together with the interior nodes (level ≥ 1) they
   * complete, atomically; returns the indices. A node already stored at the same coordinates is kept.
   * Throws CONFLICT, writing nothing, unless `start` is the current size (another writer appended first).
   */
  append(
    start: number,
    entries: readonly NewLogEntryRecord[],
    nodes: readonly LogNodeRecord[],
  ): Promise<number[]>;
  size(): Promise<number>;
  get(index: number): Promise<LogEntryRecord | undefined>;
  /** Leaf hashes for indices [start, end), in order. */
  leafHashes(start: number, end: number): Promise<Uint8Array[]>;
  /**
   * Hashes of perfect subtrees by coordinates (level 0: the entries' leaf hashes; above: the
   * stored nodes), in the order asked. Proofs read O(log n) of these instead of every leaf.
   * Throws NOT_FOUND for a subtree that is not stored.
   */
  subtreeHashes(refs: readonly { level: number; index: number }[]): Promise<Uint8Array[]>;
  /**
   * Keep interior nodes outside an append (the log filling in those of a log written before nodes
   * were stored), atomically. Nodes already stored at the same coordinates are kept.
   */
  addNodes(nodes: readonly LogNodeRecord[]): Promise<void>;
  /** Number of interior nodes stored. */
  nodeCount(): Promise<number>;
  /**
   * Run `fn` as the log's one sequencer: while it runs no other caller of `sequence`, in this
   * process or (PostgreSQL) in any instance sharing the database, appends, so that the size it
   * reads is the size it appends at. PostgreSQL holds an advisory lock in a transaction that
   * `fn`'s reads and writes join; a holder that stalls loses the lock with its session, and its
   * uncommitted append with it (fencing). SQLite serialises the callers of this process; a second
   * process writing the same file is caught by `append`'s size check.
   */
  sequence<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * The certificate transparency log: one shard per CT key generation (each its own Merkle tree,
 * kept like the transparency log's), and the issuer certificates its entries name.
 */
export interface CtLogStore {
  /** The entries and tree of the shard named `shard` (the hex log ID of its key). */
  shard(shard: string): LogStore;
  /** Keep an issuer certificate under its SHA-256 fingerprint (hex); one already kept stays. */
  addIssuer(fingerprint: string, der: Uint8Array): Promise<void>;
  issuer(fingerprint: string): Promise<Uint8Array | undefined>;
}

/** One witness cosignature of the transparency log's checkpoint of `treeSize` entries. */
export interface CosignatureRecord {
  treeSize: number;
  rootHash: Uint8Array;
  /** The witness key name and 4-byte key ID of the signature line. */
  keyName: string;
  keyId: Uint8Array;
  /** The cosignature's own timestamp, seconds since the epoch. */
  timestamp: number;
  /** The whole note signature line, without its newline. */
  line: string;
}

/** Witness cosignatures the log obtained, kept beside the checkpoints they cosign. */
export interface CosignatureStore {
  /** Keep a verified cosignature; one for the same tree size and key is kept as it was. */
  add(record: CosignatureRecord): Promise<void>;
  /** The cosignatures of the tree of `treeSize` entries. */
  forTreeSize(treeSize: number): Promise<CosignatureRecord[]>;
  /** The largest tree size each witness key (`name` + hex key ID) cosigned. */
  latestByKey(): Promise<Map<string, number>>;
}

/** What a witness remembers of a log: the latest checkpoint it cosigned. */
export interface WitnessStateRecord {
  origin: string;
  treeSize: number;
  rootHash: Uint8Array;
  /** The checkpoint as the witness verified it, with its own cosignature added. */
  checkpoint: string;
  updatedAt: string;
}

/** A witness's state, one record per log origin, moved forward atomically. */
export interface WitnessStore {
  get(origin: string): Promise<WitnessStateRecord | undefined>;
  /**
   * Replace the record of `next.origin` if the size it holds is `oldSize` (0 when there is none),
   * atomically. Throws CONFLICT, writing nothing, otherwise.
   */
  advance(oldSize: number, next: WitnessStateRecord): Promise<void>;
}

export interface VulnStore {
  /** Insert or replace records atomically, keyed by id. */
  upsert(records: VulnRecord[]): Promise<void>;
  get(id: string): Promise<VulnRecord | undefined>;
  /** Records that name the package, withdrawn ones excluded. */
  findByPackage(ecosystem: string, name: string): Promise<VulnRecord[]>;
  /** id → modified, for incremental import. */
  modifiedIndex(): Promise<Map<string, string>>;
  /** Every record, withdrawn ones included, `packages` left empty (for loading the database into memory). */
  all(): Promise<VulnRecord[]>;
  count(): Promise<number>;
  /** The newest `modified` time of any record (RFC 3339), undefined when there is none. */
  newestModified(): Promise<string | undefined>;
  /**
   * A number that changes whenever any record is written, by this or another process: in-memory
   * indexes reload when it differs from the one they were loaded at.
   */
  generation(): Promise<number>;
}

export interface TokenStore {
  /** Mark a token id revoked until `expiresAt` (after which it is dead anyway). */
  revoke(jti: string, expiresAt: number): Promise<void>;
  isRevoked(jti: string): Promise<boolean>;
  /**
   * Record a single-use id (a submission proof's jti) until `expiresAt`: true the first time,
   * false when it was already recorded, by this or any other instance. One atomic statement, so
   * two instances handed the same proof at once cannot both accept it.
   */
  useOnce(jti: string, expiresAt: number): Promise<boolean>;
}

/** A protected ref pattern of a repository and what it demands (rule: SourceRequirements JSON). */
export interface SourceProtectionRecord {
  repository: string;
  /** Full ref name or pattern: `refs/heads/main`, `refs/tags/v*`. */
  ref: string;
  rule: {
    minApprovals: number;
    staleApprovals: boolean;
    forbidSelfApproval: boolean;
    signedCommits: boolean;
    buildConfigUnchanged: boolean;
    /** Projects that must be built from this repository (and nothing else). */
    projects?: string[];
  };
  createdAt: string;
}

/** A reviewer's signed approval of one commit. */
export interface SourceReviewRecord {
  /** sha256 hex of the record's canonical JSON. */
  id: string;
  repository: string;
  commit: string;
  reviewer: string;
  /** The canonical JSON of the review record. */
  record: string;
  /** The reviewer's armoured SSH signature over `record`. */
  signature: string;
  createdAt: string;
}

/** A key trusted to sign commits and reviews. */
export interface SourceSignerRecord {
  /** SSH: `SHA256:<base64>` key fingerprint; GPG: the primary key's fingerprint, upper-case hex. */
  id: string;
  /** Who the key belongs to: an email address (the SSH allowed-signers principal). */
  principal: string;
  format: 'ssh' | 'gpg';
  /** SSH: `<type> <base64>` public key line; GPG: the ASCII-armoured public key. */
  publicKey: string;
  /** Limited to this repository URI; absent: trusted for every repository. */
  repository?: string;
  createdAt: string;
}

/** The last head gatehouse accepted for a protected ref. */
export interface SourceRefHeadRecord {
  repository: string;
  ref: string;
  head: string;
  seenAt: string;
  /** Set when a rewrite was seen: the head it was rewritten to (the accepted head stays). */
  rewrittenTo?: string;
  rewrittenAt?: string;
}

export interface SourceStore {
  /** Insert or replace the protection of one ref pattern. */
  protect(record: SourceProtectionRecord): Promise<void>;
  /** Remove a protection; false when there was none. */
  unprotect(repository: string, ref: string): Promise<boolean>;
  /** Protections of one repository, or of all. */
  protections(repository?: string): Promise<SourceProtectionRecord[]>;
  /** Keep a review. Throws CONFLICT when the same record is already kept. */
  addReview(record: SourceReviewRecord): Promise<void>;
  reviews(repository: string): Promise<SourceReviewRecord[]>;
  /** Trust a key (for one repository or all). Throws CONFLICT when it is already trusted there. */
  addSigner(record: SourceSignerRecord): Promise<void>;
  /** Stop trusting a key (in one scope, or everywhere); false when it was not trusted. */
  removeSigner(id: string, repository?: string): Promise<boolean>;
  /** Keys trusted for a repository (its own and the global ones), or all keys. */
  signers(repository?: string): Promise<SourceSignerRecord[]>;
  refHead(repository: string, ref: string): Promise<SourceRefHeadRecord | undefined>;
  /** Insert or replace the accepted head of a ref. */
  setRefHead(record: SourceRefHeadRecord): Promise<void>;
}

/** One published, signed version of a central policy. */
export interface PolicyVersionRecord {
  name: string;
  /** 1, 2, 3, … per policy name. */
  version: number;
  /** sha256 hex of the canonical JSON of the parsed policy: what decisions record. */
  digest: string;
  /** The policy document as published (YAML or JSON). */
  text: string;
  /** Base64 signature by a security key over the policy signing payload. */
  signature: string;
  /** sha256 hex of the signing key's SPKI. */
  keyId: string;
  publishedAt: string;
}

/** A triage act on a quarantined or denied artifact: released or rejected, with a reason. */
export interface TriageRecord {
  id: string;
  decisionId: string;
  project: string;
  action: 'release' | 'reject';
  reason: string;
  /** Key id of the security key that signed the act. */
  actor: string;
  createdAt: string;
  logIndex: number;
}

/** A promoted artifact found affected by a later vulnerability database change. */
export interface ReevaluationRecord {
  id: string;
  decisionId: string;
  project: string;
  outcome: 'allow' | 'deny' | 'quarantine';
  policyDigest: string;
  reasons: { rule: string; message: string; [k: string]: unknown }[];
  /** Whether the policy asked for the artifact to be revoked. */
  revoked: boolean;
  createdAt: string;
  /** Milliseconds from the end of the import to this detection. */
  detectionMs: number;
}

export interface PolicyStore {
  /** Publish the next version; throws CONFLICT if `version` is not the next for the name. */
  publish(record: PolicyVersionRecord): Promise<void>;
  latest(name: string): Promise<PolicyVersionRecord | undefined>;
  get(name: string, version: number): Promise<PolicyVersionRecord | undefined>;
  /** Every version of a policy, newest first. */
  history(name: string): Promise<PolicyVersionRecord[]>;
  /** Names of all published policies. */
  names(): Promise<string[]>;
  /** Hold a project to a named policy (set by the security role, never by the project). */
  bindProject(project: string, policyName: string): Promise<void>;
  /** The policy name a project is held to, if one was set. */
  projectPolicy(project: string): Promise<string | undefined>;
  addTriage(record: TriageRecord): Promise<void>;
  triageOf(decisionId: string): Promise<TriageRecord | undefined>;
  listTriage(options?: { limit?: number }): Promise<TriageRecord[]>;
  addReevaluation(record: ReevaluationRecord): Promise<void>;
  listReevaluations(options?: { limit?: number }): Promise<ReevaluationRecord[]>;
  /** Keep the components of a promoted artifact (JSON of its SBOM components) for re-evaluation. */
  keepArtifactSbom(record: ArtifactSbomRecord): Promise<void>;
  /** Keep a build environment's SBOM (idempotent: a digest names one document). */
  putEnvironmentSbom(record: EnvironmentSbomRecord): Promise<void>;
  environmentSbom(digest: string): Promise<EnvironmentSbomRecord | undefined>;
  artifactSboms(): Promise<ArtifactSbomRecord[]>;
  /** Keep a VEX document (replacing one with the same id). */
  addVex(record: { id: string; json: string; createdAt: string }): Promise<void>;
  vexDocuments(): Promise<{ id: string; json: string; createdAt: string }[]>;
  /** Keep the verified build facts of a refused artifact, so a release can sign them (migration 9). */
  holdBuild(record: HeldBuildRecord): Promise<void>;
  heldBuild(decisionId: string): Promise<HeldBuildRecord | undefined>;
  /** Record a revocation; throws CONFLICT when the digest is already revoked (migration 9). */
  addRevocation(record: RevocationRecord): Promise<void>;
  /** Every revocation, oldest first. */
  revocations(): Promise<RevocationRecord[]>;
}

/** What the gate verified about a refused build (JSON), kept so the security role can release it. */
export interface HeldBuildRecord {
  decisionId: string;
  project: string;
  /** JSON of the gate's HeldBuild (src/gate/gate.ts). */
  facts: string;
  createdAt: string;
}

/** A revoked artifact digest, with who revoked it, why, and the log entry of the act. */
export interface RevocationRecord {
  /** `sha256:<hex>`. */
  digest: string;
  reason: string;
  /** Key id of the security key that signed the act, or `re-evaluation`. */
  actor: string;
  revokedAt: string;
  logIndex: number;
}

/** The components of a promoted artifact, kept for re-evaluation. */
export interface ArtifactSbomRecord {
  decisionId: string;
  project: string;
  /** JSON array of SBOM components. */
  components: string;
  /**
   * `sha256:<hex>` of the build environment's SBOM (an {@link EnvironmentSbomRecord}) whose
   * packages are judged with `components` (migration 13); absent when they are in `components`.
   */
  environment?: string;
  subjects: { name: string; sha256: string }[];
  createdAt: string;
}

/**
 * The SBOM of a build environment (the runner image's packages), kept once by its digest and
 * referenced by every job that ran in it (migration 13).
 */
export interface EnvironmentSbomRecord {
  /** `sha256:<hex>` of `document`. */
  digest: string;
  /** The CycloneDX JSON text, as its digest covers it. */
  document: string;
  createdAt: string;
}

/** One published, signed version of the attestation reference values (migration 8). */
export interface ReferenceValueBundleRecord {
  /** 1, 2, 3, …: the signed payload names its own version. */
  version: number;
  /** sha256 hex of `payload`: what tokens name as their appraisal policy. */
  digest: string;
  /** Canonical JSON of `{ version, values }`, exactly the bytes the security key signed. */
  payload: string;
  /** Base64 signature by a security key over the payload's DSSE pre-authentication encoding. */
  signature: string;
  /** sha256 hex of the signing key's SPKI. */
  keyId: string;
  publishedAt: string;
}

/** An attestation the authority refused, with every failed check (audit; migration 8). */
export interface AttestationRefusalRecord {
  id: string;
  /** Which call was refused: `challenge`, `evidence` (TPM path) or `software`. */
  stage: 'challenge' | 'evidence' | 'software';
  /** The job the runner attested for, when known. */
  jobId?: string;
  failedChecks: { check: string; message: string }[];
  createdAt: string;
}

/**
 * A challenge the attestation authority issued on the TPM path, answered once (migration 13). It
 * lives in the store, so that the instance that checks the answer need not be the one that issued
 * the challenge.
 */
export interface AttestationSessionRecord {
  id: string;
  /** The job the runner attests for, when it named one. */
  jobId?: string;
  /**
   * JSON of what the answer is checked against (EK certificate, AK, runner key, nonce, and the
   * SHA-256 of the credential's secret: never the secret itself).
   */
  state: string;
  /** Milliseconds since the epoch after which an answer is refused. */
  expiresAt: number;
  createdAt: string;
}

/** What taking a session found: it, the first time; `spent` for a replay; `unknown` otherwise. */
export type TakenSession =
  | { status: 'taken'; session: AttestationSessionRecord }
  | { status: 'spent' }
  | { status: 'unknown' };

/** Attestation authority state: reference-value bundles, the refusal audit trail, open challenges. */
export interface AttestationStore {
  /** Publish the next bundle; throws CONFLICT if `version` is not the next one. */
  publishReferenceValues(record: ReferenceValueBundleRecord): Promise<void>;
  latestReferenceValues(): Promise<ReferenceValueBundleRecord | undefined>;
  getReferenceValues(version: number): Promise<ReferenceValueBundleRecord | undefined>;
  /** Every bundle, newest first. */
  referenceValueHistory(): Promise<ReferenceValueBundleRecord[]>;
  addRefusal(record: AttestationRefusalRecord): Promise<void>;
  /** Refusals, newest first. */
  listRefusals(options?: { limit?: number; jobId?: string }): Promise<AttestationRefusalRecord[]>;
  /**
   * Keep an issued challenge. Sessions expired over a minute ago are forgotten; past `maxOpen`
   * unanswered ones, the oldest are dropped.
   */
  openSession(record: AttestationSessionRecord, maxOpen: number): Promise<void>;
  /**
   * Spend a session, atomically: the first caller, in any instance, gets it; every later one
   * learns that it was spent (a replay), until it is forgotten.
   */
  takeSession(id: string): Promise<TakenSession>;
  /** The highest TPM reset and restart counts accepted for an AK (hex name). */
  akCounters(akName: string): Promise<{ resetCount: number; restartCount: number } | undefined>;
  /** Raise the counts kept for an AK; counts lower than those kept leave them as they are. */
  putAkCounters(akName: string, counters: { resetCount: number; restartCount: number }): Promise<void>;
  /** The last appraisal of a runner host's own TPM quote (migration 18). */
  hostAttestation(host: string): Promise<HostAttestationRecord | undefined>;
  /** Keep a host quote's appraisal, replacing the one before. */
  putHostAttestation(record: HostAttestationRecord): Promise<void>;
}

/** The last appraisal of a runner host's boot-state quote. */
export interface HostAttestationRecord {
  host: string;
  /** The enrollment version the quote was appraised against: a newer one (a clear) supersedes it. */
  enrollmentVersion: number;
  status: 'trusted' | 'quarantined';
  /** Milliseconds since the epoch. */
  quotedAt: number;
  reason?: string;
  /** Quoted PCR values by index (hex). */
  pcrs: Record<string, string>;
}

/**
 * One version of a security-role act (a project registration, a host enrollment, an EK CA): its
 * content as signed, and the signature. Versions of one (kind, name) are 1, 2, 3, … with no gap.
 */
export interface SecurityActRecord {
  kind: string;
  name: string;
  version: number;
  /** Canonical JSON of the act's content. */
  content: string;
  signature: string;
  keyId: string;
  createdAt: string;
}

/** The ledger of the security role's versioned acts. */
export interface SecurityActStore {
  /** Record a version; throws CONFLICT, writing nothing, unless it is exactly the next one. */
  append(record: SecurityActRecord): Promise<void>;
  latest(kind: string, name: string): Promise<SecurityActRecord | undefined>;
  /** The latest version of every name of a kind, by name. */
  listLatest(kind: string): Promise<SecurityActRecord[]>;
  /** Every version of one name, newest first. */
  history(kind: string, name: string): Promise<SecurityActRecord[]>;
}

/** Where one alert stands with one webhook endpoint. */
export type AlertDeliveryState = 'pending' | 'delivered' | 'dead';

/** One alert (a CloudEvent) on its way to one webhook endpoint: the outbox and dead-letter record. */
export interface AlertDeliveryRecord {
  id: string;
  /** The CloudEvent's id: the same for every endpoint, so that receivers can drop repeats. */
  eventId: string;
  /** The configured endpoint's name. */
  endpoint: string;
  /** The CloudEvent's type, e.g. `dev.gatehouse.decision.denied`. */
  type: string;
  /** The CloudEvent, structured-mode JSON: the exact body sent. */
  event: string;
  state: AlertDeliveryState;
  attempts: number;
  /** When the next attempt is due (ISO 8601); a claimed delivery's lease end. */
  nextAttemptAt: string;
  /** Why the last attempt failed (status or network error), never a secret. */
  lastError?: string;
  createdAt: string;
  updatedAt: string;
}

/** The alerts outbox: deliveries waiting, done, and dead letters to list and replay. */
export interface AlertStore {
  /** Record new deliveries, pending. */
  enqueue(records: readonly AlertDeliveryRecord[]): Promise<void>;
  /**
   * Take up to `limit` pending deliveries due at `now`, leasing each until `leaseUntil`, so that
   * two dispatchers (instances) never send the same attempt twice.
   */
  claimDue(now: string, leaseUntil: string, limit: number): Promise<AlertDeliveryRecord[]>;
  /** Record the outcome of an attempt. */
  settle(
    id: string,
    change: Pick<AlertDeliveryRecord, 'state' | 'attempts' | 'nextAttemptAt' | 'updatedAt'> & {
      lastError?: string;
    },
  ): Promise<void>;
  get(id: string): Promise<AlertDeliveryRecord | undefined>;
  /** Newest first; only those in `state` when given. */
  list(options: { state?: AlertDeliveryState; limit: number }): Promise<AlertDeliveryRecord[]>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Reference-value bundles and attestation refusals. */
  readonly attestation: AttestationStore;
  /** Central policies (signed versions, project bindings), triage and re-evaluation records. */
  readonly policies: PolicyStore;
  /** Source origin: protections, reviews, trusted signers, accepted ref heads. */
  readonly source: SourceStore;
  readonly jobs: JobStore;
  readonly decisions: DecisionStore;
  readonly log: LogStore;
  /** The certificate transparency log of the internal CA. */
  readonly ct: CtLogStore;
  /** Witness cosignatures of the transparency log's checkpoints. */
  readonly cosignatures: CosignatureStore;
  /** This home's state as a witness of other logs. */
  readonly witness: WitnessStore;
  readonly vulns: VulnStore;
  readonly tokens: TokenStore;
  /** The security role's versioned acts: project registrations, host enrollments, EK CAs. */
  readonly acts: SecurityActStore;
  /** Webhook alerts: the outbox and its dead letters. */
  readonly alerts: AlertStore;
  /** Run `fn` so that all of its writes land together or not at all. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Applied schema version. */
  schemaVersion(): Promise<number>;
  /** Problems a quick integrity check of the database finds; empty when it is sound. */
  integrityCheck(): Promise<string[]>;
  /** Copy the whole store, consistently, to `path` while it stays in use. */
  backupTo(path: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * The time a job's change is recorded at: now, or just after the previous change when the clock
 * has not moved past it, so that `updatedAt` names one version of the job.
 */
export function nextUpdatedAt(previous: string): string {
  const now = Date.now();
  const last = Date.parse(previous);
  return new Date(Number.isFinite(last) && last >= now ? last + 1 : now).toISOString();
}
