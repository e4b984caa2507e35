import { constants as fsConstants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import { isAbsolute, join, sep } from 'node:path';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { RunnerInstance } from '../runner/runner.ts';

/** One build output, read once: its digest is of exactly these bytes. */
export interface CollectedOutput {
  /** Workspace-relative path, as listed in gatehouse.yaml. */
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly bytes: Uint8Array;
}

/** The largest single output collected by default (1 GiB). */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;

function reject(path: string, why: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'OUTPUT_REJECTED',
    `output '${path}' ${why}`,
    cause === undefined ? { where: path } : { where: path, cause },
  );
}

/**
 * Read the build's declared outputs from a runner's workspace, refusing anything that is missing,
 * is not a regular file, is or passes through a symlink, or resolves outside the workspace.
 * @throws GatehouseError OUTPUT_REJECTED naming the output
 */
export async function collectOutputs(
  instance: Pick<RunnerInstance, 'workspace'>,
  outputs: readonly string[],
  options: { maxBytes?: number } = {},
): Promise<CollectedOutput[]> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const root = await realpath(instance.workspace);
  const collected: CollectedOutput[] = [];
  for (const path of outputs) {
    // The config parser already refuses these; checked again because this is the trust boundary.
    if (path === '' || isAbsolute(path) || path.split('/').includes('..') || path.includes('\0')) {
      throw reject(path, 'is not a path inside the workspace');
    }
    const full = join(root, path);
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(full);
    } catch (e) {
      throw reject(path, 'was not produced by the build', e);
    }
    if (st.isSymbolicLink()) throw reject(path, 'is a symlink; outputs must be regular files');
    if (!st.isFile()) throw reject(path, 'is not a regular file');
    // realpath catches a symlinked *parent* directory: the file may be real but live elsewhere.
    let real: string;
    try {
      real = await realpath(full);
    } catch (e) {
      throw reject(path, 'cannot be resolved', e);
    }
    if (real !== full || !real.startsWith(root + sep)) {
      throw reject(path, 'resolves outside the workspace (through a symlinked directory)');
    }
    if (st.size > maxBytes) throw reject(path, `is larger than the limit of ${maxBytes} bytes`);
    // O_NOFOLLOW and the inode check close the gap between the checks above and the read.
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(full, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    } catch (e) {
      throw reject(path, 'cannot be opened', e);
    }
    try {
      const fst = await handle.stat();
      if (!fst.isFile() || fst.ino !== st.ino || fst.dev !== st.dev)
        throw reject(path, 'changed while being collected');
      if (fst.size > maxBytes) throw reject(path, `is larger than the limit of ${maxBytes} bytes`);
      const bytes = new Uint8Array(fst.size);
      let read = 0;
      while (read < bytes.length) {
        const r = await handle.read(bytes, read, bytes.length - read, read);
        if (r.bytesRead === 0) break;
        read += r.bytesRead;
      }
      if (read !== bytes.length) throw reject(path, 'changed size while being collected');
      collected.push({ path, sha256: sha256Hex(bytes), size: bytes.length, bytes });
    } finally {
      await handle.close();
    }
  }
  return collected;
}
