import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';

/** A console token from its file, which must be readable by its owner alone. */
async function readTokenFile(path: string, what: string): Promise<string> {
  const info = await stat(path).catch((e: unknown) => {
    throw new GatehouseError('BAD_CONFIG', `cannot read the console ${what}: ${(e as Error).message}`, {
      where: path,
      cause: e,
    });
  });
  if ((info.mode & 0o077) !== 0)
    throw new GatehouseError('BAD_CONFIG', `the console ${what} file is readable by others: chmod 600 it`, {
      where: path,
    });
  const token = (await readFile(path, 'utf8')).trim();
  if (token.length < 16)
    throw new GatehouseError('BAD_CONFIG', `the console ${what} is shorter than 16 characters`, {
      where: path,
    });
  return token;
}

/**
 * The console's viewer token: from `file` (the server's --viewer-token-file, else config.json
 * `console.viewerTokenFile`, else `keys/viewer-token`), made there (mode 0600) on first start when
 * it is the default and missing. The file must be readable by its owner alone.
 * @throws GatehouseError BAD_CONFIG naming the file
 */
export async function loadViewerToken(
  root: string,
  file: string | undefined,
): Promise<{ token: string; path: string }> {
  const path = file === undefined ? join(root, 'keys', 'viewer-token') : resolve(root, file);
  if (file === undefined && !existsSync(path))
    await writeFile(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' }).catch(
      () => undefined,
    );
  return { token: await readTokenFile(path, 'viewer token'), path };
}

/**
 * The console's static triager token (config.json `console.triagerTokenFile`, relative to the
 * home), when one is configured: never made by default, since it admits triage acts.
 * @throws GatehouseError BAD_CONFIG naming the file (unreadable, readable by others, too short,
 *   or the same as the viewer token)
 */
export async function loadTriagerToken(
  root: string,
  file: string | undefined,
  viewerToken: string,
): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const path = resolve(root, file);
  const token = await readTokenFile(path, 'triager token');
  // One token for both roles would make every viewer a triager.
  if (token === viewerToken)
    throw new GatehouseError('BAD_CONFIG', 'the console triager token is the viewer token', { where: path });
  return token;
}
