import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { GatehouseError } from '../../common/errors.ts';
import { buildIdentity } from '../../gate/submission.ts';
import { loadConfig } from '../../home/config.ts';
import { homePaths, resolveHome } from '../../home/home.ts';
import { parseBundle } from '../../signing/bundle.ts';
import { parseVkey, type WitnessKey } from '../../tlog/cosignature.ts';
import { verifyArtifactBundle } from '../../verify/verify.ts';
import { commonOptions, parse, UsageError, wholeNumber } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { loadTrustedRoot, readJsonFile } from '../input-files.ts';
import { bold, green, makeOutput } from '../output.ts';
import { verifyOciCommand } from './verify-oci.ts';

const USAGE = usageOf('verify');

/**
 * The witnesses a bundle's checkpoint must carry: every `--witness` key, or `--witness-threshold`
 * of them.
 * @throws GatehouseError BAD_INPUT for a key that does not parse; UsageError for a bad threshold
 */
function requiredWitnesses(
  keys: string[] | undefined,
  threshold: string | undefined,
): { keys: WitnessKey[]; threshold: number } | undefined {
  if (keys === undefined || keys.length === 0) {
    if (threshold !== undefined)
      throw new UsageError(`--witness-threshold needs --witness KEY\nusage: ${USAGE}`);
    return undefined;
  }
  const parsed = keys.map((k) => parseVkey(k));
  if (new Set(parsed.map((k) => k.vkey)).size !== parsed.length)
    throw new UsageError(`the same --witness key is given twice\nusage: ${USAGE}`);
  const n =
    threshold === undefined
      ? parsed.length
      : wholeNumber(threshold, '--witness-threshold', USAGE, { min: 1, digits: 2 });
  if (n > parsed.length)
    throw new UsageError(
      `--witness-threshold ${n} is more than the ${parsed.length} witnesses given\nusage: ${USAGE}`,
    );
  return { keys: parsed, threshold: n };
}

/**
 * The identity and issuer a bundle must carry. Like cosign, there is no default: a bundle
 * verified against "any identity" would accept any project's signature. `--project` names the
 * identity the home's configuration gives that project.
 */
function expectedIdentity(values: {
  identity?: string | undefined;
  issuer?: string | undefined;
  project?: string | undefined;
  home?: string | undefined;
}): { identity: string; issuer: string } {
  if (values.identity !== undefined && values.project !== undefined)
    throw new UsageError(`give --identity or --project, not both\nusage: ${USAGE}`);
  if (values.identity !== undefined) {
    if (values.issuer === undefined) throw new UsageError(`--identity needs --issuer\nusage: ${USAGE}`);
    return { identity: values.identity, issuer: values.issuer };
  }
  if (values.project === undefined)
    throw new UsageError(
      `verify needs the expected signer: --identity URI --issuer URI, or --project NAME\nusage: ${USAGE}`,
    );
  const configPath = homePaths(resolveHome(values.home)).config;
  if (!existsSync(configPath))
    throw new UsageError(
      `--project needs a home (--home) to know the identity base; else pass --identity\nusage: ${USAGE}`,
    );
  const config = loadConfig(configPath);
  return {
    identity: buildIdentity(config.identityBase, values.project),
    issuer: values.issuer ?? config.issuer,
  };
}

async function digestFile(path: string): Promise<Buffer> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'cannot read the artifact', { where: path, cause: e });
  }
  return hash.digest();
}

export async function verifyCommand(argv: string[]): Promise<number> {
  // A registry reference takes its own path (discovery, deploy policy): see verify-oci.ts.
  if (argv.some((a) => a.startsWith('oci://'))) return verifyOciCommand(argv);
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      bundle: { type: 'string' },
      'trusted-root': { type: 'string' },
      identity: { type: 'string' },
      issuer: { type: 'string' },
      project: { type: 'string' },
      witness: { type: 'string', multiple: true },
      'witness-threshold': { type: 'string' },
    },
    { min: 1, max: 1, usage: USAGE },
  );
  if (values.bundle === undefined) throw new UsageError(`--bundle is required\nusage: ${USAGE}`);
  const expected = expectedIdentity(values);
  const witnesses = requiredWitnesses(values.witness, values['witness-threshold']);
  const out = makeOutput(values.json === true);
  const artifact = positionals[0] ?? '';
  const artifactDigest = /^sha256:[0-9a-f]{64}$/.test(artifact)
    ? Buffer.from(artifact.slice(7), 'hex')
    : existsSync(artifact)
      ? await digestFile(artifact)
      : (() => {
          throw new GatehouseError('BAD_INPUT', 'no such artifact file', { where: artifact });
        })();
  const bundle = parseBundle(
    await readJsonFile(values.bundle, 'bundle', { invalid: 'BAD_BUNDLE' }),
    values.bundle,
  );
  const trustedRoot = await loadTrustedRoot(values['trusted-root'], resolveHome(values.home));
  const result = await verifyArtifactBundle({
    artifactDigest,
    bundle,
    trustedRoot: trustedRoot as Record<string, unknown>,
    identity: expected.identity,
    issuer: expected.issuer,
    ...(witnesses === undefined ? {} : { witnesses }),
  });
  out.document({ verified: true, ...result, statement: undefined });
  out.line(`${green(bold('VERIFIED'))}  ${artifact}`);
  out.line(`  identity   ${result.identity}`);
  out.line(`  issuer     ${result.issuer}`);
  out.line(`  predicate  ${result.predicateType}`);
  out.line(`  log entry  #${result.logIndex}, integrated ${result.integratedTime.toISOString()}`);
  for (const t of result.timestamps) out.line(`  timestamp  ${t.toISOString()} (RFC 3161, trusted TSA)`);
  if (witnesses !== undefined)
    out.line(`  witnessed  ${result.witnesses.join(', ')} (${witnesses.threshold} required)`);
  return EXIT.ok;
}
