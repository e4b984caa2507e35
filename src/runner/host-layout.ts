import { constants as fsConstants } from 'node:fs';
import { access, lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { detectCgroups, type LimitEnforcement } from './limits.ts';

/**
 * Host /etc entries that are read-only bound in: both are derived from /usr and hold no secrets,
 * and without them Debian's alternatives (awk, editor…) and the dynamic linker cache break.
 */
const ETC_HOST_BINDS = ['/etc/alternatives', '/etc/ld.so.cache'];

/** Top-level directories that may be symlinks into /usr (merged /usr) or real directories. */
export const ROOT_DIRS = ['/bin', '/lib', '/lib64', '/lib32', '/libx32', '/sbin'];

/** How the host's root file system is laid out, as far as the sandbox mirrors it. */
export interface HostLayout {
  /** For each top-level dir: a symlink target, 'dir' for a real directory, absent when missing. */
  readonly rootDirs: Readonly<Record<string, { kind: 'symlink'; target: string } | { kind: 'dir' }>>;
  /** Which of {@link ETC_HOST_BINDS} exist on the host. */
  readonly etcBinds: readonly string[];
  /** What enforces resource limits here. */
  readonly enforcement: LimitEnforcement;
}

/** Inspect the host so that the sandbox mirrors its /bin, /lib… exactly as the host has them. */
export async function detectHostLayout(root = '/'): Promise<HostLayout> {
  const rootDirs: Record<string, { kind: 'symlink'; target: string } | { kind: 'dir' }> = {};
  for (const dir of ROOT_DIRS) {
    try {
      const st = await lstat(join(root, dir));
      if (st.isSymbolicLink()) rootDirs[dir] = { kind: 'symlink', target: await readlink(join(root, dir)) };
      else if (st.isDirectory()) rootDirs[dir] = { kind: 'dir' };
    } catch {
      // Absent on this host: nothing to mirror.
    }
  }
  const etcBinds: string[] = [];
  for (const path of ETC_HOST_BINDS) {
    try {
      await access(join(root, path), fsConstants.R_OK);
      etcBinds.push(path);
    } catch {
      // Absent: not bound.
    }
  }
  return { rootDirs, etcBinds, enforcement: await detectCgroups() };
}
