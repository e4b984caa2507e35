/**
 * Finds byte patterns in a stream of chunks and captures a bounded run of bytes after each, so
 * that build data embedded in an executable (Go build info, cargo auditable data) is read without
 * holding the executable: only the tail of the previous chunk (for a pattern split between two
 * chunks) and the captures themselves are kept.
 */

/** One pattern to look for, and what to do with the bytes that follow it. */
export interface CaptureRule {
  pattern: Buffer;
  /** Bytes to capture at first, counted from the start of the pattern. */
  initial: number;
  /**
   * Look at what was captured (everything from the pattern's start); return how many bytes are
   * wanted in all to go on, or 0 when done (found, or not what was sought).
   * @param atEnd true when the stream ended before the wanted bytes arrived
   */
  inspect(captured: Buffer, atEnd: boolean): number;
}

interface Capture {
  rule: CaptureRule;
  parts: Buffer[];
  length: number;
  want: number;
}

/** Bounds of a scan: the longest capture, and how many may be open at once. */
export interface ScanBounds {
  maxCapture: number;
  maxOpenCaptures: number;
}

/** A scanner over one stream; push chunks in order, then call {@link BinaryScanner.end}. */
export class BinaryScanner {
  readonly #rules: CaptureRule[];
  readonly #bounds: ScanBounds;
  readonly #overlap: number;
  #tail: Buffer = Buffer.alloc(0);
  #open: Capture[] = [];

  constructor(rules: CaptureRule[], bounds: ScanBounds) {
    this.#rules = rules;
    this.#bounds = bounds;
    this.#overlap = Math.max(1, ...rules.map((r) => r.pattern.length)) - 1;
  }

  #settle(c: Capture, atEnd: boolean): boolean {
    const buf = c.parts.length === 1 ? (c.parts[0] as Buffer) : Buffer.concat(c.parts, c.length);
    c.parts = [buf];
    const next = c.rule.inspect(buf, atEnd);
    if (atEnd || next <= c.length || next > this.#bounds.maxCapture) return false;
    c.want = next;
    return true;
  }

  /** Give `c` bytes of `src` from `off` until it wants no more from it; false when it is done. */
  #feed(c: Capture, src: Buffer, off: number): boolean {
    let at = off;
    for (;;) {
      const take = src.subarray(at, at + (c.want - c.length));
      if (take.length > 0) {
        c.parts.push(Buffer.from(take));
        c.length += take.length;
        at += take.length;
      }
      if (c.length < c.want) return true;
      if (!this.#settle(c, false)) return false;
    }
  }

  /** Feed the next chunk. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    // Captures already open take this chunk first.
    this.#open = this.#open.filter((c) => this.#feed(c, chunk, 0));
    const tailLen = this.#tail.length;
    const hay = tailLen === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    for (const rule of this.#rules) {
      const p = rule.pattern;
      // Start where a match would end past the old tail: matches inside it were found last time.
      for (let i = hay.indexOf(p, Math.max(0, tailLen - p.length + 1)); i >= 0; i = hay.indexOf(p, i + 1)) {
        if (this.#open.length >= this.#bounds.maxOpenCaptures) break;
        const c: Capture = {
          rule,
          parts: [],
          length: 0,
          want: Math.min(rule.initial, this.#bounds.maxCapture),
        };
        if (this.#feed(c, hay, i)) this.#open.push(c);
      }
    }
    this.#tail = Buffer.from(hay.subarray(Math.max(0, hay.length - this.#overlap)));
  }

  /** The stream ended: captures still open see what they got. */
  end(): void {
    for (const c of this.#open) this.#settle(c, true);
    this.#open = [];
  }
}
