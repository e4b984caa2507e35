/**
 * What each command is for, how it is called and examples: the one source of the global help
 * page, of `gatehouse CMD --help` and `gatehouse help CMD`, and of the usage lines commands print
 * on a usage error. Printing help loads nothing else, so it can never do anything.
 */

export interface CommandHelp {
  /** One line for the global page. */
  summary: string;
  /** The usage line(s), starting with `gatehouse CMD`. */
  usage: string;
  /** A paragraph or two for `help CMD`. */
  details?: string;
  /** Command lines that work as shown (after `gatehouse init`, from the repository's root). */
  examples: string[];
}

export const COMMAND_HELP = {
  init: {
    summary: 'create the home: config, keys, CA, log, database, this host enrolled',
    usage: 'gatehouse init [--home DIR] [--update-reference-values] [--no-examples] [--new-log] [--json]',
    details:
      'Creates what is missing and keeps what exists. --update-reference-values publishes the current\n' +
      'measurements of this host (after an upgrade or a change to gatehouse). --new-log starts a new\n' +
      'transparency log under a new key when the database was lost.',
    examples: ['gatehouse init', 'gatehouse init --update-reference-values'],
  },
  demo: {
    summary: 'run the bundled examples end to end in a temporary home',
    usage: 'gatehouse demo [--keep] [--json]',
    details: 'Without --keep the temporary home is removed at the end; with it, the demo says where it is.',
    examples: ['gatehouse demo', 'gatehouse demo --keep'],
  },
  server: {
    summary: 'run the control plane over HTTP (default 127.0.0.1:8700)',
    usage:
      'gatehouse server [--home DIR] [--listen HOST:PORT] [--store postgres://USER@HOST/DB] [--viewer-token-file F]',
    details:
      'With --store (or config.json store.kind postgres), several instances share one PostgreSQL database (README: running beyond one machine).\n' +
      'The console is at /console; viewers log in with the token in --viewer-token-file (default keys/viewer-token, made on first start),\n' +
      'or with the OIDC issuer of config.json console.oidc; triagers with console.triagerTokenFile or an OIDC claim (docs/console.md).',
    examples: [
      'gatehouse server --listen 127.0.0.1:8700',
      "gatehouse server --listen 0.0.0.0:8701 --store 'postgres://gatehouse@db.internal/gatehouse?sslmode=verify-full'",
    ],
  },
  run: {
    summary: 'one job in an ephemeral runner, attested and gated',
    usage:
      'gatehouse run DIR [--commit SHA] [--project NAME] [--server URL [--host NAME --host-key F] [--ci-audience AUD] | --registry URL] [--out DIR] [--quiet] [--home DIR] [--json]',
    details:
      "Exit 0 allowed, 3 denied, 4 quarantined, 1 failed. With --out, an allowed build's outputs and\n" +
      'bundles are written to DIR.\n' +
      "The build's output (stdout and stderr of the fetch and build phases) streams under its step as\n" +
      'it runs, with secrets masked as ***; --quiet (-q) leaves it out, and --json never streams it (the\n' +
      "document carries the log's digest). Each job's log is kept, at most 1 MiB (the start and the\n" +
      'end, with a marker where output was left out), served at GET /v1/jobs/ID/log, and its digest is\n' +
      "the provenance's build.log byproduct. A failed build prints the last 40 lines on stderr.\n" +
      '--host and --host-key run as a CI runner host (enrolled --attestation ci) without a home: inside\n' +
      "GitHub Actions or GitLab CI it attests with the job's OIDC token (audience --ci-audience, default\n" +
      "the server's origin; --ci-audience alone adds the token to a home's host). See docs/ci.md.",
    examples: [
      'gatehouse run examples/hello-app',
      'gatehouse run examples/hello-app --out out/',
      'gatehouse run examples/hello-app --quiet',
    ],
  },
  verify: {
    summary: 'deploy-time verification: a file and its bundle, or an image in a registry',
    usage:
      'gatehouse verify ARTIFACT --bundle FILE (--identity URI --issuer URI | --project NAME [--issuer URI]) [--trusted-root FILE] [--witness KEY… [--witness-threshold N]] [--home DIR] [--json]\n' +
      'gatehouse verify oci://HOST/REPO@sha256:HEX [--policy F] [--identity URI | --project NAME] [--issuer URI] ' +
      '[--require provenance,sbom,vsa] [--min-level N] [--max-age 30d] [--revocations F|URL | --server URL | --no-revocation-check] [--trusted-root F] ' +
      '[--plain-http] [--home DIR] [--json]',
    examples: [
      'gatehouse verify out/hello-app.tar --bundle out/hello-app.tar.sigstore.json --project hello-app',
    ],
  },
  admission: {
    summary: 'Kubernetes validating admission webhook over TLS',
    usage:
      'gatehouse admission --policy F [--listen HOST:PORT] [--cert F --key F | --dns NAME...] [--trusted-root F] ' +
      '[--revocations F|URL] [--home DIR]',
    examples: ['gatehouse admission --policy deploy-policy.yaml --dns gatehouse-admission.svc'],
  },
  'verify-bundle': {
    summary: 'any Sigstore bundle (the sigstore-conformance client protocol)',
    usage:
      'gatehouse verify-bundle --bundle F (--certificate-identity I --certificate-oidc-issuer U | --key K) [--trusted-root F] FILE_OR_DIGEST',
    examples: [
      'gatehouse verify-bundle --bundle b.json --certificate-identity ID --certificate-oidc-issuer ISS --trusted-root trusted_root.json FILE',
    ],
  },
  sbom: {
    summary: 'SBOM of every lockfile under DIR (CycloneDX 1.6 by default)',
    usage:
      'gatehouse sbom DIR [--format cyclonedx|spdx] [--spec-version 1.5|1.6|1.7] [--lockfile F]... [--output FILE]',
    examples: ['gatehouse sbom examples/hello-app', 'gatehouse sbom examples/hello-app --format spdx'],
  },
  vulndb: {
    summary: 'import OSV records; keep VEX documents centrally',
    usage: 'gatehouse vulndb import PATH... | vex FILE... [--home DIR] [--json]',
    examples: ['gatehouse vulndb import examples/advisories'],
  },
  policy: {
    summary: 'central signed policies (push and assign need the security key); what the gate would decide',
    usage:
      'gatehouse policy push FILE [--key K] [--version N] [--server URL] [--allow-empty] | show [NAME] [--version N] |\n' +
      '       history [NAME] | assign PROJECT NAME [--key K] |\n' +
      '       check --sbom F [--policy F | --project P] [--facts F] [--vex F]... [--json]',
    examples: ['gatehouse policy show', 'gatehouse policy history'],
  },
  project: {
    summary: 'central project registrations (register needs the security key)',
    usage:
      'gatehouse project register NAME (--repository URI|PATH | --unverified-directory) [--policy P] [--pool POOL]... [--key K]\n' +
      '       | list | show NAME   [--home DIR] [--json]',
    examples: ['gatehouse project list', 'gatehouse project show hello-app'],
  },
  host: {
    summary: 'enrolled runner hosts (enroll and revoke need the security key)',
    usage:
      'gatehouse host enroll NAME --public-key F --pool POOL [--attestation tpm|software|ci [--ci-claim CLAIM=VALUE]…] [--key K]\n' +
      '       | enroll NAME --tpm [--public-key F] [--pool POOL] [--boot-reference F] [--key K]\n' +
      '       | clear NAME [--accept-current] [--key K] | quote | revoke NAME [--key K] | list | key   [--home DIR] [--json]',
    examples: ['gatehouse host list', 'gatehouse host key', 'gatehouse host quote'],
  },
  triage: {
    summary: 'quarantined artifacts; release (sign and promote) or reject them (security key)',
    usage: 'gatehouse triage list [--limit N] | release|reject DECISION --reason TEXT [--key K] [--json]',
    examples: ['gatehouse triage list'],
  },
  alerts: {
    summary: 'webhook alerts: list deliveries and dead letters, replay one',
    usage:
      'gatehouse alerts list [--state pending|delivered|dead | --all] [--limit N] | replay ID   [--home DIR] [--json]',
    details:
      'Alerts are CloudEvents POSTed to the webhooks of config.json `alerts`, HMAC-signed (docs/alerts.md).\n' +
      'A delivery that failed every attempt is a dead letter; `replay` sends it again now.',
    examples: ['gatehouse alerts list', 'gatehouse alerts list --all --limit 20'],
  },
  revoke: {
    summary: 'revoke an artifact: logged, and in the revocation list (security key)',
    usage: 'gatehouse revoke DIGEST --reason TEXT [--key K] [--home DIR] [--json]',
    examples: ['gatehouse revoke sha256:HEX --reason "recalled build"'],
  },
  attestation: {
    summary:
      'trusted EK CAs, cloud and TEE roots, pre-manufactured vTPMs, reference values, refused attestations',
    usage:
      'gatehouse attestation trust-ca add FILE | trust-ca revoke FILE|SHA256 | trust-ca list | vtpm-pool fill [N] |\n' +
      '       platform-root add sev-snp|tdx|azure|nitro-tpm|gcp-vtpm FILE | platform-root list |\n' +
      '       reference-values publish FILE [--key K] [--server URL] | reference-values show [--version N] |\n' +
      '       reference-values history | refusals [--limit N] [--home DIR] [--json]',
    details:
      "vtpm-pool fill manufactures vTPM states until N are ready (the config's runner.vtpmPool.target\n" +
      'without N); init, run and the server keep the pool filled in the background.\n' +
      'platform-root add trusts a root CA (or installs a CRL) for cloud and TEE evidence: AMD ARK for\n' +
      'sev-snp, Intel SGX Root CA for tdx, AWS Nitro root for nitro-tpm, Google EK/AK root for gcp-vtpm;\n' +
      'for azure, FILE is the provider { "issuer", "jwks" }.',
    examples: ['gatehouse attestation vtpm-pool fill', 'gatehouse attestation refusals'],
  },
  log: {
    summary: 'read, prove and monitor the transparency log',
    usage:
      'gatehouse log checkpoint | inclusion INDEX [--tree-size N] | consistency FIRST SECOND | audit [--state F] [--server URL] [--trusted-root F] [--home DIR] [--json]\n' +
      'gatehouse log witness --trusted-root F… [--listen HOST:PORT] [--name N] | witness-key [--name N] | cosign [--home DIR] [--json]',
    examples: ['gatehouse log checkpoint', 'gatehouse log inclusion 0'],
  },
  keys: {
    summary: 'where the signing keys live; rotate one (old signatures keep verifying)',
    usage: 'gatehouse keys status | rotate log|ct|ca|tsa|attestation [--home DIR] [--json]',
    examples: ['gatehouse keys status'],
  },
  doctor: {
    summary: 'check this host and home: tools, sandbox, database, reference values, pool, disk, clock',
    usage: 'gatehouse doctor [--home DIR] [--json]',
    details:
      'Each finding is ok, warn or fail, with what to do. Exit 0 when nothing fails, 1 otherwise.\n' +
      'Reference-value drift (an upgraded package, an edited gatehouse) is named with the command that\n' +
      'makes the current state the reference, for the security role to run once the change is checked.',
    examples: ['gatehouse doctor', 'gatehouse doctor --json'],
  },
  backup: {
    summary: 'a consistent copy of the home (database, log anchor, sealed keys)',
    usage: 'gatehouse backup DIR [--home DIR] [--json]',
    examples: ['gatehouse backup /var/backups/gatehouse-2026-12-03'],
  },
  restore: {
    summary: 'restore a home from a backup, checked file by file',
    usage: 'gatehouse restore DIR [--replace] [--home DIR] [--json]',
    examples: ['gatehouse restore /var/backups/gatehouse-2026-12-03 --home /srv/gatehouse'],
  },
  image: {
    summary: 'content-addressed runner base images (debootstrap minbase)',
    usage:
      'gatehouse image build [--suite S] [--mirror URL] [--include PKG,...] | import DIR | list [--home DIR] [--json]',
    examples: ['gatehouse image list'],
  },
  'trust-root': {
    summary: 'export the Sigstore trusted_root.json of this home',
    usage:
      'gatehouse trust-root [--home DIR] [--output FILE] [--format json|jsonl] [--render TEMPLATE [--images GLOB]]',
    examples: [
      'gatehouse trust-root --output trusted_root.json',
      'gatehouse trust-root --format jsonl --output trusted_root.jsonl',
      "gatehouse trust-root --render deploy/kyverno/cluster-policy.yaml --images 'registry.example/gatehouse/promoted/*'",
    ],
  },
  source: {
    summary: 'central branch protection, signed reviews, trusted signers',
    usage: `gatehouse source <command> [--home DIR] [--json]
  protect REPO (--branch NAME | --tag PATTERN) [--approvals N] [--signed] [--allow-self-approval]
               [--stale-approvals] [--build-config-unchanged] [--accept-head] [--project NAME]...
  unprotect REPO (--branch NAME | --tag PATTERN)
  approve REPO COMMIT --reviewer EMAIL --key SSH_KEY_FILE
  signers add --principal EMAIL (--ssh-key FILE | --gpg-key FILE) [--repo REPO]
  signers remove KEY_ID [--repo REPO]
  signers list
  status [REPO]
  verify REPO COMMIT`,
    examples: ['gatehouse source status', 'gatehouse source signers list'],
  },
} as const satisfies Record<string, CommandHelp>;

