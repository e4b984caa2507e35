/**
 * A zip reader that trusts the central directory (as Java and Python do) and streams each entry:
 * stored entries are ranges of the file, deflated ones go through inflateRaw. Written here because
 * the readers on npm either buffer whole entries (fflate's unzipSync, adm-zip) or read local
 * headers in order, which a zip's central directory may contradict.
 */
import { crc32 } from 'node:zlib';
import { GatehouseError } from '../../common/errors.ts';
import { ByteStream, type FileRange } from './byte-stream.ts';
import { decompress } from './decompress.ts';
import { formatBytes, refused } from './limits.ts';

/** One central directory record. */
export interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  /** The uncompressed size the central directory declares. */
  size: number;
  localHeaderOffset: number;
  isDirectory: boolean;
  /** A Unix symlink (its data is the target, not a file). */
  isSymlink: boolean;
  encrypted: boolean;
}

/** Bounds the reader needs from the artifact's limits and budget. */
export interface ZipReadOptions {
  /** Entries still allowed; a directory declaring more is refused before it is read. */
  maxEntries: number;
  maxEntryRatio: number;
  ratioFloorBytes: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function bad(message: string, where: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', `zip ${message}: ${where}`);
}

function u64(b: Buffer, at: number, where: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('has a 64-bit field too large to be real', where);
  return Number(v);
}

/** An open zip: its central directory located and checked, its entries readable one by one. */
export class ZipArchive {
  readonly range: FileRange;
  readonly where: string;
  /** Entries the central directory declares. */
  readonly count: number;
  readonly #cdStart: number;
  readonly #cdSize: number;
  /** Added to every recorded offset: bytes prepended to the zip (a launcher script, say). */
  readonly #base: number;

  private constructor(
    range: FileRange,
    where: string,
    count: number,
    cdStart: number,
    cdSize: number,
    base: number,
  ) {
    this.range = range;
    this.where = where;
    this.count = count;
    this.#cdStart = cdStart;
    this.#cdSize = cdSize;
    this.#base = base;
  }

