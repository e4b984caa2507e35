import { createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { FileKeySigner } from '../signing/file-key-signer.ts';
import type { Store } from '../store/store.ts';
import { DEFAULT_POLICY_NAME, PolicyService } from './policy-service.ts';
import { keyIdOf, SECURITY_PAYLOAD, signSecurityAct, type TrustedKey } from './signed-policy.ts';

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

/**
 * Load the security signing key (the home's, or one given with `--key`).
 * @throws GatehouseError NOT_FOUND when it is not there: the caller does not hold the security role
 */
export async function loadSecuritySigner(path: string): Promise<FileKeySigner> {
  try {
    return await FileKeySigner.load(path);
  } catch (e) {
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
export async function initSecurityRole(keysDir: string, store: Store, policyText: string): Promise<string[]> {
  const created: string[] = [];
  const keyPath = securityKeyPath(keysDir);
  if (!existsSync(keyPath)) {
    const signer = await FileKeySigner.generate(keyPath, { kind: 'none' }, 'security');
    await writeFile(securityPublicKeyPath(keysDir), signer.publicKeyPem(), { mode: 0o644 });
    created.push('keys/security.key.pem');
  } else if (!existsSync(securityPublicKeyPath(keysDir))) {
    const signer = await loadSecuritySigner(keyPath);
    await writeFile(securityPublicKeyPath(keysDir), signer.publicKeyPem(), { mode: 0o644 });
  }
  if ((await store.policies.latest(DEFAULT_POLICY_NAME)) === undefined) {
    const signer = await loadSecuritySigner(keyPath);
    const service = new PolicyService({ store, trustedKeys: await trustedSecurityKeys(keysDir) });
    const record = await service.publish(
      policyText,
      await signSecurityAct(SECURITY_PAYLOAD.policy, policyText, signer),
      'policy.yaml',
    );
    created.push(`policy ${record.name} version ${record.version}`);
  }
  return created;
}
