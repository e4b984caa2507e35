/**
 * Resolving how a home's key files are sealed, from its config: the key-encryption key file
 * (created on first use, mode 0600) or a passphrase from the environment.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import type { KeyProtection } from './key-file.ts';

/** The sealing a home's config asks for. */
export type KeyEncryption =
  | { kind: 'kek-file'; path: string }
  | { kind: 'passphrase'; passphraseEnv: string }
  | { kind: 'none' };

/**
 * The protection for key files of the home at `root`. With `create`, a missing key-encryption
 * key file is generated (32 random bytes, hex, mode 0600, never overwritten).
 * @throws GatehouseError KEY_UNAVAILABLE when the passphrase variable is unset or the KEK file is
 *   missing or malformed
 */
export async function resolveKeyProtection(
  root: string,
  encryption: KeyEncryption,
  options: { create?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<KeyProtection> {
  switch (encryption.kind) {
    case 'none':
      return { kind: 'none' };
    case 'passphrase': {
      const passphrase = (options.env ?? process.env)[encryption.passphraseEnv];
      if (passphrase === undefined || passphrase === '') {
        throw new GatehouseError(
          'KEY_UNAVAILABLE',
          `the key passphrase is not set: export ${encryption.passphraseEnv}`,
        );
      }
      return { kind: 'passphrase', passphrase };
    }
    case 'kek-file': {
      const path = resolve(root, encryption.path);
      if (options.create === true) {
        try {
          await writeFile(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
            throw new GatehouseError('STORE_ERROR', 'cannot write the key-encryption key', {
              where: path,
              cause: e,
            });
          }
        }
      }
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (e) {
        throw new GatehouseError('KEY_UNAVAILABLE', 'cannot read the key-encryption key', {
          where: path,
          cause: e,
        });
      }
      const hex = text.trim();
      if (!/^[0-9a-f]{64}$/.test(hex)) {
        throw new GatehouseError('KEY_UNAVAILABLE', 'the key-encryption key is not 32 bytes of hex', {
          where: path,
        });
      }
      return { kind: 'kek', kek: Buffer.from(hex, 'hex') };
    }
  }
}
