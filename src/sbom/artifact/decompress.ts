import {
  constants,
  createGunzip,
  createInflateRaw,
  createZstdDecompress,
  type Gunzip,
  type InflateRaw,
  type ZstdDecompress,
} from 'node:zlib';
import { GatehouseError, isGatehouseError } from '../../common/errors.ts';
import { ByteStream, CHUNK } from './byte-stream.ts';

/** The compressions node:zlib decodes as a stream. */
export type Compression = 'gzip' | 'zstd' | 'deflate-raw';

/** What a decoder reports as it runs, so that the budget can stop it mid-stream. */
export interface DecodeMeter {
  /** Called with each output chunk's length and the input consumed so far; throw to stop. */
  onOutput(n: number, inputSoFar: number): void;
}

function decoder(kind: Compression): Gunzip | InflateRaw | ZstdDecompress {
  switch (kind) {
    case 'gzip':
      return createGunzip({ chunkSize: CHUNK });
    case 'deflate-raw':
      return createInflateRaw({ chunkSize: CHUNK });
    case 'zstd':
      // A zstd frame may ask for a window of up to 2 GiB; 128 MiB (2^27) is zstd's own default cap.
      return createZstdDecompress({
        chunkSize: CHUNK,
        params: { [constants.ZSTD_d_windowLogMax]: 27 },
      });
  }
}

/**
 * Decode a compressed stream as a stream: node:zlib holds one window and one output chunk, never
 * the whole output. Each output chunk is reported to `meter` before it is handed on.
 * @throws GatehouseError BAD_INPUT for corrupt or truncated data (and whatever `meter` throws)
 */
export function decompress(
  kind: Compression,
  input: ByteStream,
  meter: DecodeMeter,
  where: string,
): ByteStream {
  async function* run(): AsyncGenerator<Buffer> {
    const z = decoder(kind);
    let consumed = 0;
    let stop = false;
    // The pump is the only reader of `input`, and it is awaited before this generator returns:
    // when the consumer closes the stream early, no read of the outer stream is left in flight to
    // race the outer reader's next read.
    const pump = (async () => {
      try {
        for (;;) {
          if (stop) return;
          const c = await input.next();
          if (c === undefined || stop) break;
          consumed += c.length;
          if (!z.write(c))
            await new Promise<void>((resolve) => {
              // Whichever comes first; the other listener goes, so that long streams add none.
              const done = (): void => {
                z.off('drain', done);
                z.off('close', done);
                resolve();
              };
              z.once('drain', done);
              z.once('close', done);
            });
        }
        if (!stop) z.end();
      } catch (e) {
        z.destroy(e as Error);
      }
    })();
    try {
      for await (const chunk of z as AsyncIterable<Buffer>) {
        meter.onOutput(chunk.length, consumed);
        yield chunk;
      }
    } catch (e) {
      if (isGatehouseError(e)) throw e;
      const detail = e instanceof Error ? e.message : String(e);
      throw new GatehouseError('BAD_INPUT', `${kind} data is corrupt or truncated (${detail}): ${where}`, {
        cause: e,
      });
    } finally {
      stop = true;
      z.destroy();
      await pump;
    }
  }
  return ByteStream.from(run());
}
