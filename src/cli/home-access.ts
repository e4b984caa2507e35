/** What the commands do with a home: open it for one piece of work, and sign as its security role. */
import { homePaths, type OpenHome, openHome } from '../home/home.ts';
import { loadSecuritySigner, securityKeyPath } from '../home/security-role.ts';
import type { FileKeySigner } from '../signing/file-key-signer.ts';

/** Open the home at `root`, run `work` with it, and close it whatever happened. */
export async function withHome<T>(root: string, work: (home: OpenHome) => Promise<T>): Promise<T> {
  const home = await openHome(root);
  try {
    return await work(home);
  } finally {
    await home.close();
  }
}

/** The security role's signer: the key file of `--key`, else the home's own security key. */
export function securitySigner(root: string, key: string | undefined): Promise<FileKeySigner> {
  return loadSecuritySigner(key ?? securityKeyPath(homePaths(root).keys), { home: root });
}
