/** What a masked secret is replaced with. */
export const SECRET_MASK = '***';

/**
 * Values shorter than this are not masked: they would hide ordinary words all over a log and
 * protect nothing (every credential gatehouse hands out is far longer).
 */
export const MIN_SECRET_BYTES = 4;

const MASK_BYTES = Buffer.from(SECRET_MASK);

/**
 * Replaces known secret values in a stream of bytes by {@link SECRET_MASK}, also when a value
 * arrives split over several chunks: the bytes at the end of a chunk that could begin a secret
 * are held back until the next chunk (or the end) says whether they do. Matching is on bytes,
 * leftmost first and, at one position, longest first.
 */
export class SecretMasker {
  /** Longest first, so that of two secrets starting at one position the longer one is masked. */
  #secrets: Buffer[] = [];
  /** Secrets that are a proper prefix of a longer one: a match of one may still grow. */
  #extendable = new Set<Buffer>();
  #pending: Buffer = Buffer.alloc(0);

  constructor(secrets: Iterable<string> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Mask this value from now on (in what is still pending, too). Short and repeated values are ignored. */
  add(secret: string): void {
    const bytes = Buffer.from(secret);
    if (bytes.length < MIN_SECRET_BYTES || this.#secrets.some((s) => s.equals(bytes))) return;
    this.#secrets.push(bytes);
    this.#secrets.sort((a, b) => b.length - a.length);
    this.#extendable = new Set(
      this.#secrets.filter((s) =>
        this.#secrets.some((t) => t.length > s.length && t.subarray(0, s.length).equals(s)),
      ),
    );
  }

  /** How many secret values are masked. */
  get size(): number {
    return this.#secrets.length;
  }

  /** The masked bytes of `chunk` that can be let out now (some may be held back for the next). */
  push(chunk: Uint8Array): Buffer {
    return this.#scan(Buffer.concat([this.#pending, chunk]), false);
  }

  /** Everything still held back, masked: the stream has ended. */
  end(): Buffer {
    return this.#scan(this.#pending, true);
  }

  /** Mask a whole value at once. */
  mask(bytes: Uint8Array): Buffer {
    const copy = new SecretMasker();
    copy.#secrets = this.#secrets;
    copy.#extendable = this.#extendable;
    return Buffer.concat([copy.push(bytes), copy.end()]);
  }

  #scan(buf: Buffer, final: boolean): Buffer {
    const parts: Buffer[] = [];
    let i = 0;
    for (;;) {
      const match = this.#earliest(buf, i);
      if (match === undefined) break;
      // A secret that is the start of a longer one, ending near the chunk's end, may yet grow
      // into the longer one: decide when more bytes have come.
      if (!final && this.#extendable.has(match.secret) && buf.length - match.at < this.#longest()) {
        parts.push(buf.subarray(i, match.at));
        this.#pending = Buffer.from(buf.subarray(match.at));
        return Buffer.concat(parts);
      }
      parts.push(buf.subarray(i, match.at), MASK_BYTES);
      i = match.at + match.secret.length;
    }
    const hold = final ? 0 : this.#partialSuffix(buf, i);
    parts.push(buf.subarray(i, buf.length - hold));
    this.#pending = Buffer.from(buf.subarray(buf.length - hold));
    return Buffer.concat(parts);
  }

  #longest(): number {
    return this.#secrets[0]?.length ?? 0;
  }

  /** The leftmost whole secret at or after `from` (the longest there). */
  #earliest(buf: Buffer, from: number): { at: number; secret: Buffer } | undefined {
    let best: { at: number; secret: Buffer } | undefined;
    for (const secret of this.#secrets) {
      const at = buf.indexOf(secret, from);
      if (at !== -1 && (best === undefined || at < best.at)) best = { at, secret };
    }
    return best;
  }

  /** The length of the longest end of `buf[from..]` that is the start of some secret. */
  #partialSuffix(buf: Buffer, from: number): number {
    const most = Math.min(this.#longest() - 1, buf.length - from);
    for (let k = most; k > 0; k--) {
      const start = buf.length - k;
      const first = buf[start];
      for (const s of this.#secrets) {
        if (s.length > k && s[0] === first && buf.compare(s, 0, k, start, buf.length) === 0) return k;
      }
    }
    return 0;
  }
}
