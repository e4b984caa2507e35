import { createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { agentFiles, isolationProfile } from '../agent/agent.ts';
import { type Attester, SoftwareAttester, VtpmAttester } from '../agent/attester.ts';
import type { RunnerHost } from '../agent/credentials.ts';
import { launchMeasurements } from '../agent/launcher.ts';
import type { WebhookDispatcher } from '../alerts/webhook-dispatcher.ts';
import { AttestationAuthority, type ReferenceValues } from '../attestation/authority.ts';
import { CiTokenVerifier } from '../attestation/ci-token.ts';
import { PlatformEvidenceAppraiser } from '../attestation/evidence/platform-evidence.ts';
import { platformAnchorsLoader } from '../attestation/evidence/trust-anchors.ts';
import type { HostAttestation } from '../attestation/host-attestation.ts';
import { HostRegistry } from '../attestation/hosts.ts';
import { type MeasurementEvent, measureBaseline } from '../attestation/measurement.ts';
import { parseReferenceValues, ReferenceValueService } from '../attestation/reference-values.ts';
import { attestationPaths, initAttestationHome, trustEkCaSigned } from '../attestation/trust-store.ts';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { EmbeddedControlPlane } from '../control-plane/embedded-control-plane.ts';
import { Metrics } from '../control-plane/metrics.ts';
import { JobPipeline } from '../control-plane/pipeline.ts';
import { Reconciler } from '../control-plane/reconcile.ts';
import { Gate } from '../gate/gate.ts';
import { OutputStaging } from '../gate/staging.ts';
import { Orchestrator } from '../orchestrator/orchestrator.ts';
import { DEFAULT_POLICY_NAME, PolicyService } from '../policy/policy-service.ts';
import type { ArtifactRegistry } from '../registry/registry.ts';
import { registryFromConfig } from '../registry/registry-config.ts';
import { runnerFromConfig } from '../runner/from-config.ts';
import { MAX_BUILD_TIMEOUT_SECONDS, parseProjectConfig } from '../runner/project-config.ts';
import type { IsolationProfile, Runner } from '../runner/runner.ts';
import { resolveArtifactLimits } from '../sbom/artifact/limits.ts';
import { homeKeyProtection, initHomeKeys, openHomeKeys, rotateHomeKey } from '../signing/home-keys.ts';
import { signRevocationList } from '../signing/revocation-list.ts';
import type { TimestampAuthority } from '../signing/rfc3161.ts';
import { buildTrustedRoot } from '../signing/trust-root.ts';
import { sourceVerifier } from '../source/wiring.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { HostAttestationRecord, Store } from '../store/store.ts';
import { parseVkey } from '../tlog/cosignature.ts';
import { CtLog } from '../tlog/ct-log.ts';
import { decisionEntryBody, TransparencyLog } from '../tlog/transparency-log.ts';
import { LogWitnessing } from '../tlog/witness-client.ts';
import { VtpmPool } from '../tpm/swtpm.ts';
import { GateRelease } from '../triage/release.ts';
import { type ReevaluationResult, TriageService } from '../triage/triage-service.ts';
import { alertDispatcher } from './alerts-wiring.ts';
import { type BackupManifest, backupHome } from './backup.ts';
import { type Config, defaultConfig, loadConfig, type StoreConfig } from './config.ts';
import { DEFAULT_POLICY } from './default-policy.ts';
import {
  hostAttestationOf,
  hostChainOf,
  hostVtpmIssuer,
  hostVtpmStateSealer,
  openHostTpm,
  trustManufacturerRoot,
} from './host-tpm-home.ts';
import { checkDatabaseFile, LogAnchor, readLogAnchor } from './log-anchor.ts';
import { currentRevocations, mirrorRevocations } from './revocations-file.ts';
import { initRunnerHost, loadRunnerHost, registerExampleProjects } from './runner-host.ts';
import {
  initSecurityRole,
  loadSecuritySigner,
  securityKeyPath,
  trustedSecurityKeys,
} from './security-role.ts';

/** Where everything of one gatehouse installation lives. */
export interface HomePaths {
  root: string;
  config: string;
  keys: string;
  ca: string;
  logKey: string;
  attestationKey: string;
  apiToken: string;
  referenceValues: string;
  /** The log's identity and last checkpoint, beside the database (src/home/log-anchor.ts). */
  logAnchor: string;
}

/** `--home`, else $GATEHOUSE_HOME, else ~/.local/share/gatehouse. */
export function resolveHome(flag: string | undefined): string {
  const env = process.env.GATEHOUSE_HOME;
  return resolve(
    flag ?? (env !== undefined && env !== '' ? env : join(homedir(), '.local', 'share', 'gatehouse')),
  );
}

export function homePaths(root: string): HomePaths {
  const keys = join(root, 'keys');
  return {
    root,
    config: join(root, 'config.json'),
    keys,
    ca: join(keys, 'ca'),
    logKey: join(keys, 'log.key.pem'),
    attestationKey: join(keys, 'attestation.key.pem'),
    apiToken: join(keys, 'api-token'),
    referenceValues: join(root, 'reference-values.json'),
    logAnchor: join(root, 'log-anchor.json'),
  };
}

/**
 * What this host measures for a job now: the baseline events (agent, isolation profile, toolchain)
 * and the isolation profile they cover, exactly as the configured runner gives it to a job.
 */
export async function measureHostBaseline(
  config: Config,
  root: string,
): Promise<{ events: readonly MeasurementEvent[]; profile: IsolationProfile }> {
  const probe = parseProjectConfig(
    'project: reference\nbuild:\n  command: ["true"]\noutputs: [out]\n',
    'reference',
  );
  // Exactly the profile the configured runner gives a job: limits, seccomp, verified image.
  const profile = isolationProfile(await runnerFromConfig(config.runner, root).profileFor(probe));
  const baseline = await measureBaseline({
    sandboxProfile: profile,
    toolchain: [...config.runner.toolchain],
    agentFiles: await agentFiles(),
    jobId: 'reference',
    nonce: '',
  });
  return { events: baseline.events, profile };
}

/**
 * The reference values the attestation authority appraises runners against, measured from this
 * installation: its agent files, its sandbox isolation profile and the configured toolchain.
 */
export async function measureReferenceValues(config: Config, root: string): Promise<ReferenceValues> {
  const { events } = await measureHostBaseline(config, root);
  const toolchain: Record<string, string[]> = {};
  let agent = '';
  let sandbox = '';
  for (const e of events) {
    if (e.type === 'agent') agent = e.digest;
    else if (e.type === 'sandbox-profile') sandbox = e.digest;
    else if (e.type === 'toolchain') toolchain[e.name] = [e.digest];
  }
  return { agent: [agent], sandboxProfile: [sandbox], toolchain };
}

async function writeNew(path: string, content: string, mode: number): Promise<boolean> {
  if (existsSync(path)) return false;
  await writeFile(path, content, { mode, flag: 'wx' });
  return true;
}

/**
 * Create the home, or complete a partly created one: config, policy, keys, CA, database,
 * reference values. Never replaces anything that exists (idempotent).
 * @returns the names of what it created
 */
export async function initHome(
  root: string,
  options: { updateReferenceValues?: boolean; examples?: boolean; newLog?: boolean } = {},
): Promise<string[]> {
  const p = homePaths(root);
  const created: string[] = [];
  await mkdir(root, { recursive: true, mode: 0o700 });
  await mkdir(p.ca, { recursive: true, mode: 0o700 });
  await chmod(p.keys, 0o700);
  if (await writeNew(p.config, `${JSON.stringify(defaultConfig(), null, 2)}\n`, 0o600))
    created.push('config.json');
  const config = loadConfig(p.config);
  if (await writeNew(join(root, config.policy), DEFAULT_POLICY, 0o600)) created.push(config.policy);
  // CA, log, attestation and TSA keys, sealed or in PKCS#11 as config.keys says (signing issue 7).
  created.push(...(await initHomeKeys(root, p.keys, config.keys)));
  if (await writeNew(p.apiToken, `${randomBytes(32).toString('hex')}\n`, 0o600))
    created.push('keys/api-token');
  // The platform CA and security keys are sealed like the others (plain only in homes without `keys`).
  const protection = await homeKeyProtection(root, config.keys);
  created.push(...(await initAttestationHome(root, protection)));
  // A TPM home's runners attest through vTPMs its host TPM vouches for: the host TPM (the
  // machine's stand-in, manufactured now if scripts/setup has not) and its manufacturer's root.
  const tpmHome = (config.runner.attestation ?? 'tpm') === 'tpm';
  // Without one (no swtpm, no device) the home is still made: its runners are refused until the
  // security role enrolls the host with its TPM (`host enroll NAME --tpm`), which fails closed.
  let hostTpm: Awaited<ReturnType<typeof openHostTpm>> | undefined;
  if (tpmHome) {
    try {
      hostTpm = await openHostTpm();
    } catch (e) {
      created.push(
        `no host TPM (${e instanceof Error ? e.message : String(e)}): its runners cannot attest until \`gatehouse host enroll NAME --tpm\``,
      );
    }
  }
  const standInRoot = hostTpm?.manufacturerRoot();
  if (
    hostTpm !== undefined &&
    standInRoot !== undefined &&
    (await trustManufacturerRoot(root, standInRoot, hostTpm.manufacturerCrls()))
  )
    created.push('trusted-ek-cas: the host TPM stand-in manufacturer root');
  if (!existsSync(p.referenceValues) || options.updateReferenceValues === true) {
    const values = await measureReferenceValues(config, root);
    await writeFile(p.referenceValues, `${JSON.stringify(values, null, 2)}\n`, { mode: 0o600 });
    created.push('reference-values.json');
  }
  if (options.newLog === true) created.push(...(await startNewLog(root, config)));
  const store = await openStore(root, config);
  try {
    // The security role's key, and the default policy published as version 1, signed by it.
    const policyText = await readFile(join(root, config.policy), 'utf8').catch(() => DEFAULT_POLICY);
    created.push(...(await initSecurityRole(p.keys, store, policyText, protection)));
    // What was measured becomes the first signed reference-value bundle; later ones only on
    // --update-reference-values (and only when they changed), or by `attestation reference-values`.
    const published =
      (await store.attestation.latestReferenceValues()) !== undefined &&
      options.updateReferenceValues !== true
        ? undefined
        : await new ReferenceValueService({
            store: store.attestation,
            trustedKeys: await trustedSecurityKeys(p.keys),
          }).publishIfChanged(
            parseReferenceValues(JSON.parse(await readText(p.referenceValues)), p.referenceValues),
            await loadSecuritySigner(securityKeyPath(p.keys), { home: root }),
          );
    if (published !== undefined) created.push(`reference values version ${published.version}`);
    // The home's own runner host, enrolled, and the example projects, registered: both acts of
    // the security role, signed with its key like any other.
    const security = await loadSecuritySigner(securityKeyPath(p.keys), { home: root });
    const trustedKeys = await trustedSecurityKeys(p.keys);
    created.push(
      ...(await initRunnerHost({
        keysDir: p.keys,
        store,
        protection,
        attestation: config.runner.attestation ?? 'tpm',
        security,
        trustedKeys,
        ...(hostTpm === undefined
          ? {}
          : {
              appraiseTpm: async (thumbprint: string) =>
                (
                  await hostAttestationOf(root, config, store).appraiseForEnrollment(hostTpm, thumbprint)
                ).tpm,
            }),
      })),
    );
    // The first boot-state quote, so that the first job finds its host's standing fresh.
    if (hostTpm !== undefined) {
      const hosts = new HostRegistry({ acts: store.acts, trustedKeys, tokens: store.tokens });
      const { name } = await loadRunnerHost(p.keys, protection);
      const enrolled = await hosts.get(name);
      if (enrolled?.tpm !== undefined)
        await hostAttestationOf(root, config, store).requote(enrolled, hostTpm, { force: true });
    }
    if (options.examples !== false)
      created.push(...(await registerExampleProjects({ store, security, trustedKeys })));
  } finally {
    await store.close();
  }
  return created;
}

/**
 * Open the home's store, refusing one that does not hold the log its anchor records (missing,
 * empty) or that fails an integrity check: never a fresh database in place of a lost one.
 * @throws GatehouseError STORE_DAMAGED, BAD_CONFIG
 */
async function openStore(root: string, config: Config): Promise<Store> {
  switch (config.store.kind) {
    case 'sqlite': {
      const database = resolve(root, config.store.path);
      await checkDatabaseFile(database, homePaths(root).logAnchor);
      const store = SqliteStore.open(database);
      const problems = await store.integrityCheck().catch((e: unknown) => [String(e)]);
      if (problems.length > 0) {
        await store.close();
        throw new GatehouseError(
          'STORE_DAMAGED',
          `the database fails its integrity check (${problems
            .slice(0, 3)
            .map((p) => p.replace(/\s+/g, ' ').trim())
            .join('; ')}): restore the home from a backup (\`gatehouse restore DIR\`)`,
          { where: database },
        );
      }
      return store;
    }
    case 'postgres':
      return openPostgresStore(root, config.store);
  }
}

/**
 * Start a new transparency log in a home whose database was lost: the log key is rotated (the
 * new log is a different log, never the old one reborn) and the old anchor set aside.
 */
async function startNewLog(root: string, config: Config): Promise<string[]> {
  const p = homePaths(root);
  const anchor = await readLogAnchor(p.logAnchor);
  if (anchor === undefined) return [];
  await rotateHomeKey(root, p.keys, config.keys, 'log');
  await rename(p.logAnchor, `${p.logAnchor}.${anchor.logId.slice(0, 16)}.retired`);
  return [
    `a new log (the log key rotated; the old anchor kept as log-anchor.json.${anchor.logId.slice(0, 16)}.retired)`,
  ];
}

/**
 * Open the PostgreSQL database that several instances share (src/store/postgres-store.ts), with
 * the password from the file the config names, which must be readable by its owner alone.
 * @throws GatehouseError BAD_CONFIG, STORE_ERROR, MIGRATION_FAILED, STORE_DAMAGED
 */
async function openPostgresStore(root: string, config: StoreConfig & { kind: 'postgres' }): Promise<Store> {
  let password: string | undefined;
  if (config.passwordFile !== undefined) {
    const path = resolve(root, config.passwordFile);
    const info = await stat(path).catch((e: unknown) => {
      throw new GatehouseError(
        'BAD_CONFIG',
        `cannot read the database password file: ${(e as Error).message}`,
        {
          where: 'config.json store.passwordFile',
          cause: e,
        },
      );
    });
    if ((info.mode & 0o077) !== 0)
      throw new GatehouseError(
        'BAD_CONFIG',
        `the database password file ${path} is readable by others: chmod 600 it`,
        {
          where: 'config.json store.passwordFile',
        },
      );
    password = (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
  }
  // Loaded only for a PostgreSQL home: the driver is not every command's cost.
  const { PostgresStore } = await import('../store/postgres-store.ts');
  const store = await PostgresStore.open({
    url: config.url,
    ...(password === undefined ? {} : { password }),
    ...(config.maxConnections === undefined ? {} : { maxConnections: config.maxConnections }),
  });
  const problems = await store.integrityCheck();
  if (problems.length > 0) {
    await store.close();
    throw new GatehouseError(
      'STORE_DAMAGED',
      `the database fails its integrity check (${problems.slice(0, 3).join('; ')}): restore it from a PostgreSQL backup`,
      { where: store.where },
    );
  }
  return store;
}

/** Everything wired together for one home. */
export interface OpenHome {
  root: string;
  config: Config;
  store: Store;
  log: TransparencyLog;
  /** The internal CA's certificate transparency log (its current key generation). */
  ct: CtLog;
  /** The log's witnesses, when the config names any. */
  witnessing: LogWitnessing | undefined;
  controlPlane: EmbeddedControlPlane;
  /** Where promoted and quarantined artifacts are placed, with their bundles. */
  registry: ArtifactRegistry;
  runner: Runner;
  /** A fresh attester for one job, as the config says: a vTPM from the home's pool, or software. */
  attester: () => Attester;
  /** The home's own enrolled runner host, whose key signs its agents' requests. */
  host: RunnerHost;
  /** The enrolled runner hosts. */
  hosts: HostRegistry;
  /** Host attestation: enrollment appraisal, re-quotes, standing. */
  hostAttestation: HostAttestation;
  /**
   * Have this home's host quote its boot state unless its last quote is fresh enough (`force`:
   * quote anyway); undefined for a home without TPM attestation.
   */
  requoteHost(options?: { force?: boolean }): Promise<HostAttestationRecord | undefined>;
  /** Settles jobs a crash left unfinished (run at start-up and periodically). */
  reconciler: Reconciler;
  /** Removes what runners of dead agents left on this host (workspaces, vTPMs). */
  sweep(): Promise<string[]>;
  apiToken: string;
  /** Central policies and VEX. */
  policies: PolicyService;
  /** Triage, revocation and re-evaluation: the security role's acts on decided artifacts. */
  triage: TriageService;
  /** Evaluate promoted artifacts again after a vulnerability database change. */
  reevaluate(options: { importedAt: number }): Promise<ReevaluationResult>;
  trustedRoot(): Promise<Record<string, unknown>>;
  /** Webhook alerts: the outbox, its sender and its dead letters. */
  alerts: WebhookDispatcher;
  close(): Promise<void>;
}

/**
 * Open an initialised home and wire the embedded control plane.
 * @throws GatehouseError HOME_NOT_INITIALIZED, BAD_CONFIG, BAD_POLICY
 */
export async function openHome(
  root: string,
  options: {
    registry?: ArtifactRegistry;
    /** A store in place of the config's (`gatehouse server --store postgres://…`). */
    store?: StoreConfig;
  } = {},
): Promise<OpenHome> {
  const p = homePaths(root);
  if (!existsSync(p.config)) {
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      `no gatehouse home at ${root}: run \`gatehouse init\` first`,
    );
  }
  const config = withStore(loadConfig(p.config), options.store);
  const apiToken = (await readText(p.apiToken)).trim();
  const keys = await openHomeKeys(root, p.keys, config.keys);
  const { ca, logSigner, attestationKey } = keys;
  const keyId = sha256Hex(createPublicKey(attestationKey).export({ format: 'der', type: 'spki' })).slice(
    0,
    16,
  );

  const store = await openStore(root, config);
  // The checkpoint origin doubles as the note key name; verifiers find it from the tlog baseUrl.
  const logOrigin = `${new URL(config.identityBase).host}/log`;
  const anchor = new LogAnchor(p.logAnchor);
  const log = new TransparencyLog({
    store: store.log,
    signer: logSigner,
    origin: logOrigin,
    onAppend: () => anchor.schedule(),
    // Checkpoints carry the witness cosignatures kept for their tree.
    cosignatures: store.cosignatures,
  });
  const witnessing = logWitnessing(config, log, store);
  // Each CT key generation is its own log, named by its key: `<host>/ct/<first 16 hex of its ID>`.
  const ctOrigin = (spki: Uint8Array): string =>
    `${new URL(config.identityBase).host}/ct/${sha256Hex(spki).slice(0, 16)}`;
  const rootInput = () =>
    keys.trustedRootInput(`https://${logOrigin}`, (spki) => `https://${ctOrigin(spki)}`);
  const ct = new CtLog({
    store: store.ct,
    signer: keys.ctSigner,
    origin: ctOrigin(keys.ctSigner.publicKeySpki()),
    // The CA's roots, current and retired: the only chains this log takes.
    acceptedRoots: () => [rootInput().ca].flat().map((c) => new Uint8Array(certificateDer(c.rootPem))),
  });
  try {
    await anchor.verify(log);
  } catch (e) {
    keys.close();
    await store.close();
    throw e;
  }
  const securityKeys = await trustedSecurityKeys(p.keys);
  // The authority appraises against the newest signed reference-value bundle in the store.
  const referenceValues = new ReferenceValueService({ store: store.attestation, trustedKeys: securityKeys });
  const hosts = new HostRegistry({ acts: store.acts, trustedKeys: securityKeys, tokens: store.tokens });
  const hostAttestation = hostAttestationOf(root, config, store);
  const hostChain = hostChainOf(hosts, hostAttestation);
  const authority = new AttestationAuthority({
    signingKey: attestationKey,
    keyId,
    // Keys rotated out (`gatehouse keys rotate attestation`) stay in the JWKS until their tokens expired.
    retiredKeys: keys.retiredAttestationKeys,
    issuer: config.issuer,
    referenceBundles: referenceValues,
    // CI identity tokens (GitHub Actions, GitLab CI) verified against the configured issuers.
    ...(config.attestation?.ciIssuers === undefined || config.attestation.ciIssuers.length === 0
      ? {}
      : {
          verifyCiToken: ((v: CiTokenVerifier) => async (token: string) => ({ ...(await v.verify(token)) }))(
            new CiTokenVerifier(config.attestation.ciIssuers, { home: root }),
          ),
        }),
    tokenTtlSeconds: config.tokenTtlSeconds,
    tokens: store.tokens,
    // No CA file is trusted for runner EKs: a vTPM's EK certificate must come from the TPM-resident
    // key of an enrolled host in good standing (host attestation).
    trustedEkCas: () => [],
    hostChain,
    // Cloud and TEE evidence, checked against the roots in trusted-platform-roots/<kind>/.
    platformEvidence: new PlatformEvidenceAppraiser({ anchors: platformAnchorsLoader(root) }),
    // Challenges and AK counters in the store: any instance checks an answer another challenged.
    sessions: store.attestation,
    akCounters: {
      get: (akName) => store.attestation.akCounters(akName),
      put: (akName, counters) => store.attestation.putAkCounters(akName, counters),
    },
  });
  // `gatehouse run --registry URL` hands in its own; otherwise the config's (see registry-config.ts).
  const registry = options.registry ?? registryFromConfig(config.registry, root);
  // Central policies come from the store, signed by the security role (src/policy).
  const policies = new PolicyService({ store, trustedKeys: securityKeys });
  const defaultPolicy = await policies.load(DEFAULT_POLICY_NAME).catch(() => undefined);
  const staging = new OutputStaging({ root: join(root, 'staging') });
  const gate = new Gate({
    store,
    staging,
    tokens: authority,
    projects: policies.projects,
    policy: policies.engine(),
    policyDigest: defaultPolicy?.record.digest ?? '',
    ca,
    ctLogs: [ct],
    log,
    registry,
    issuer: config.issuer,
    identityBase: config.identityBase,
    certValidityMinutes: config.certValidityMinutes,
    verifySource: sourceVerifier(store, config),
    // One in-memory vulnerability index per process, shared with re-evaluation and `policy check`.
    vulnIndex: policies.vulnIndex,
    ...(config.vulnerabilityDb?.maxAgeDays === undefined
      ? {}
      : { vulnerabilityDbMaxAgeDays: config.vulnerabilityDb.maxAgeDays }),
    ...(config.catalog?.limits === undefined
      ? {}
      : { artifactLimits: resolveArtifactLimits(config.catalog.limits) }),
    // Spilled copies of nested archives stay in the home, beside the staged outputs they come from.
    catalogTempDir: join(root, 'staging'),
    ...(keys.tsa === undefined
      ? {}
      : { timestamp: (signature: Uint8Array) => (keys.tsa as TimestampAuthority).timestamp(signature) }),
    ...(witnessing === undefined
      ? {}
      : { witness: async (minSize: number) => (await witnessing.cosign(minSize)).treeSize }),
  });
  let alerts: WebhookDispatcher;
  try {
    alerts = await alertDispatcher(root, config, store);
  } catch (e) {
    keys.close();
    await store.close();
    throw e;
  }
  // Revocations are logged and stored; the home's file mirrors them for local verifiers.
  const revocationsFile = join(root, 'revocations.json');
  const triage = new TriageService({
    store,
    policies,
    trustedKeys: securityKeys,
    // Triage acts reach the registry through the gate: a release is signed exactly as an allow.
    effects: new GateRelease({ gate, store }),
    appendDecision: async (doc) => (await log.append(decisionEntryBody(doc))).index,
    onRevoked: (records) => mirrorRevocations(revocationsFile, records),
    ...(alerts.enabled ? { alerts: alerts.emit } : {}),
  });
  const trustedRoot = async (): Promise<Record<string, unknown>> =>
    buildTrustedRoot(rootInput()) as unknown as Record<string, unknown>;
  const metrics = new Metrics();
  const orchestrator = new Orchestrator({ store });
  const pipeline = new JobPipeline({
    store,
    orchestrator,
    authority,
    gate,
    metrics,
    hosts,
    projects: policies.projects,
    staging,
    toolchain: config.runner.toolchain,
    egressAllow: config.runner.egressAllow ?? [],
    attestation: config.runner.attestation ?? 'tpm',
    // Masked in every build log kept, whatever the runner masked: the operator's token.
    secrets: [apiToken],
    ...(alerts.enabled ? { alerts: alerts.emit } : {}),
    hostStanding: hostChain.standing,
    hostAttestation,
  });
  const reconciler = new Reconciler({
    store,
    orchestrator,
    registry,
    staging,
    log,
    submittedGraceSeconds: config.jobs?.submittedGraceSeconds ?? 600,
    jobDeadlineSeconds: config.jobs?.deadlineSeconds ?? MAX_BUILD_TIMEOUT_SECONDS + 600,
  });
  const controlPlane = new EmbeddedControlPlane({
    store,
    pipeline,
    authority,
    log,
    metrics,
    policies,
    hosts,
    triage,
    referenceValues,
    trustedRoot,
    // GET /v1/revocations: the list signed by the log key, which verifiers find in the trusted root.
    revocationList: async () =>
      signRevocationList(await currentRevocations(revocationsFile, await triage.revocations()), logSigner),
    trustEkCa: (body) => trustEkCaSigned(root, body, securityKeys),
    hostStanding: hostChain.standing,
  });
  const runner = runnerFromConfig(config.runner, root);
  const attester = await attesterFactory(root, config);
  const host = await loadRunnerHost(p.keys, await homeKeyProtection(root, config.keys));
  return {
    root,
    config,
    store,
    log,
    ct,
    witnessing,
    controlPlane,
    registry,
    runner,
    attester,
    host,
    hosts,
    hostAttestation,
    requoteHost: async (options = {}) => {
      if ((config.runner.attestation ?? 'tpm') !== 'tpm') return undefined;
      const enrolled = await hosts.get(host.name);
      if (enrolled?.tpm === undefined) return undefined;
      return hostAttestation.requote(enrolled, openHostTpm, options);
    },
    reconciler,
    sweep: () => sweepRunnerLeftovers(root, config, runner),
    apiToken,
    policies,
    triage,
    // Revocations go through the revoke path: logged, stored, and in the list verifiers read.
    reevaluate: (o) => triage.reevaluate(o),
    trustedRoot,
    alerts,
    close: async () => {
      // Attempts under way finish first; what they could not send stays in the outbox.
      await alerts.stop();
      // Appends still in a batch are written (and answered) before the anchor and the store close.
      await log.drain();
      await anchor.flush().catch(() => undefined);
      keys.close();
      await store.close();
    },
  };
}

/**
 * The witnesses the config names, as the log asks them.
 * @throws GatehouseError BAD_CONFIG for a witness key that does not parse
 */
function logWitnessing(config: Config, log: TransparencyLog, store: Store): LogWitnessing | undefined {
  const witnesses = (config.witnesses ?? []).map((w, i) => {
    try {
      return { url: w.url, key: parseVkey(w.key) };
    } catch (e) {
      throw new GatehouseError('BAD_CONFIG', e instanceof Error ? e.message : 'bad witness key', {
        where: `config.json witnesses.${i}.key`,
        cause: e,
      });
    }
  });
  return witnesses.length === 0
    ? undefined
    : new LogWitnessing({ log, cosignatures: store.cosignatures, witnesses });
}

/**
 * How the runners of a home attest, as its config says: a vTPM per runner from the home's pool
 * (`tpm`, the default), or the measured baseline alone (`software`, which a TPM control plane
 * refuses).
 */
async function attesterFactory(root: string, config: Config): Promise<() => Attester> {
  if (config.runner.attestation === 'software') return () => new SoftwareAttester();
  const pool = await vtpmPoolOf(root, config);
  return () => new VtpmAttester(pool);
}

async function vtpmPoolOf(root: string, config: Config): Promise<VtpmPool> {
  // The EK certificates come from the host TPM's vTPM CA key (no file holds it).
  void config;
  // The pool's claim path is the launcher: it measures the agent into each vTPM it hands out.
  // Each state is encrypted, its key sealed to the host TPM: a copy of the pool is ciphertext.
  return new VtpmPool(
    attestationPaths(root).vtpmPool,
    { ekIssuer: hostVtpmIssuer(), stateSealer: hostVtpmStateSealer() },
    launchMeasurements,
  );
}

/**
 * Where a runner host's home keeps build-environment SBOMs between jobs (one per runner image,
 * by the digest of its package databases).
 */
export function environmentCacheOf(root: string): string {
  return join(root, 'cache', 'build-environment');
}

/** How many vTPM states a home keeps ready when its config does not say (runner.vtpmPool.target). */
export const DEFAULT_VTPM_POOL_TARGET = 4;

/**
 * The home's vTPM pool and how many states it should keep ready; undefined for a home whose
 * runners attest in software (no vTPMs) or that does not exist.
 */
export async function homeVtpmPool(root: string): Promise<{ pool: VtpmPool; target: number } | undefined> {
  const p = homePaths(root);
  if (!existsSync(p.config)) return undefined;
  const config = loadConfig(p.config);
  if (config.runner.attestation === 'software') return undefined;
  return {
    pool: await vtpmPoolOf(root, config),
    target: config.runner.vtpmPool?.target ?? DEFAULT_VTPM_POOL_TARGET,
  };
}

/**
 * Remove what runners of this host left behind when their agent died without cleaning up
 * (SIGKILL, a crash): workspaces with their tmpfs mounts, and vTPMs with their swtpm.
 * @returns what it removed
 */
export async function sweepRunnerLeftovers(root: string, config: Config, runner: Runner): Promise<string[]> {
  const pool = await vtpmPoolOf(root, config);
  return [...(await runner.sweep()), ...(await pool.sweep())];
}

/**
 * The attester of a runner host's home without opening the rest of it: what `gatehouse run
 * --server` uses, so that a job run against a remote control plane attests exactly as an embedded
 * one does (a pooled vTPM whose EK certificate the home's platform CA issued).
 * @throws GatehouseError HOME_NOT_INITIALIZED, BAD_CONFIG
 */
export async function runnerAttester(root: string): Promise<{
  attester: () => Attester;
  host: RunnerHost;
  sweep: (runner: Runner) => Promise<string[]>;
  /**
   * The home's runner when its config names another backend than bubblewrap (a node agent's
   * `kubernetes`, a `github-jit` host): jobs against a remote control plane run there.
   */
  runner?: Runner;
}> {
  const p = homePaths(root);
  if (!existsSync(p.config))
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      `no gatehouse home at ${root}: TPM attestation needs the runner host's home (its vTPM pool); run \`gatehouse init\` or pass --home`,
    );
  const config = loadConfig(p.config);
  const protection = await homeKeyProtection(root, config.keys);
  return {
    attester: await attesterFactory(root, config),
    host: await loadRunnerHost(p.keys, protection),
    sweep: (runner) => sweepRunnerLeftovers(root, config, runner),
    ...(config.runner.kind === 'bubblewrap' ? {} : { runner: runnerFromConfig(config.runner, root) }),
  };
}