export type CommandName = keyof typeof COMMAND_HELP;

/** The usage line(s) of a command, as usage errors print them. */
export function usageOf(name: CommandName): string {
  return COMMAND_HELP[name].usage;
}

/** `gatehouse help CMD` and `gatehouse CMD --help`. */
export function commandHelpText(name: CommandName): string {
  const h: CommandHelp = COMMAND_HELP[name];
  const parts = [`usage: ${h.usage}`, '', h.summary];
  if (h.details !== undefined) parts.push('', h.details);
  parts.push('', 'examples:', ...h.examples.map((e) => `  ${e}`));
  parts.push(
    '',
    'every command takes --home DIR (default $GATEHOUSE_HOME or ~/.local/share/gatehouse) and --json',
  );
  return parts.join('\n');
}

/** The global page: every command with its summary. */
export function globalHelpText(): string {
  const width = Math.max(...Object.keys(COMMAND_HELP).map((n) => n.length)) + 2;
  const lines = Object.entries(COMMAND_HELP).map(([n, h]) => `  ${n.padEnd(width)}${h.summary}`);
  return [
    'usage: gatehouse <command> [options]   (every command takes --home DIR and --json)',
    '',
    ...lines,
    '',
    "`gatehouse help CMD` or `gatehouse CMD --help` for a command's usage and examples; `gatehouse --version`.",
    'exit codes: 0 ok · 1 error · 2 usage · 3 denied or verification failed · 4 quarantined',
  ].join('\n');
}
