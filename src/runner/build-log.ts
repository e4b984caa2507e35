import { createHash } from 'node:crypto';
import { SecretMasker } from '../common/secret-mask.ts';

/** The most bytes of build output a job's log keeps (the truncation marker included). */
export const BUILD_LOG_MAX_BYTES = 1024 * 1024;

/** Room kept for the truncation marker within the bound. */
const MARKER_ROOM = 256;

/** How many lines of the log a failed build shows. */
export const FAILURE_TAIL_LINES = 40;

/** A finished build log, as kept and handed to the control plane. */
export interface BuildLogContent {
  /** The masked, bounded output: UTF-8 as the build wrote it (not checked), at most the bound. */
  readonly bytes: Buffer;
  /** SHA-256 hex of `bytes`. */
  readonly sha256: string;
  readonly size: number;
  /** Output was left out in the middle (a marker line says how much). */
  readonly truncated: boolean;
}

export interface BuildLogOptions {
  /** Secret values to mask from the first byte on (more can be added before they can appear). */
  secrets?: Iterable<string>;
  /** The bound; default {@link BUILD_LOG_MAX_BYTES}. */
  maxBytes?: number;
  /** Each masked piece of output as it can be shown (for a live view; not bounded). */
  onOutput?: (masked: Buffer) => void;
}

/**
 * A job's build log as the runner agent captures it, outside the sandbox, from the pipes of the
 * sandboxed fetch and build commands: stdout and stderr in the order they arrive, every known
 * secret masked before anything is shown or kept, bounded to the first and the last half of
 * `maxBytes` with a marker line saying how much was left out between them (the start says what
 * ran, the end why it failed).
 */
export class BuildLog {
  readonly #masker: SecretMasker;
  readonly #onOutput: ((masked: Buffer) => void) | undefined;
  readonly #headLimit: number;
  readonly #tailLimit: number;
  readonly #head: Buffer[] = [];
  #headSize = 0;
  #tail: Buffer[] = [];
  #tailSize = 0;
  #total = 0;
  #ended: BuildLogContent | undefined;

  constructor(options: BuildLogOptions = {}) {
    this.#masker = new SecretMasker(options.secrets ?? []);
    this.#onOutput = options.onOutput;
    const max = options.maxBytes ?? BUILD_LOG_MAX_BYTES;
    this.#headLimit = Math.floor(max / 2);
    this.#tailLimit = Math.max(0, max - this.#headLimit - MARKER_ROOM);
  }

  /** Mask this value from now on. */
  addSecret(secret: string): void {
    this.#masker.add(secret);
  }

  /** A chunk of output, as the sandbox wrote it. Ignored once the log has ended. */
  write(chunk: Uint8Array): void {
    if (this.#ended !== undefined) return;
    this.#keep(this.#masker.push(chunk));
  }

  /** Bytes of (masked) output so far, kept or not. */
  get written(): number {
    return this.#total;
  }

  /** End the log (idempotent): what is held back is masked and kept, and the log assembled. */
  end(): BuildLogContent {
    if (this.#ended !== undefined) return this.#ended;
    this.#keep(this.#masker.end());
    const dropped = this.#total - this.#headSize - this.#tailSize;
    const parts = [...this.#head];
    if (dropped > 0)
      parts.push(
        Buffer.from(
          `\n[gatehouse: ${dropped} bytes of build output left out here; the log keeps the first ${this.#headSize} and the last ${this.#tailSize} bytes]\n`,
        ),
      );
    parts.push(...this.#tail);
    const bytes = Buffer.concat(parts);
    this.#ended = {
      bytes,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      size: bytes.length,
      truncated: dropped > 0,
    };
    return this.#ended;
  }

  /**
   * The last `count` lines of the log (ending it), as a failed build shows them: from its last
   * 64 KiB at most, so a line longer than that is shown in part.
   */
  tail(count: number = FAILURE_TAIL_LINES): string[] {
    const { bytes } = this.end();
    return lastLines(bytes.subarray(Math.max(0, bytes.length - 64 * 1024)).toString('utf8'), count);
  }

  #keep(masked: Buffer): void {
    if (masked.length === 0) return;
    this.#onOutput?.(masked);
    this.#total += masked.length;
    let rest = masked;
    if (this.#headSize < this.#headLimit) {
      const take = Math.min(this.#headLimit - this.#headSize, rest.length);
      this.#head.push(rest.subarray(0, take));
      this.#headSize += take;
      rest = rest.subarray(take);
    }
    if (rest.length === 0) return;
    this.#tail.push(rest);
    this.#tailSize += rest.length;
    // Drop whole chunks from the front while the rest still fills the tail, then cut the first.
    while (this.#tail.length > 1 && this.#tailSize - (this.#tail[0]?.length ?? 0) >= this.#tailLimit)
      this.#tailSize -= this.#tail.shift()?.length ?? 0;
    const over = this.#tailSize - this.#tailLimit;
    const first = this.#tail[0];
    if (over > 0 && first !== undefined) {
      this.#tail[0] = first.subarray(over);
      this.#tailSize -= over;
    }
  }
}

/** The last `count` lines of a log's text (a final line break does not start another line). */
export function lastLines(text: string, count: number = FAILURE_TAIL_LINES): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-count);
}
