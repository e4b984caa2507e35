/**
 * A home as a witness of other logs: its Ed25519 witness key (`keys/witness.key.pem`, sealed like
 * the other keys, made on first use), its name, and the logs it watches, taken from their
 * exported trusted roots.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { readPrivateKeyFile } from '../signing/file-key-signer.ts';
import { homeKeyProtection } from '../signing/home-keys.ts';
import { sealPrivateKey } from '../signing/key-file.ts';
import { parseTrustedRoot } from '../signing/trust-root.ts';
import { formatVkey } from '../tlog/cosignature.ts';
import { Witness, type WitnessedLog } from '../tlog/witness.ts';
import { loadConfig } from './config.ts';
import { homePaths, type OpenHome } from './home.ts';

/** A home's witness identity. */
export interface WitnessIdentity {
  name: string;
  key: KeyObject;
  /** The verifier key logs and verifiers configure. */
  vkey: string;
}

/** The default witness name of a home: `<identityBase host>/witness`. */
export function defaultWitnessName(root: string): string {
  return `${new URL(loadConfig(homePaths(root).config).identityBase).host}/witness`;
}

/**
 * The home's witness key, made (and sealed) on first use.
 * @throws GatehouseError HOME_NOT_INITIALIZED, KEY_UNAVAILABLE, BAD_CONFIG
 */
export async function witnessIdentity(root: string, name?: string): Promise<WitnessIdentity> {
  const p = homePaths(root);
  const config = loadConfig(p.config);
  const protection = await homeKeyProtection(root, config.keys);
  const path = join(p.keys, 'witness.key.pem');
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    const text =
      protection.kind === 'none'
        ? privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
        : sealPrivateKey(privateKey, protection, 'witness');
    await writeFile(path, text, { mode: 0o600, flag: 'wx' });
  }
  const key = await readPrivateKeyFile(path, protection, 'witness');
  if (key.asymmetricKeyType !== 'ed25519')
    throw new GatehouseError('BAD_CONFIG', 'the witness key is not an Ed25519 key', { where: path });
  const witnessName = name ?? defaultWitnessName(root);
  return { name: witnessName, key, vkey: formatVkey(witnessName, createPublicKey(key)) };
}

/**
 * The logs named by trusted roots: each root's current transparency log (the key whose window is
 * open), by its origin (the tlog base URL without its scheme).
 * @throws GatehouseError BAD_CONFIG
 */
export function logsOfTrustedRoots(roots: readonly { json: unknown; where: string }[]): WitnessedLog[] {
  return roots.map(({ json, where }) => {
    const root = parseTrustedRoot(json, where);
    const log = root.tlogs.find((t) => t.validFor.end === undefined) ?? root.tlogs.at(-1);
    if (log === undefined)
      throw new GatehouseError('BAD_CONFIG', 'the trusted root lists no transparency log', { where });
    const origin = log.baseUrl.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
    return { origin, key: { name: origin, spkiDer: log.spkiDer } };
  });
}

/** The witness a home runs over the given logs. */
export async function openWitness(
  home: OpenHome,
  logs: readonly WitnessedLog[],
  name?: string,
): Promise<{ witness: Witness; identity: WitnessIdentity }> {
  const identity = await witnessIdentity(home.root, name);
  return {
    witness: new Witness({ name: identity.name, key: identity.key, logs, store: home.store.witness }),
    identity,
  };
}
