import { readFile } from 'node:fs/promises';
import { GatehouseError } from '../common/errors.ts';
import { withHome } from './home-access.ts';

/** The code a command gives a file it cannot read: a bad argument, or a missing document. */
type UnreadableCode = 'BAD_INPUT' | 'NOT_FOUND';

/** Read the file at `path` with `read`; a failure is the `code` error "cannot read the <what>". */
async function readNamed<T>(
  path: string,
  what: string,
  code: UnreadableCode,
  read: (path: string) => Promise<T>,
): Promise<T> {
  try {
    return await read(path);
  } catch (e) {
    throw new GatehouseError(code, `cannot read the ${what}`, { where: path, cause: e });
  }
}

/**
 * Read a file named on the command line.
 * @throws GatehouseError `code` (default BAD_INPUT) "cannot read the <what>", where the path
 */
export function readBytesFile(
  path: string,
  what: string,
  code: UnreadableCode = 'BAD_INPUT',
): Promise<Buffer> {
  return readNamed(path, what, code, (p) => readFile(p));
}

/**
 * Read a UTF-8 text file named on the command line.
 * @throws GatehouseError `code` (default BAD_INPUT) "cannot read the <what>", where the path
 */
export function readTextFile(
  path: string,
  what: string,
  code: UnreadableCode = 'BAD_INPUT',
): Promise<string> {
  return readNamed(path, what, code, (p) => readFile(p, 'utf8'));
}

/**
 * Read a JSON file named on the command line: a file that cannot be read and one that is not JSON
 * are told apart.
 * @throws GatehouseError `unreadable` (default BAD_INPUT) or `invalid` (default BAD_INPUT)
 */
export async function readJsonFile(
  path: string,
  what: string,
  codes: { unreadable?: UnreadableCode; invalid?: 'BAD_INPUT' | 'BAD_BUNDLE' } = {},
): Promise<unknown> {
  const text = await readTextFile(path, what, codes.unreadable);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new GatehouseError(codes.invalid ?? 'BAD_INPUT', `the ${what} is not valid JSON`, {
      where: path,
      cause: e,
    });
  }
}

/** The trusted root of `--trusted-root FILE`, else the one of the home at `homeRoot`. */
export async function loadTrustedRoot(file: string | undefined, homeRoot: string): Promise<unknown> {
  if (file !== undefined) return readJsonFile(file, 'trusted root');
  return withHome(homeRoot, (home) => home.trustedRoot());
}
