import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../home/config.ts';
import { homePaths, resolveHome } from '../../home/home.ts';
import { credentialsFromEnv } from '../../registry/registry-config.ts';
import { type RevocationList, readRevocations } from '../../signing/revocation-list.ts';
import { type DeployPolicy, parseDeployPolicy } from '../../verify/deploy-policy.ts';
import { parseOciReference } from '../../verify/oci-reference.ts';
import { verifyOciArtifact } from '../../verify/oci-verify.ts';
import { loadRevocations } from '../../verify/revocations.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { loadTrustedRoot, readTextFile } from '../input-files.ts';
import { bold, green, makeOutput, type Output } from '../output.ts';

const USAGE = usageOf('verify');

/** The file the control plane publishes revoked digests in (see docs/admission.md). */
export function revocationsPath(home: string): string {
  return join(home, 'revocations.json');
}

/**
 * The revocation list to check against. Silence is never "nothing revoked": the list comes from a
 * file or the control plane's URL (`--revocations`, signed by the log key when fetched), the
 * control plane (`--server URL`: GET /v1/revocations), or the home's own list; without any of
 * them verification fails, unless `--no-revocation-check` waives the check out loud.
 * @throws UsageError when there is no list and no waiver
 */
async function revocationsFor(
  values: {
    revocations?: string | undefined;
    server?: string | undefined;
    'no-revocation-check'?: boolean | undefined;
  },
  home: string | undefined,
  trustedRoot: unknown,
  out: Output,
): Promise<RevocationList> {
  const sources = [
    values.revocations,
    values.server,
    values['no-revocation-check'] === true ? 'waived' : undefined,
  ];
  if (sources.filter((s) => s !== undefined).length > 1)
    throw new UsageError(`give one of --revocations, --server and --no-revocation-check\nusage: ${USAGE}`);
  if (values.revocations !== undefined) return loadRevocations(values.revocations, { trustedRoot });
  if (values.server !== undefined)
    return loadRevocations(`${values.server.replace(/\/+$/, '')}/v1/revocations`, { trustedRoot });
  if (values['no-revocation-check'] === true) {
    out.warn('the revocation check is waived (--no-revocation-check): a revoked artifact would verify');
    return { version: 1, revoked: [] };
  }
  if (home !== undefined) return readRevocations(revocationsPath(home), true);
  throw new UsageError(
    `no revocation list: pass --revocations F|URL or --server URL (or --no-revocation-check to waive the check)\nusage: ${USAGE}`,
  );
}

/**
 * `gatehouse verify oci://…`: find the attached bundles, verify them, apply the deploy policy.
 * Registry credentials come from GATEHOUSE_REGISTRY_USERNAME / GATEHOUSE_REGISTRY_PASSWORD.
 */
export async function verifyOciCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      policy: { type: 'string' },
      identity: { type: 'string' },
      issuer: { type: 'string' },
      project: { type: 'string' },
      require: { type: 'string' },
      'min-level': { type: 'string' },
      'max-age': { type: 'string' },
      revocations: { type: 'string' },
      server: { type: 'string' },
      'no-revocation-check': { type: 'boolean' },
      'trusted-root': { type: 'string' },
      'plain-http': { type: 'boolean' },
    },
    { min: 1, max: 1, usage: USAGE },
  );
  const out = makeOutput(values.json === true);
  const reference = positionals[0] ?? '';
  parseOciReference(reference); // bad input fails before anything else is read
  const homeRoot = resolveHome(values.home);
  const hasHome = existsSync(homePaths(homeRoot).config);

  const text = values.policy === undefined ? '' : await readTextFile(values.policy, 'deploy policy');
  // Flags override the policy file's fields; with neither, there is no policy to apply.
  const overrides: Record<string, unknown> = {};
  const identityBase = hasHome ? loadConfig(homePaths(homeRoot).config).identityBase : undefined;
  if (values.identity !== undefined) overrides.identity = values.identity;
  if (values.project !== undefined) {
    overrides.projects = [values.project];
    if (identityBase !== undefined && !/^identityBase:/m.test(text)) overrides.identityBase = identityBase;
  }
  if (values.issuer !== undefined) overrides.issuer = values.issuer;
  if (values.require !== undefined) overrides.require = values.require.split(',').map((s) => s.trim());
  if (values['min-level'] !== undefined) overrides.minBuildLevel = Number(values['min-level']);
  if (values['max-age'] !== undefined) overrides.maxAge = values['max-age'];
  if (values.policy === undefined && Object.keys(overrides).length === 0) {
    throw new UsageError(`a deploy policy is needed: --policy F, or --identity / --project\nusage: ${USAGE}`);
  }
  const policy: DeployPolicy = parseDeployPolicy(text, values.policy ?? 'command line', overrides);

  const trustedRoot = await loadTrustedRoot(values['trusted-root'], homeRoot);
  const revocations = await revocationsFor(values, hasHome ? homeRoot : undefined, trustedRoot, out);
  const credentials = credentialsFromEnv();
  const result = await verifyOciArtifact({
    reference,
    trustedRoot,
    policy,
    revocations,
    plainHttp: values['plain-http'] === true,
    ...(credentials === undefined ? {} : { credentials }),
  });
  out.document({ verified: true, ...result });
  out.line(`${green(bold('VERIFIED'))}  ${result.reference}`);
  out.line(`  identity   ${result.identity}`);
  out.line(`  issuer     ${result.issuer}`);
  out.line(`  found via  ${result.discovery}`);
  for (const a of result.attestations) {
    out.line(`  ${a.kind.padEnd(10)} ${a.predicateType}  log #${a.logIndex}, ${a.integratedTime}`);
  }
  if (result.decision !== undefined) {
    out.line(
      `  decision   policy sha256:${result.decision.policyDigest.slice(0, 12)}, SLSA Build L${result.decision.buildLevel}, ${result.decision.timeVerified}`,
    );
  }
  return EXIT.ok;
}
