/**
 * Where a job's outputs wait for the gate: received as streams (never whole files in memory),
 * digested by the control plane from the bytes it received, and kept under the digest it computed,
 * never the one the runner claims. The gate then judges, catalogues and promotes exactly these
 * files; a job's staged files are removed once it is decided or ends.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GatehouseError } from '../common/errors.ts';

/** An output as the control plane received it. */
export interface StagedOutput {
  /** Workspace-relative name the runner gave it. */
  name: string;
  /** SHA-256 of the bytes received (hex), computed here. */
  sha256: string;
  size: number;
  /** The file holding those bytes. */
  path: string;
}

/** The largest output accepted by default (64 GiB: bounded by disk, never by memory). */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024 * 1024;
const JOB_ID = /^job-[0-9a-f-]{36}$/;
const MiB = 1024 * 1024;

/** The staging area of a control plane, a directory in its home. */
export class OutputStaging {
  readonly #root: string;
  readonly #maxBytes: number;

  constructor(options: { root: string; maxBytes?: number }) {
    this.#root = options.root;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  }

  #dir(jobId: string): string {
    if (!JOB_ID.test(jobId)) throw new GatehouseError('BAD_INPUT', `'${jobId.slice(0, 80)}' is not a job id`);
    return join(this.#root, jobId);
  }

  /**
   * Receive one output: stream it to a file while hashing it, refusing it past the size limit.
   * It is kept under the digest computed here, whatever the runner said it was.
   * @throws GatehouseError OUTPUT_REJECTED (too large), STORE_ERROR
   */
  async receive(jobId: string, name: string, source: NodeJS.ReadableStream | string): Promise<StagedOutput> {
    const dir = this.#dir(jobId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.incoming-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    const max = this.#maxBytes;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > max)
          return done(
            new GatehouseError(
              'OUTPUT_REJECTED',
              `output '${name}' is larger than the limit of ${max} bytes`,
            ),
          );
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      const input = typeof source === 'string' ? createReadStream(source, { highWaterMark: MiB }) : source;
      await pipeline(input, meter, createWriteStream(tmp, { mode: 0o600, flags: 'wx' }));
    } catch (e) {
      await rm(tmp, { force: true });
      if (e instanceof GatehouseError) throw e;
      throw new GatehouseError('STORE_ERROR', `cannot receive output '${name}'`, { cause: e });
    }
    const sha256 = hash.digest('hex');
    const path = join(dir, sha256);
    await rename(tmp, path);
    await writeFile(`${path}.name`, name, { mode: 0o600 });
    return { name, sha256, size, path };
  }

  /** The output of a job staged under `sha256`, if one was received. */
  async get(jobId: string, sha256: string): Promise<StagedOutput | undefined> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return undefined;
    const path = join(this.#dir(jobId), sha256);
    try {
      const [st, name] = await Promise.all([stat(path), readFile(`${path}.name`, 'utf8')]);
      return { name, sha256, size: st.size, path };
    } catch {
      return undefined;
    }
  }

  /** A private directory among a job's staged outputs (removed with them), e.g. to open an image in. */
  async workDir(jobId: string, name: string): Promise<string> {
    if (!/^[a-z0-9-]{1,32}$/.test(name))
      throw new GatehouseError('BAD_INPUT', `'${name}' is not a work directory name`);
    const dir = join(this.#dir(jobId), `.work-${name}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /** Remove everything staged for a job. */
  async remove(jobId: string): Promise<void> {
    await rm(this.#dir(jobId), { recursive: true, force: true });
  }
}
