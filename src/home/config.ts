import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { alertsConfigSchema } from '../alerts/webhook-dispatcher.ts';
import { ciIssuerConfigSchema } from '../attestation/ci-token.ts';
import { GatehouseError } from '../common/errors.ts';
import { artifactLimitsSchema } from '../sbom/artifact/limits.ts';
import { sourceConfigSchema } from '../source/config.ts';

/** Signature algorithms an ID token may use (asymmetric only: never `none` or HMAC). */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'] as const;

function isLoopback(u: URL): boolean {
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

/** https, or plain http on loopback only (a test's or a local issuer). */
function isSafeUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || (u.protocol === 'http:' && isLoopback(u))) && u.hash === '';
  } catch {
    return false;
  }
}

const claimValues = z.record(
  z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/),
  z.array(z.string().min(1).max(1024)).min(1).max(256),
);

/** config.json `console.oidc`: the issuer viewers log in with. */
export const consoleOidcSchema = z.strictObject({
  /** The exact `iss` of its ID tokens; its discovery document is at `<issuer>/.well-known/openid-configuration`. */
  issuer: z.string().refine(isSafeUrl, 'must be an https URL (plain http only on loopback)'),
  clientId: z.string().min(1).max(512),
  /** The client secret, in a file of mode 0600 (relative to the home); absent: a public client (PKCE only). */
  clientSecretFile: z.string().min(1).optional(),
  /**
   * Who may log in: every claim named must be in the ID token with one of the values (for an
   * array claim such as `groups`, one of its elements). At least one claim: an issuer's every
   * account is rarely meant.
   */
  allowed: claimValues.refine((o) => Object.keys(o).length > 0, 'name at least one claim'),
  /** Who logs in as a triager (besides passing `allowed`), in the same form; absent: nobody by OIDC. */
  triager: claimValues.optional(),
  /** The redirect URI registered at the issuer; default `<this origin>/console/oidc/callback`. */
  redirectUri: z.string().refine(isSafeUrl, 'must be an https URL (plain http only on loopback)').optional(),
  algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256', 'ES256']),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/))
    .max(16)
    .default(['openid', 'profile', 'email']),
});

/** The console's OIDC issuer, as config.json gives it (defaults filled in). */
export type ConsoleOidcConfig = z.infer<typeof consoleOidcSchema>;

/**
 * The home's config.json: data, validated once at start-up, then frozen. The wiring switches
 * over each discriminated union exhaustively, so a new backend cannot be half-added.
 */
const storeConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite'), path: z.string().min(1) }).strict(),
  z
    .object({
      kind: z.literal('postgres'),
      /** `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…]`, never with a password. */
      url: z.string().min(1),
      /** The role's password, in a file of mode 0600 (relative to the home); else PGPASSWORD, or none. */
      passwordFile: z.string().min(1).optional(),
      /** Connections in this instance's pool (default 10). */
      maxConnections: z.number().int().min(1).max(1000).optional(),
    })
    .strict(),
]);

/** Where the store is: the embedded SQLite file, or a PostgreSQL database that instances share. */
export type StoreConfig = z.infer<typeof storeConfig>;

/** Registry credentials: the password lives in a file (relative to the home), never in config.json. */
const registryAuth = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('anonymous') }).strict(),
  z
    .object({ kind: z.literal('basic'), username: z.string().min(1), passwordFile: z.string().min(1) })
    .strict(),
]);

const registryConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('oci-layout'), path: z.string().min(1) }).strict(),
  z
    .object({
      kind: z.literal('oci-distribution'),
      /** `https://host[:port]`; plain `http://` only for loopback. */
      url: z.url({ protocol: /^https?$/ }),
      repositoryPrefix: z.string().regex(/^[a-z0-9]+(?:[._/-][a-z0-9]+)*$/),
      quarantinePrefix: z.string().regex(/^[a-z0-9]+(?:[._/-][a-z0-9]+)*$/),
      auth: registryAuth,
    })
    .strict(),
]);