/**
 * Back up a home into `dir` while it stays in use (src/home/backup.ts): its database as one
 * consistent snapshot, that snapshot's log anchor signed with the log key, the sealed keys and the
 * rest, with a manifest of digests.
 * @throws GatehouseError HOME_NOT_INITIALIZED, BAD_INPUT, STORE_ERROR
 */
export async function backupHomeTo(root: string, dir: string): Promise<BackupManifest> {
  const p = homePaths(root);
  if (!existsSync(p.config))
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      `no gatehouse home at ${root}: run \`gatehouse init\` first`,
    );
  const config = loadConfig(p.config);
  const keys = await openHomeKeys(root, p.keys, config.keys);
  try {
    const origin = `${new URL(config.identityBase).host}/log`;
    return await backupHome(
      root,
      dir,
      async (store) => new TransparencyLog({ store: store.log, signer: keys.logSigner, origin }),
    );
  } finally {
    keys.close();
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new GatehouseError('HOME_NOT_INITIALIZED', 'missing from the home: run `gatehouse init`', {
      where: path,
      cause: e,
    });
  }
}

/**
 * The config with its store replaced, when one is given: `--store postgres://…` keeps the
 * config's password file and pool size when the config names PostgreSQL too.
 */
function withStore(config: Config, store: StoreConfig | undefined): Config {
  if (store === undefined) return config;
  const merged: StoreConfig =
    store.kind === 'postgres' && config.store.kind === 'postgres'
      ? {
          ...store,
          ...(store.passwordFile === undefined && config.store.passwordFile !== undefined
            ? { passwordFile: config.store.passwordFile }
            : {}),
          ...(store.maxConnections === undefined && config.store.maxConnections !== undefined
            ? { maxConnections: config.store.maxConnections }
            : {}),
        }
      : store;
  return Object.freeze({ ...config, store: Object.freeze(merged) });
}

/** The DER of a PEM certificate. */
function certificateDer(pem: string): Buffer {
  return new X509Certificate(pem).raw;
}

/** The canonical digest of a JSON value, for reference-value files and tests. */
export function digestOf(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}
