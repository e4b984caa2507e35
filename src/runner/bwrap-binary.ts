import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { promisify } from 'node:util';
import { GatehouseError } from '../common/errors.ts';

const execFileAsync = promisify(execFile);

/** Where bubblewrap is looked for when no path is given. */
const BWRAP_CANDIDATES = ['/usr/bin/bwrap', '/usr/local/bin/bwrap', '/bin/bwrap'];

async function findBwrap(explicit: string | undefined): Promise<string> {
  const candidates = explicit === undefined ? BWRAP_CANDIDATES : [explicit];
  for (const path of candidates) {
    try {
      await access(path, fsConstants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  throw new GatehouseError(
    'SANDBOX_UNAVAILABLE',
    `bubblewrap (bwrap) was not found at ${candidates.join(', ')}; install the bubblewrap package`,
  );
}

/**
 * The path of a bwrap binary that can create a sandbox on this host.
 * @throws GatehouseError SANDBOX_UNAVAILABLE when bwrap is missing or cannot sandbox here
 */
export async function checkBwrap(explicit: string | undefined): Promise<string> {
  const bwrap = await findBwrap(explicit);
  try {
    // A real, minimal sandbox: proves bwrap runs *and* that this kernel lets us create namespaces.
    await execFileAsync(
      bwrap,
      ['--unshare-all', '--unshare-user', '--disable-userns', '--ro-bind', '/', '/', '--', '/bin/true'],
      { env: {}, timeout: 10_000 },
    );
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim().split('\n').at(-1) ?? String(e);
    throw new GatehouseError(
      'SANDBOX_UNAVAILABLE',
      `bubblewrap at ${bwrap} cannot create a sandbox here (are unprivileged user namespaces disabled?): ${stderr}`,
      { cause: e },
    );
  }
  return bwrap;
}
