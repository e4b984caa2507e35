import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import { isAbsolute, join, sep } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import type { RunnerInstance } from '../runner/runner.ts';

/** One build output, digested as a stream; the control plane digests the bytes again on receipt. */
export interface CollectedOutput {
  /** Workspace-relative path, as listed in gatehouse.yaml. */
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  /** The file in the workspace, to upload from. */
  readonly file: string;
}

/** The largest single output collected by default (64 GiB: bounded by disk, never by memory). */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024 * 1024;
/** Outputs are hashed in chunks of this size, so memory stays flat whatever their size. */
const CHUNK_BYTES = 1024 * 1024;

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
  // A file listed twice through hard links would be counted (and signed) as two outputs.
  const inodes = new Map<string, string>();
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
    const inode = `${st.dev}:${st.ino}`;
    const twin = inodes.get(inode);
    if (twin !== undefined) throw reject(path, `is a hard link to the output '${twin}'`);
    inodes.set(inode, path);
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
      const hash = createHash('sha256');
      const chunk = Buffer.alloc(Math.min(CHUNK_BYTES, Math.max(1, fst.size)));
      let read = 0;
      for (;;) {
        const r = await handle.read(chunk, 0, chunk.length, read);
        if (r.bytesRead === 0) break;
        hash.update(chunk.subarray(0, r.bytesRead));
        read += r.bytesRead;
        if (read > fst.size) break;
      }
      if (read !== fst.size) throw reject(path, 'changed size while being collected');
      collected.push({ path, sha256: hash.digest('hex'), size: read, file: full });
    } finally {
      await handle.close();
    }
  }
  return collected;
}