/** Resource limits of every build (runner issue 3); defaults in src/runner/limits.ts. */
const runnerLimitsConfig = z
  .object({
    cpuSeconds: z.number().int().min(1).max(86_400),
    memoryMiB: z.number().int().min(16).max(1_048_576),
    processes: z.number().int().min(8).max(1_000_000),
    workspaceMiB: z.number().int().min(1).max(1_048_576),
    tmpMiB: z.number().int().min(1).max(1_048_576),
  })
  .partial()
  .strict()
  .optional();

/**
 * The settings of a runner host whose builds run elsewhere (a Kubernetes node agent, a JIT runner
 * host): what its own agent measures and how it attests, and the builds' limits.
 */
const agentHostFields = {
  /** Binaries of the agent's own host that every runner measures (the build's are elsewhere). */
  toolchain: z.array(z.string().startsWith('/')).default([]),
  attestation: z.enum(['tpm', 'software']).optional(),
  limits: runnerLimitsConfig,
  vtpmPool: z.strictObject({ target: z.number().int().min(0).max(256) }).optional(),
  egressAllow: z.array(z.url()).max(256).optional(),
};

const runnerConfig = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('bubblewrap'),
      /** Absolute paths of the toolchain binaries every runner measures. */
      toolchain: z.array(z.string().startsWith('/')).min(1),
      /**
       * How runners attest: `tpm` (a vTPM per runner from the home's pool, quoted; the default) or
       * `software` (the measured baseline alone, for hosts without swtpm).
       */
      attestation: z.enum(['tpm', 'software']).optional(),
      /** Resource limits of every build (runner issue 3); defaults in src/runner/limits.ts. */
      limits: runnerLimitsConfig,
      /**
       * vTPM states kept manufactured ahead of jobs (`target`, default 4; 0 keeps none): `init`,
       * each `run` and the server refill the pool in the background, so that a job takes a ready
       * vTPM instead of manufacturing one (about 0.7 s).
       */
      vtpmPool: z.strictObject({ target: z.number().int().min(0).max(256) }).optional(),
      /** Origins the fetch phase's egress proxy may reach, e.g. https://registry.npmjs.org. */
      egressAllow: z.array(z.url()).max(256).optional(),
      /** The base image: the host's system directories, measured and verified (default), or none. */
      image: z
        .discriminatedUnion('kind', [
          z
            .object({
              kind: z.literal('host-system'),
              cacheDir: z.string().startsWith('/').optional(),
              reverifySeconds: z.number().int().min(0).max(604_800).optional(),
              pinnedDigest: z
                .string()
                .regex(/^[0-9a-f]{64}$/)
                .optional(),
            })
            .strict(),
          z.object({ kind: z.literal('unmeasured') }).strict(),
          // An image directory stored in the home by `gatehouse image build|import`, found by digest.
          z
            .object({
              kind: z.literal('directory'),
              digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
              imagesDir: z.string().startsWith('/').optional(),
            })
            .strict(),
        ])
        .optional(),
    })
    .strict(),
  // Builds as Kubernetes Jobs from an agent on the node (a DaemonSet with the node's TPM): see
  // docs/kubernetes.md. Its settings are the agent's; the Pod's hardening is not configurable.
  z
    .object({
      kind: z.literal('kubernetes'),
      /** The namespace build Jobs are made in (the agent's RBAC is limited to it). */
      namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
      /** The build image, pinned by digest: `registry/repo@sha256:<hex>`. */
      image: z
        .string()
        .regex(/^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$/, 'must be pinned: repo@sha256:<hex>'),
      /** This agent's node; default $NODE_NAME (the downward API). */
      node: z.string().min(1).max(253).optional(),
      /** Node-local directory of job workspaces, the same path in the agent's Pod and on the node. */
      workspaceRoot: z.string().startsWith('/'),
      /** The API server; default the in-cluster service and the Pod's service account. */
      apiServer: z.url({ protocol: /^https?$/ }).optional(),
      tokenFile: z.string().startsWith('/').optional(),
      caFile: z.string().startsWith('/').optional(),
      /** A Localhost seccomp profile installed on the nodes; default the runtime's. */
      seccompProfile: z.string().min(1).optional(),
      ...agentHostFields,
    })
    .strict(),
  // Builds on just-in-time GitHub Actions runners, one registered per job and removed after it:
  // see docs/ci.md. The launcher boots the single-use machine; gatehouse registers and removes.
  z
    .object({
      kind: z.literal('github-jit'),
      /** `owner/repo` whose self-hosted runners the JIT runners are. */
      repository: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,38}\/[A-Za-z0-9._-]{1,100}$/, 'must be owner/repo'),
      /** Default https://api.github.com; a GitHub Enterprise Server's https://HOST/api/v3. */
      apiUrl: z.url({ protocol: /^https?$/ }).optional(),
      /** A 0600 file holding a token that may administer the repository's runners. */
      tokenFile: z.string().startsWith('/'),
      runnerGroupId: z.number().int().min(1).default(1),
      labels: z
        .array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/))
        .min(1)
        .max(20)
        .default(['self-hosted', 'linux', 'gatehouse']),
      /** The launcher's argv (absolute executable first): it gets the JIT config on stdin. */
      launcher: z.array(z.string().min(1)).min(1).max(64),
      /** The workflow dispatched to each job's runner (`workflow_dispatch`), and its ref. */
      workflow: z
        .strictObject({ file: z.string().min(1).max(255), ref: z.string().min(1).max(255) })
        .optional(),
      workspaceRoot: z.string().startsWith('/'),
      namePrefix: z
        .string()
        .regex(/^[a-z0-9][a-z0-9-]{0,23}$/)
        .optional(),
      bootSeconds: z.number().int().min(0).max(3600).optional(),
      ...agentHostFields,
    })
    .strict(),
]);

