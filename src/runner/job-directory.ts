import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { GatehouseError } from '../common/errors.ts';
import { processAlive } from '../common/process.ts';
import { ETC_FILES } from './sandbox-profile.ts';

const execFileAsync = promisify(execFile);

/** Source entries never copied into a workspace. */
const EXCLUDED_SOURCE = new Set(['.git', 'node_modules']);

/** A job's private host directory: everything the sandbox is made from, removed at destroy. */
export interface JobDirectory {
  readonly root: string;
  /** The job's own size-limited tmpfs, bound as /workspace. */
  readonly workspace: string;
  /** The generated /etc files, one per {@link ETC_FILES} entry (see {@link etcFilePath}). */
  readonly etcDir: string;
  /** The compiled seccomp program bwrap reads. */
  readonly seccompFile: string;
  /** Where the fetch phase's egress forwarder is copied to. */
  readonly forwarderFile: string;
}

/** Host path of the file that is bound at `dest`, one of {@link ETC_FILES}. */
export function etcFilePath(etcDir: string, dest: string): string {
  return join(etcDir, dest.replaceAll('/', '_'));
}

/**
 * Make a job's directory with its workspace tmpfs mounted, and let `fill` complete it. When
 * anything fails, nothing of it stays behind.
 * @throws GatehouseError SANDBOX_UNAVAILABLE when the workspace tmpfs cannot be mounted
 */
export async function createJobDirectory<T>(
  tempRoot: string,
  jobId: string,
  workspaceBytes: number,
  fill: (dir: JobDirectory) => Promise<T>,
): Promise<T> {
  // mkdtemp makes the directory 0700: other host users cannot look into or race the job.
  const root = await mkdtemp(join(tempRoot, `gatehouse-${jobId}-`));
  const dir: JobDirectory = {
    root,
    workspace: join(root, 'workspace'),
    etcDir: join(root, 'etc'),
    seccompFile: join(root, 'seccomp.bpf'),
    forwarderFile: join(root, 'egress-forwarder.mjs'),
  };
  let mounted = false;
  try {
    // Who owns the directory: a sweep removes it once that process is gone (a SIGKILLed agent).
    await writeFile(join(root, OWNER_FILE), `${process.pid}\n`, { mode: 0o600 });
    await mkdir(dir.workspace, { mode: 0o700 });
    await mkdir(dir.etcDir, { mode: 0o700 });
    await mountWorkspace(dir.workspace, workspaceBytes);
    mounted = true;
    return await fill(dir);
  } catch (e) {
    if (mounted) await unmount(dir.workspace);
    await rm(root, { recursive: true, force: true });
    throw e;
  }
}

async function mountWorkspace(workspace: string, workspaceBytes: number): Promise<void> {
  // The workspace is its own tmpfs, so that filling it fills only it (ENOSPC), never the host.
  await execFileAsync(
    'mount',
    ['-t', 'tmpfs', '-o', `size=${workspaceBytes},mode=0700,nosuid,nodev`, 'gatehouse-workspace', workspace],
    { env: {}, timeout: 10_000 },
  ).catch((e: unknown) => {
    throw new GatehouseError('SANDBOX_UNAVAILABLE', `cannot mount the workspace tmpfs: ${String(e)}`, {
      cause: e,
    });
  });
}

const OWNER_FILE = '.owner';

/**
 * Remove the job directories under `tempRoot` whose owning process is gone (an agent killed with
 * SIGKILL cannot clean up after itself), unmounting their workspaces first.
 * @returns the directories removed
 */
export async function sweepJobDirectories(tempRoot: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(tempRoot).catch(() => [] as string[])) {
    if (!name.startsWith('gatehouse-job-')) continue;
    const root = join(tempRoot, name);
    const owner = Number((await readFile(join(root, OWNER_FILE), 'utf8').catch(() => '')).trim());
    // Without an owner file the directory is being made, or predates owners: leave it.
    if (!Number.isSafeInteger(owner) || owner <= 0 || processAlive(owner)) continue;
    await removeJobDirectory({
      root,
      workspace: join(root, 'workspace'),
      etcDir: join(root, 'etc'),
      seccompFile: join(root, 'seccomp.bpf'),
      forwarderFile: join(root, 'egress-forwarder.mjs'),
    });
    removed.push(root);
  }
  return removed;
}

/** Remove a job's directory, unmounting its workspace first. */
export async function removeJobDirectory(dir: JobDirectory): Promise<void> {
  if (await isMountPoint(dir.workspace)) await unmount(dir.workspace);
  await rm(dir.root, { recursive: true, force: true, maxRetries: 3 });
}

async function unmount(dir: string): Promise<void> {
  // Lazy: a process that somehow still holds the mount cannot keep the job's files alive.
  await execFileAsync('umount', ['-l', dir], { env: {}, timeout: 10_000 }).catch(() => undefined);
}

async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(dir), stat(dirname(dir))]);
    return self.dev !== parent.dev;
  } catch {
    return false;
  }
}

/** Write the sandbox's generated /etc files into the job's directory. */
export async function writeEtcFiles(etcDir: string): Promise<void> {
  for (const [dest, content] of Object.entries(ETC_FILES)) {
    await writeFile(etcFilePath(etcDir, dest), content, { mode: 0o644 });
  }
}

/**
 * Copy the source into the workspace.
 * @throws GatehouseError BAD_INPUT when the source cannot be copied
 */
export async function copySource(sourceDir: string, workspace: string): Promise<void> {
  try {
    await cp(sourceDir, workspace, {
      recursive: true,
      // Symlinks are copied as symlinks, never followed: a link to /root/.ssh stays a dangling
      // link inside the sandbox instead of becoming a copy of the host's keys.
      verbatimSymlinks: true,
      dereference: false,
      preserveTimestamps: false,
      filter: (src) =>
        !relative(sourceDir, src)
          .split(sep)
          .some((part) => EXCLUDED_SOURCE.has(part)),
    });
  } catch (e) {
    throw new GatehouseError(
      'BAD_INPUT',
      `cannot copy the source ${sourceDir} into the workspace: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
}

/** Whether a workspace tmpfs has (almost) no room left. */
export async function isFull(dir: string): Promise<boolean> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize < 64 * 1024;
  } catch {
    return false;
  }
}
