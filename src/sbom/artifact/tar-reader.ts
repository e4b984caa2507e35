/**
 * A streaming tar reader (POSIX ustar, pax and GNU long names, base-256 sizes), written here
 * rather than taken from tar-stream: that package brings some ten transitive packages (streamx,
 * b4a, bare-fs and its bare-* shims) for what is a few hundred lines, and its push streams do not
 * fit a pull reader that checks each declared size against a budget before reading it.
 */
import { GatehouseError } from '../../common/errors.ts';
import type { ByteStream } from './byte-stream.ts';
import { isTarHeader } from './file-kind.ts';
import { formatBytes, refused } from './limits.ts';

/** What a tar entry is; devices, FIFOs and sparse files are `other` (their data is not read). */
export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

/** One entry of a tar stream. */
export interface TarEntry {
  /** The name as recorded (pax `path`, GNU long name, or ustar prefix and name), not normalized. */
  name: string;
  type: TarEntryType;
  /** Bytes of data that follow the header. */
  size: number;
  /** The target of a symlink or hard link. */
  linkName: string;
  /** Offset of the data from the start of the tar stream. */
  dataOffset: number;
  /**
   * The entry's data, exactly `size` bytes. What the consumer leaves unread is skipped (by seeking
   * where the stream is a file) before the next header is read.
   */
  body: ByteStream;
}

/** Bounds the reader needs from the artifact's limits. */
export interface TarReadOptions {
  /** The largest pax or GNU long-name header buffered. */
  maxHeaderBytes: number;
  /** Called with each entry's declared size before it is yielded (the budget checks it). */
  onHeader?: (name: string, size: number) => void;
}

const BLOCK = 512;

function cstring(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return (nul < 0 ? s : s.subarray(0, nul)).toString('utf8');
}

function numeric(b: Buffer, start: number, len: number, what: string, where: string): number {
  const f = b.subarray(start, start + len);
  if (((f[0] ?? 0) & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement with the top bit set as the marker.
    if (((f[0] ?? 0) & 0x40) !== 0)
      throw new GatehouseError('BAD_INPUT', `tar header has a negative ${what}: ${where}`);
    let n = (f[0] ?? 0) & 0x3f;
    for (let i = 1; i < f.length; i++) {
      n = n * 256 + (f[i] ?? 0);
      if (n > Number.MAX_SAFE_INTEGER)
        throw new GatehouseError('BAD_INPUT', `tar header ${what} is too large: ${where}`);
    }
    return n;
  }
  const text = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text))
    throw new GatehouseError('BAD_INPUT', `tar header ${what} '${text.slice(0, 20)}' is not octal: ${where}`);
  return Number.parseInt(text, 8);
}

/** Parse pax records `LEN key=value\n`; the keys gatehouse uses are path, linkpath and size. */
function parsePax(data: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break;
    const space = data.indexOf(0x20, pos);
    const len = space < 0 ? Number.NaN : Number(data.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > data.length)
      throw new GatehouseError('BAD_INPUT', `tar pax header has a malformed record at ${pos}: ${where}`);
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq <= 0 || data[pos + len - 1] !== 0x0a)
      throw new GatehouseError('BAD_INPUT', `tar pax header has a malformed record at ${pos}: ${where}`);
    out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

/**
 * The entries of a tar stream, one at a time. Nothing but the current header (and a bounded pax
 * or long-name header) is held in memory.
 * @param where how to name the archive in errors
 * @throws GatehouseError BAD_INPUT for a corrupt or truncated archive; ARTIFACT_REFUSED for an
 *   extended header larger than maxHeaderBytes (and whatever `onHeader` throws)
 */
export async function* readTar(
  stream: ByteStream,
  where: string,
  options: TarReadOptions,
): AsyncGenerator<TarEntry> {
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  let global = new Map<string, string>();
  for (;;) {
    const at = stream.position;
    const header = await stream.read(BLOCK);
    // A tar may end without its two zero blocks (some writers stop after the last entry).
    if (header.length === 0) return;
    if (header.length < BLOCK) throw new GatehouseError('BAD_INPUT', `tar is truncated at ${at}: ${where}`);
    if (header.every((x) => x === 0)) return;
    if (!isTarHeader(header))
      throw new GatehouseError('BAD_INPUT', `tar header at offset ${at} has a bad checksum: ${where}`);
    const flag = String.fromCharCode(header[156] ?? 0);
    const ustar = header.subarray(257, 263).toString('latin1') === 'ustar\0';
    const headerSize = numeric(header, 124, 12, 'size', where);
    let name = cstring(header, 0, 100);
    if (ustar) {
      const prefix = cstring(header, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (headerSize > options.maxHeaderBytes)
        throw refused(
          `tar extended header of ${formatBytes(headerSize)} at offset ${at}`,
          `the limit of ${formatBytes(options.maxHeaderBytes)}`,
          where,
        );
      const data = await stream.readExactly(headerSize, 'tar extended header', where);
      await stream.skip((BLOCK - (headerSize % BLOCK)) % BLOCK);
      if (flag === 'x') pax = parsePax(data, where);
      else if (flag === 'g') global = parsePax(data, where);
      else {
        const nul = data.indexOf(0);
        const text = (nul < 0 ? data : data.subarray(0, nul)).toString('utf8');
        if (flag === 'L') longName = text;
        else longLink = text;
      }
      continue;
    }
    const attrs = new Map([...global, ...pax]);
    let size = headerSize;
    const paxSize = attrs.get('size');
    if (paxSize !== undefined) {
      if (!/^\d{1,16}$/.test(paxSize) || Number(paxSize) > Number.MAX_SAFE_INTEGER)
        throw new GatehouseError('BAD_INPUT', `tar pax size '${paxSize.slice(0, 20)}' is invalid: ${where}`);
      size = Number(paxSize);
    }
    name = attrs.get('path') ?? longName ?? name;
    let linkName = attrs.get('linkpath') ?? longLink ?? cstring(header, 157, 100);
    longName = undefined;
    longLink = undefined;
    pax = new Map();
    let type: TarEntryType;
    switch (flag) {
      case '0':
      case '\0':
      case '7':
        type = 'file';
        break;
      case '5':
        type = 'directory';
        break;
      case '2':
        type = 'symlink';
        break;
      case '1':
        type = 'hardlink';
        break;
      default:
        type = 'other';
    }
    // A GNU sparse file's data is a map of holes, not the file: it is not read as one.
    if (attrs.has('GNU.sparse.major') || attrs.has('GNU.sparse.size')) type = 'other';
    if (type === 'file' && name.endsWith('/')) type = 'directory';
    if (type !== 'symlink' && type !== 'hardlink') linkName = '';
    options.onHeader?.(name, size);
    const dataOffset = stream.position;
    const body = stream.view(size);
    yield { name, type, size, linkName, dataOffset, body };
    await body.skipRest();
    if (body.position < size)
      throw new GatehouseError('BAD_INPUT', `tar entry '${name.slice(0, 200)}' is truncated: ${where}`);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0 && (await stream.skip(pad)) < pad) {
      // The last entry's padding may be cut by writers that also drop the end blocks.
      const rest = await stream.read(1);
      if (rest.length > 0)
        throw new GatehouseError('BAD_INPUT', `tar is truncated after '${name}': ${where}`);
      return;
    }
  }
}
