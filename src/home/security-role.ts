import { createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { parsePolicy } from '../policy/policy.ts';
import { DEFAULT_POLICY_NAME, PolicyService, policyAct } from '../policy/policy-service.ts';
import { FileKeySigner } from '../signing/file-key-signer.ts';
import { homeKeyProtection, sealPlainKeyFile } from '../signing/home-keys.ts';
import { isEncryptedKeyFile, type KeyProtection } from '../signing/key-file.ts';
import { keyIdOf, signSecurityAct, type TrustedKey } from '../signing/security-act.ts';
import type { Store } from '../store/store.ts';
import { loadConfig } from './config.ts';

/** The security role's key in a home: whoever holds it publishes policies and triages. */
export function securityKeyPath(keysDir: string): string {
  return join(keysDir, 'security.key.pem');
}

/** The public half, which the control plane trusts. */
export function securityPublicKeyPath(keysDir: string): string {
  return join(keysDir, 'security.pub.pem');
}

/** Further trusted security keys (one PEM public key per file), e.g. a team's offline key. */
export function trustedSecurityKeysDir(keysDir: string): string {
  return join(keysDir, 'security-trusted');
}

/** The security keys the control plane trusts: the home's own and any in `security-trusted/`. */
export async function trustedSecurityKeys(keysDir: string): Promise<TrustedKey[]> {
  const pems: string[] = [];
  const own = securityPublicKeyPath(keysDir);
  if (existsSync(own)) pems.push(await readFile(own, 'utf8'));
  const dir = trustedSecurityKeysDir(keysDir);
  if (existsSync(dir))
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.pem')).sort())
      pems.push(await readFile(join(dir, f), 'utf8'));
  return pems.map((pem, i) => {
    try {
      const spki = new Uint8Array(createPublicKey(pem).export({ format: 'der', type: 'spki' }));
      return { keyId: keyIdOf(spki), publicKeyPem: pem };
    } catch (cause) {
      throw new GatehouseError('BAD_CONFIG', `trusted security key ${i} is not a PEM public key`, {
        where: dir,
        cause,
      });
    }
  });
}

/** The purpose bound into the security key's sealed file. */
export const SECURITY_KEY_PURPOSE = 'security';

/** The home whose own security key `path` is (`<root>/keys/security.key.pem` beside a config). */
function homeOwning(path: string): string | undefined {
  const keysDir = dirname(path);
  const root = dirname(keysDir);
  return basename(keysDir) === 'keys' &&
    basename(path) === 'security.key.pem' &&
    existsSync(join(root, 'config.json'))
    ? root
    : undefined;
}

/**
 * Open a security key file with a known protection. A sealed file needs `protection`; a plain one
 * is accepted unless `requireSealed` (the home's own key where the home seals its keys).
 */
async function openSecurityKey(
  path: string,
  protection: KeyProtection | undefined,
  requireSealed: boolean,
): Promise<FileKeySigner> {
  const text = await readFile(path, 'utf8').catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'STORE_ERROR';
    throw new GatehouseError(code, 'cannot read the key file', { where: path, cause: e });
  });
  if (!isEncryptedKeyFile(text)) {
    if (requireSealed) {
      throw new GatehouseError(
        'BAD_CONFIG',
        'the security key is not encrypted, but the home requires encrypted keys: run `gatehouse init` to seal it',
        { where: path },
      );
    }
    return FileKeySigner.load(path, { kind: 'none' }, SECURITY_KEY_PURPOSE);
  }
  if (protection === undefined || protection.kind === 'none') {
    throw new GatehouseError(
      'KEY_UNAVAILABLE',
      'the security key is sealed, and no home with key protection was given to open it (--home)',
      { where: path },
    );
  }
  return FileKeySigner.load(path, protection, SECURITY_KEY_PURPOSE);
}

/**
 * Load the security signing key: the home's own, or one given with `--key`. A sealed file is
 * opened with the key protection of the home it lies in (`<home>/keys/security.key.pem`), else of
 * `options.home`, else of $GATEHOUSE_HOME; a plain PKCS#8 file is accepted too, except the home's
 * own key where that home seals its keys (run `gatehouse init` to seal it).
 * @throws GatehouseError NOT_FOUND when it is not there: the caller does not hold the security
 *   role; KEY_UNAVAILABLE when the passphrase or key-encryption key is missing or wrong;
 *   BAD_CONFIG for the home's own key left plain where keys are sealed
 */
export async function loadSecuritySigner(
  path: string,
  options: { home?: string } = {},
): Promise<FileKeySigner> {
  const abs = resolve(path);
  const own = homeOwning(abs);
  const env = process.env.GATEHOUSE_HOME;
  const root =
    own ??
    (options.home !== undefined
      ? resolve(options.home)
      : env !== undefined && env !== '' && existsSync(join(env, 'config.json'))
        ? resolve(env)
        : undefined);
  try {
    const keysConfig = root === undefined ? undefined : loadConfig(join(root, 'config.json')).keys;
    const sealed = isEncryptedKeyFile(await readFile(abs, 'utf8').catch(() => ''));
    const protection = root === undefined || !sealed ? undefined : await homeKeyProtection(root, keysConfig);
    return await openSecurityKey(abs, protection, own !== undefined && keysConfig !== undefined);
  } catch (e) {
    if (e instanceof GatehouseError && (e.code === 'KEY_UNAVAILABLE' || e.code === 'BAD_CONFIG')) throw e;
    throw new GatehouseError(
      'NOT_FOUND',
      'the security key is not available: publishing policies and triage need the security role key (--key)',
      { where: path, cause: e },
    );
  }
}

/**
 * Set up the security role in a home (idempotent): its key pair, and the first version of the
 * default policy, signed by that key, when no version is published yet.
 * @returns what it created
 */
export async function initSecurityRole(
  keysDir: string,
  store: Store,
  policyText: string,
  protection: KeyProtection = { kind: 'none' },
): Promise<string[]> {
  const created: string[] = [];
  const keyPath = securityKeyPath(keysDir);
  // The role's credential is sealed like the home's keys (with the passphrase when one is set).
  if (!existsSync(keyPath)) {
    const signer = await FileKeySigner.generate(keyPath, protection, SECURITY_KEY_PURPOSE);
    await writeFile(securityPublicKeyPath(keysDir), signer.publicKeyPem(), { mode: 0o644 });
    created.push('keys/security.key.pem');
  } else {
    // A home that sealed its other keys before the security key was sealed: seal it now.
    if (await sealPlainKeyFile(keyPath, protection, SECURITY_KEY_PURPOSE))
      created.push('keys/security.key.pem (sealed)');
    if (!existsSync(securityPublicKeyPath(keysDir))) {
      const signer = await openSecurityKey(keyPath, protection, false);
      await writeFile(securityPublicKeyPath(keysDir), signer.publicKeyPem(), { mode: 0o644 });
    }
  }
  if ((await store.policies.latest(DEFAULT_POLICY_NAME)) === undefined) {
    const signer = await openSecurityKey(keyPath, protection, false);
    const service = new PolicyService({ store, trustedKeys: await trustedSecurityKeys(keysDir) });
    const name = parsePolicy(policyText, 'policy.yaml').name;
    const record = await service.publish(
      policyText,
      1,
      await signSecurityAct(policyAct(name, 1, policyText), signer),
      'policy.yaml',
    );
    created.push(`policy ${record.name} version ${record.version}`);
  }
  return created;
}
