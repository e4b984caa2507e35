import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';

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
  const info = await stat(path).catch((e: unknown) => {
    throw new GatehouseError('BAD_CONFIG', `cannot read the console viewer token: ${(e as Error).message}`, {
      where: path,
      cause: e,
    });
  });
  if ((info.mode & 0o077) !== 0)
    throw new GatehouseError(
      'BAD_CONFIG',
      'the console viewer token file is readable by others: chmod 600 it',
      {
        where: path,
      },
    );
  const token = (await readFile(path, 'utf8')).trim();
  if (token.length < 16)
    throw new GatehouseError('BAD_CONFIG', 'the console viewer token is shorter than 16 characters', {
      where: path,
    });
  return { token, path };
}
