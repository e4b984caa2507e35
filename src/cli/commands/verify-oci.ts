import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../home/config.ts';
import { homePaths, resolveHome } from '../../home/home.ts';
import { credentialsFromEnv } from '../../registry/registry-config.ts';
import { readRevocations } from '../../signing/revocation-list.ts';
import { type DeployPolicy, parseDeployPolicy } from '../../verify/deploy-policy.ts';
import { parseOciReference } from '../../verify/oci-reference.ts';
import { verifyOciArtifact } from '../../verify/oci-verify.ts';
import { loadRevocations } from '../../verify/revocations.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { loadTrustedRoot, readTextFile } from '../input-files.ts';
import { bold, green, makeOutput } from '../output.ts';

const USAGE =
  'gatehouse verify oci://HOST/REPO@sha256:HEX [--policy F] [--identity URI | --project NAME] [--issuer URI] ' +
  '[--require provenance,sbom,vsa] [--min-level N] [--max-age 30d] [--revocations F|URL] [--trusted-root F] ' +
  '[--plain-http] [--home DIR] [--json]';

/** The file the control plane publishes revoked digests in (see docs/admission.md). */
export function revocationsPath(home: string): string {
  return join(home, 'revocations.json');
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
  // --revocations takes a file or the control plane's URL (GET /v1/revocations, signed by the log key).
  const revocations =
    values.revocations !== undefined
      ? await loadRevocations(values.revocations, { trustedRoot })
      : hasHome
        ? await readRevocations(revocationsPath(homeRoot), true)
        : { version: 1 as const, revoked: [] };
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