/** How key files are sealed at rest (see docs/signing.md). */
const keyEncryptionConfig = z.discriminatedUnion('kind', [
  /** A 32-byte key-encryption key in a 0600 file of the home: protects copies and backups. */
  z.object({ kind: z.literal('kek-file'), path: z.string().min(1) }).strict(),
  /** An operator passphrase from an environment variable, never stored. */
  z.object({ kind: z.literal('passphrase'), passphraseEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/) }).strict(),
  /** Plain PKCS#8 files: homes created before encryption, or explicitly chosen. */
  z.object({ kind: z.literal('none') }).strict(),
]);

/** Where the signing keys (CA intermediate, log, TSA) live. */
const keysConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file'), encryption: keyEncryptionConfig }).strict(),
  z
    .object({
      kind: z.literal('pkcs11'),
      /** Absolute path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so). */
      module: z.string().startsWith('/'),
      /** Token label. */
      token: z.string().min(1).max(32),
      /** Key label prefix: keys are `<label>-log`, `<label>-ca`, `<label>-tsa`. */
      label: z.string().min(1).max(64),
      /** Environment variable holding the user PIN. */
      pinEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/),
      /** Keys that stay in files (attestation, CA and TSA roots). */
      encryption: keyEncryptionConfig,
    })
    .strict(),
]);

export type KeysConfig = z.infer<typeof keysConfig>;

