import { createPublicKey, type KeyObject } from 'node:crypto';
import { GatehouseError } from '../../common/errors.ts';
import { parseTrustedRoot } from '../../signing/trust-root.ts';
import { parseSigstoreBundle } from '../../verify/sigstore-bundle.ts';
import {
  type ArtifactInput,
  type SigstoreVerified,
  verifySigstoreBundle,
} from '../../verify/sigstore-verifier.ts';
import { parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { readBytesFile, readJsonFile } from '../input-files.ts';

const USAGE = usageOf('verify-bundle');

/** Where the trusted root comes from when `--trusted-root` is not given (the pinned public-good root). */
export const TRUSTED_ROOT_ENV = 'GATEHOUSE_SIGSTORE_TRUSTED_ROOT';

/**
 * `gatehouse verify-bundle`: the sigstore-conformance client protocol. Exit 0 when the bundle
 * verifies, non-zero (3 refused, 1 unreadable input, 2 usage) otherwise.
 */
export async function verifyBundleCommand(argv: string[]): Promise<number> {
  const result = await verifyBundleArgs(argv);
  process.stdout.write(
    `OK: ${result.identity ?? 'key'} at ${result.times.map((t) => t.toISOString()).join(', ')}\n`,
  );
  return EXIT.ok;
}

/**
 * Parse the protocol's arguments, read the files and verify; returns what was verified.
 * @throws UsageError, GatehouseError (BAD_INPUT, BAD_BUNDLE, BAD_CONFIG and every verification code)
 */
export async function verifyBundleArgs(argv: string[]): Promise<SigstoreVerified> {
  const { values, positionals } = parse(
    argv,
    {
      bundle: { type: 'string' },
      'certificate-identity': { type: 'string' },
      'certificate-oidc-issuer': { type: 'string' },
      key: { type: 'string' },
      'trusted-root': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    { min: 1, max: 1, usage: USAGE },
  );
  if (values.bundle === undefined) throw new UsageError(`--bundle is required\nusage: ${USAGE}`);
  const byIdentity =
    values['certificate-identity'] !== undefined || values['certificate-oidc-issuer'] !== undefined;
  if (byIdentity === (values.key !== undefined)) {
    throw new UsageError(
      `give either --certificate-identity and --certificate-oidc-issuer, or --key\nusage: ${USAGE}`,
    );
  }
  if (
    byIdentity &&
    (values['certificate-identity'] === undefined || values['certificate-oidc-issuer'] === undefined)
  ) {
    throw new UsageError(`--certificate-identity and --certificate-oidc-issuer go together\nusage: ${USAGE}`);
  }
  const rootPath = values['trusted-root'] ?? process.env[TRUSTED_ROOT_ENV];
  if (rootPath === undefined || rootPath === '') {
    throw new UsageError(
      `no trusted root: pass --trusted-root F or set ${TRUSTED_ROOT_ENV}\nusage: ${USAGE}`,
    );
  }
  const trustedRoot = parseTrustedRoot(await readJsonFile(rootPath, 'trusted root'), rootPath);
  const bundle = parseSigstoreBundle(await readBytesFile(values.bundle, 'bundle'), values.bundle);
  let publicKey: KeyObject | undefined;
  if (values.key !== undefined) {
    try {
      publicKey = createPublicKey(await readBytesFile(values.key, 'public key'));
    } catch (e) {
      if (e instanceof GatehouseError) throw e;
      throw new GatehouseError('BAD_INPUT', 'the key is not a PEM public key', {
        where: values.key,
        cause: e,
      });
    }
  }
  const target = positionals[0] ?? '';
  const artifact: ArtifactInput = /^sha256:[0-9a-f]{64}$/.test(target)
    ? { sha256: Buffer.from(target.slice(7), 'hex') }
    : { bytes: await readBytesFile(target, 'artifact') };
  return verifySigstoreBundle({
    bundle,
    trustedRoot,
    artifact,
    ...(publicKey === undefined ? {} : { publicKey }),
    ...(values['certificate-identity'] === undefined ? {} : { identity: values['certificate-identity'] }),
    ...(values['certificate-oidc-issuer'] === undefined ? {} : { issuer: values['certificate-oidc-issuer'] }),
  });
}