  /**
   * Locate and check the central directory: its end record (zip64 too), the entry count against
   * the limit, every entry's range inside the file and no two entries sharing data (the
   * overlapping-entry bomb), and each declared ratio.
   * @throws GatehouseError BAD_INPUT for a corrupt zip; ARTIFACT_REFUSED past a limit
   */
  static async open(range: FileRange, where: string, options: ZipReadOptions): Promise<ZipArchive> {
    const tailLen = Math.min(range.size, 22 + 0xffff);
    const tail = await range.read(range.size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tail.length) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw bad('has no end of central directory record (truncated or not a zip)', where);
    const eocdPos = range.size - tailLen + eocd;
    if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0)
      throw bad('spans several disks, which is not supported', where);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    let cdEnd = eocdPos;
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      if (eocdPos < 20) throw bad('declares zip64 but has no zip64 locator', where);
      const loc = await range.read(eocdPos - 20, 20);
      if (loc.readUInt32LE(0) !== EOCD64_LOCATOR) throw bad('declares zip64 but has no zip64 locator', where);
      // The locator's offset is relative to the zip's start; find the record where it really is.
      const recorded = u64(loc, 8, where);
      const candidates = [eocdPos - 20 - 56, recorded];
      let rec: Buffer | undefined;
      let recPos = -1;
      for (const c of candidates) {
        if (c < 0 || c + 56 > range.size) continue;
        const r = await range.read(c, 56);
        if (r.readUInt32LE(0) === EOCD64) {
          rec = r;
          recPos = c;
          break;
        }
      }
      if (rec === undefined) throw bad('zip64 end record is missing', where);
      count = u64(rec, 32, where);
      cdSize = u64(rec, 40, where);
      cdOffset = u64(rec, 48, where);
      cdEnd = recPos;
    }
    if (count > options.maxEntries)
      throw refused(`zip central directory of ${count} entries`, `the entry limit`, where);
    const cdStart = cdEnd - cdSize;
    const base = cdStart - cdOffset;
    if (cdStart < 0 || base < 0) throw bad('central directory lies outside the file (truncated?)', where);
    if (cdSize < count * 46) throw bad(`central directory is too small for ${count} entries`, where);
    const zip = new ZipArchive(range, where, count, cdStart, cdSize, base);
    // First pass over the directory: every range checked before any entry is read.
    const offsets = new Float64Array(count);
    const ends = new Float64Array(count);
    let i = 0;
    for await (const e of zip.entries()) {
      if (i >= count) break;
      const local = base + e.localHeaderOffset;
      if (local + 30 + e.compressedSize > cdStart)
        throw bad(`entry '${e.name.slice(0, 200)}' lies outside the file`, where);
      if (e.size > options.ratioFloorBytes && e.size > Math.max(e.compressedSize, 1) * options.maxEntryRatio)
        throw refused(
          `zip entry '${e.name.slice(0, 200)}' declaring ${formatBytes(e.size)} from ${formatBytes(e.compressedSize)}`,
          `the compression ratio limit of ${options.maxEntryRatio}`,
          where,
        );
      offsets[i] = local;
      ends[i] = local + 30 + e.compressedSize;
      i++;
    }
    if (i !== count) throw bad(`central directory holds ${i} entries, not the ${count} it declares`, where);
    const order = Array.from({ length: count }, (_, k) => k).sort(
      (a, b) => (offsets[a] as number) - (offsets[b] as number),
    );
    for (let k = 1; k < order.length; k++) {
      const prev = order[k - 1] as number;
      const cur = order[k] as number;
      if ((ends[prev] as number) > (offsets[cur] as number))
        throw refused('zip entries sharing data (an overlapping-entry bomb)', 'what a zip may hold', where);
    }
    return zip;
  }

  /** The central directory's records, read in chunks (the directory is never held whole). */
  async *entries(): AsyncGenerator<ZipEntry> {
    const s: ByteStream = this.range.stream(this.#cdStart, this.#cdSize);
    for (let n = 0; n < this.count; n++) {
      const h = await s.readExactly(46, 'zip central directory', this.where);
      if (h.readUInt32LE(0) !== CENTRAL)
        throw bad(`central directory record ${n} has a bad signature`, this.where);
      const flags = h.readUInt16LE(8);
      const nameLen = h.readUInt16LE(28);
      const extraLen = h.readUInt16LE(30);
      const commentLen = h.readUInt16LE(32);
      const rest = await s.readExactly(nameLen + extraLen + commentLen, 'zip central directory', this.where);
      const name = rest.subarray(0, nameLen).toString((flags & 0x800) !== 0 ? 'utf8' : 'latin1');
      let compressedSize = h.readUInt32LE(20);
      let size = h.readUInt32LE(24);
      let localHeaderOffset = h.readUInt32LE(42);
      if (size === 0xffffffff || compressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
        const extra = rest.subarray(nameLen, nameLen + extraLen);
        let found = false;
        for (let p = 0; p + 4 <= extra.length; ) {
          const id = extra.readUInt16LE(p);
          const len = extra.readUInt16LE(p + 2);
          if (id === 0x0001) {
            let q = p + 4;
            const take = () => {
              if (q + 8 > p + 4 + len)
                throw bad(`entry '${name.slice(0, 200)}' has a short zip64 field`, this.where);
              const v = u64(extra, q, this.where);
              q += 8;
              return v;
            };
            if (size === 0xffffffff) size = take();
            if (compressedSize === 0xffffffff) compressedSize = take();
            if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
            found = true;
            break;
          }
          p += 4 + len;
        }
        if (!found) throw bad(`entry '${name.slice(0, 200)}' needs a zip64 field it lacks`, this.where);
      }
      const madeBy = h.readUInt16LE(4) >> 8;
      const unixMode = madeBy === 3 ? h.readUInt32LE(38) >>> 16 : 0;
      yield {
        name,
        method: h.readUInt16LE(10),
        flags,
        crc32: h.readUInt32LE(16),
        compressedSize,
        size,
        localHeaderOffset,
        isDirectory: name.endsWith('/') || (unixMode & 0o170000) === 0o040000,
        isSymlink: (unixMode & 0o170000) === 0o120000,
        encrypted: (flags & 1) !== 0,
      };
    }
  }

  /** Where an entry's data starts, from its local header. */
  async #dataOffset(e: ZipEntry): Promise<number> {
    const at = this.#base + e.localHeaderOffset;
    const h = await this.range.read(at, 30);
    if (h.length < 30 || h.readUInt32LE(0) !== LOCAL)
      throw bad(`entry '${e.name.slice(0, 200)}' has no local header where the directory says`, this.where);
    const start = at + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + e.compressedSize > this.#cdStart)
      throw bad(`entry '${e.name.slice(0, 200)}' runs into the central directory`, this.where);
    return start;
  }

  /** A stored entry's bytes as a range of the file (no copy), or undefined when it is compressed. */
  async storedRange(e: ZipEntry): Promise<FileRange | undefined> {
    if (e.method !== 0 || e.encrypted) return undefined;
    if (e.size !== e.compressedSize)
      throw bad(`stored entry '${e.name.slice(0, 200)}' declares two different sizes`, this.where);
    return this.range.sub(await this.#dataOffset(e), e.size);
  }

  /**
   * An entry's uncompressed bytes as a stream. Output past the declared size is refused as it
   * arrives (the entry lies about its size); a short entry or a wrong CRC-32 is corrupt.
   * @param onOutput counts each decoded chunk (the budget), with the compressed bytes read so far
   * @throws GatehouseError BAD_INPUT for an unsupported method, an encrypted, short or corrupt
   *   entry; ARTIFACT_REFUSED for one that inflates past its declared size
   */
  async open(
    e: ZipEntry,
    entryWhere: string,
    onOutput: (n: number, input: number) => void,
  ): Promise<ByteStream> {
    if (e.encrypted) throw bad(`entry '${e.name.slice(0, 200)}' is encrypted`, this.where);
    if (e.method !== 0 && e.method !== 8)
      throw bad(
        `entry '${e.name.slice(0, 200)}' uses compression method ${e.method}, not stored or deflate`,
        this.where,
      );
    const start = await this.#dataOffset(e);
    const raw = this.range.stream(start, e.compressedSize);
    if (e.method === 0) {
      if (e.size !== e.compressedSize)
        throw bad(`stored entry '${e.name.slice(0, 200)}' declares two different sizes`, this.where);
      return checked(raw, e, entryWhere);
    }
    const inflated = decompress('deflate-raw', raw, { onOutput }, entryWhere);
    return checked(inflated, e, entryWhere);
  }
}

/** Wrap an entry's stream so that its length and CRC-32 are checked against the directory. */
function checked(s: ByteStream, e: ZipEntry, where: string): ByteStream {
  let got = 0;
  let crc = 0;
  return new ByteStream({
    async pull(max) {
      const c = await s.next(max);
      if (c === undefined) {
        if (got < e.size) throw bad(`entry is shorter than the ${e.size} bytes it declares`, where);
        if (crc >>> 0 !== e.crc32 >>> 0) throw bad('entry fails its CRC-32 check', where);
        return undefined;
      }
      got += c.length;
      if (got > e.size)
        throw refused(
          `zip entry inflating past its declared ${formatBytes(e.size)}`,
          'its declared size',
          where,
        );
      crc = crc32(c, crc);
      return c;
    },
    close: () => s.close(),
  });
}