export const configSchema = z
  .object({
    version: z.literal(1),
    /** The issuer named in attestation tokens and in signing certificates. */
    issuer: z.url(),
    /** Base URI of build identities: a certificate's SAN is `<identityBase>/projects/<project>`. */
    identityBase: z.url(),
    store: storeConfig,
    registry: registryConfig,
    runner: runnerConfig,
    tokenTtlSeconds: z.number().int().min(30).max(900),
    certValidityMinutes: z.number().int().min(1).max(60),
    /** Path (relative to the home) of the central policy every project is held to. */
    policy: z.string().min(1),
    /** Hosted source providers (GitHub, GitLab) besides local git; see docs/source.md. */
    source: sourceConfigSchema.optional(),
    /** Where keys live and how they are sealed; absent in homes that predate encryption (plain files). */
    keys: keysConfig.optional(),
    /**
     * How long unfinished jobs wait before reconciliation settles them: a submitted job no one is
     * deciding any more (`submittedGraceSeconds`), a queued or running job whose runner vanished
     * (`deadlineSeconds`, the longest build timeout plus a margin by default).
     */
    jobs: z
      .strictObject({
        submittedGraceSeconds: z.number().int().min(1).max(86_400).optional(),
        deadlineSeconds: z.number().int().min(1).max(604_800).optional(),
      })
      .optional(),
    /**
     * The vulnerability database the gate matches against: a build is denied when it is empty, or
     * when its newest record is older than `maxAgeDays` (when set).
     */
    vulnerabilityDb: z.strictObject({ maxAgeDays: z.number().int().min(1).max(3650).optional() }).optional(),
    /**
     * The gate's cataloguing of artifacts: bounds no output may push it past (depth, entries,
     * bytes, compression ratios; src/sbom/artifact/limits.ts has the defaults and why).
     */
    catalog: z.strictObject({ limits: artifactLimitsSchema.optional() }).optional(),
    /** The attestation authority: trusted CI identity token issuers (docs/attestation.md). */
    attestation: z
      .strictObject({
        ciIssuers: z.array(ciIssuerConfigSchema).max(32).optional(),
        /** Host attestation: how often runner hosts quote their boot state, and how old a quote may be. */
        hostQuote: z
          .strictObject({
            intervalSeconds: z.number().int().min(10).max(86_400).optional(),
            maxAgeSeconds: z.number().int().min(10).max(172_800).optional(),
          })
          .optional(),
      })
      .optional(),
    /**
     * Witnesses of the transparency log (c2sp.org/tlog-witness): each signed bundle's checkpoint is
     * sent to them first, and their cosignatures travel in the bundle (docs/witnesses.md).
     */
    witnesses: z
      .array(
        z.strictObject({
          /** The witness's submission prefix (`<url>/add-checkpoint`). */
          url: z.url(),
          /** Its verifier key, `name+hexid+base64` (what `gatehouse log witness-key` prints). */
          key: z.string().min(1).max(512),
        }),
      )
      .max(16)
      .optional(),
    /** Webhook alerts (CloudEvents, HMAC-signed) on denies, quarantines, triage, refusals, revocations. */
    alerts: alertsConfigSchema.optional(),
    /**
     * The web console (`/console`, docs/console.md): where its viewer token is kept (default
     * keys/viewer-token), the static triager token's file (none by default), and an OIDC issuer
     * viewers and triagers may log in with.
     */
    console: z
      .strictObject({
        viewerTokenFile: z.string().min(1).optional(),
        triagerTokenFile: z.string().min(1).optional(),
        oidc: consoleOidcSchema.optional(),
      })
      .optional(),
  })
  .strict();

export type Config = Readonly<z.infer<typeof configSchema>>;

/** The config `gatehouse init` writes. */
export function defaultConfig(): Config {
  return {
    version: 1,
    issuer: 'https://gatehouse.internal/attestation',
    identityBase: 'https://gatehouse.internal',
    store: { kind: 'sqlite', path: 'gatehouse.db' },
    registry: { kind: 'oci-layout', path: 'registry' },
    runner: {
      kind: 'bubblewrap',
      toolchain: ['/usr/bin/sh', '/usr/bin/tar', '/usr/bin/gzip', '/usr/bin/env'],
      attestation: 'tpm',
      egressAllow: ['https://registry.npmjs.org'],
      image: { kind: 'host-system' },
    },
    tokenTtlSeconds: 300,
    certValidityMinutes: 10,
    policy: 'policy.yaml',
    keys: { kind: 'file', encryption: { kind: 'kek-file', path: 'keys/kek' } },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Parse and freeze a config document.
 * @throws GatehouseError BAD_CONFIG naming the file and the first bad field
 */
export function parseConfig(text: string, where: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', `not valid JSON: ${(e as Error).message}`, { where, cause: e });
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    throw new GatehouseError(
      'BAD_CONFIG',
      `${path === '' ? 'config' : path}: ${issue?.message ?? 'invalid'}`,
      {
        where,
      },
    );
  }
  return deepFreeze(parsed.data);
}

/** Read and parse `path`. @throws GatehouseError HOME_NOT_INITIALIZED, BAD_CONFIG */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new GatehouseError('HOME_NOT_INITIALIZED', 'no config.json: run `gatehouse init` first', {
      where: path,
      cause: e,
    });
  }
  return parseConfig(text, path);
}
