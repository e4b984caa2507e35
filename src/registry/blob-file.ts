/**
 * Artifact files as blobs on disk: copied and downloaded as streams, their bytes checked against
 * the digest they are stored under while they are written, so that neither a large output nor a
 * lying registry can take the control plane's memory or put other bytes under a trusted name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, rename, rm, stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GatehouseError } from '../common/errors.ts';
import { registryError } from './registry-http.ts';

/**
 * Write `source` (a file path or a stream) to `dest` atomically, refusing more than `maxBytes` and
 * bytes that do not hash to `digest` (`sha256:<hex>`); nothing is left at `dest` on a refusal.
 * @param mismatch the error for bytes that do not match: what the caller handed over (BAD_INPUT),
 *   or what a registry answered (REGISTRY_ERROR, the default)
 * @returns the size written
 * @throws GatehouseError REGISTRY_ERROR, BAD_INPUT
 */
export async function writeVerified(
  source: string | NodeJS.ReadableStream | ReadableStream<Uint8Array>,
  dest: string,
  digest: string,
  maxBytes = Number.POSITIVE_INFINITY,
  mismatch: (message: string) => GatehouseError = (m) => registryError(m, dest),
): Promise<number> {
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxBytes)
        return done(registryError(`blob ${digest} is larger than ${maxBytes} bytes`, dest));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const input =
    typeof source === 'string'
      ? createReadStream(source, { highWaterMark: 1024 * 1024 })
      : source instanceof ReadableStream
        ? Readable.fromWeb(source as import('node:stream/web').ReadableStream<Uint8Array>)
        : source;
  try {
    await pipeline(input, check, createWriteStream(tmp, { mode: 0o644, flags: 'wx' }));
    if (`sha256:${hash.digest('hex')}` !== digest) throw mismatch(`the bytes do not match ${digest}`);
    await rename(tmp, dest);
    return size;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Place the file at `source` at `dest` under `digest`, as {@link writeVerified} does, but by a hard
 * link where both are on one file system: the bytes are hashed again (a file changed since it was
 * digested is refused) but not copied. Elsewhere, or where links are not allowed, it copies.
 * @returns the size placed
 * @throws GatehouseError BAD_INPUT (from `mismatch`) when the bytes do not hash to `digest`
 */
export async function placeVerified(
  source: string,
  dest: string,
  digest: string,
  mismatch: (message: string) => GatehouseError,
): Promise<number> {
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await link(source, tmp);
  } catch {
    return writeVerified(source, dest, digest, Number.POSITIVE_INFINITY, mismatch);
  }
  try {
    // Hashed through the link, so the bytes checked are the bytes placed.
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(tmp, { highWaterMark: 1024 * 1024 })) {
      size += (chunk as Buffer).length;
      hash.update(chunk as Buffer);
    }
    if (`sha256:${hash.digest('hex')}` !== digest) throw mismatch(`the bytes do not match ${digest}`);
    await rename(tmp, dest);
    return size;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Whether a file exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The refusal of an artifact file handed to a registry whose bytes are not those of its digest. */
export function fileMismatch(path: string): (message: string) => GatehouseError {
  return (message) => new GatehouseError('BAD_INPUT', `artifact file ${path}: ${message}`);
}
