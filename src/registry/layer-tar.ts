/**
 * Image layers as tar archives, written so that the same entries always give the same bytes
 * (sorted names, mtime 0, numeric owners, no user or group names, no device numbers, PAX headers
 * only for names that do not fit), and read back entry by entry with every name checked, so that
 * a layer can never place a file outside the root it is unpacked into.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { posix } from 'node:path';
import { Gzip } from 'fflate';
import { GatehouseError } from '../common/errors.ts';

/** Content of a regular-file entry: bytes in memory, or a file on disk read without following links. */
export type EntryContent =
  | { readonly bytes: Uint8Array }
  | {
      readonly file: string;
      readonly size: number;
      /** When set, the file opened must still be this inode (the one that was checked). */
      readonly ino?: number;
    };

/** One entry of a layer. Paths are relative to the image root, without a leading `/`. */
export type TarEntry =
  | {
      readonly path: string;
      readonly type: 'dir';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
    }
  | {
      readonly path: string;
      readonly type: 'file';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      readonly content: EntryContent;
    }
  | {
      readonly path: string;
      readonly type: 'symlink';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      readonly target: string;
    };

/** What was written: the SHA-256 of the bytes (hex) and their size. */
export interface WrittenTar {
  readonly sha256: string;
  readonly size: number;
}

const BLOCK = 512;
const CHUNK = 1024 * 1024;

/**
 * Whether a path inside an image is safe to unpack: relative, no `..` or `.` segment, no empty
 * segment, no NUL or backslash. A leading `./` is allowed (many tools write it) and ignored.
 */
export function isSafeLayerPath(path: string): boolean {
  const p = path.replace(/^\.\//, '').replace(/\/$/, '');
  if (p === '' || p.startsWith('/') || p.includes('\0') || p.includes('\\')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function paxRecord(key: string, value: string): Buffer {
  // The length field counts itself, so grow it until it is stable.
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len)
    len = String(len).length + Buffer.byteLength(body);
  return Buffer.from(`${len}${body}`);
}

function header(fields: {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  type: string;
  linkname?: string;
}): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(fields.name, 0, 100, 'utf8');
  h.write(octal(fields.mode & 0o7777, 8), 100, 8, 'ascii');
  h.write(octal(fields.uid, 8), 108, 8, 'ascii');
  h.write(octal(fields.gid, 8), 116, 8, 'ascii');
  h.write(octal(fields.size, 12), 124, 12, 'ascii');
  h.write(octal(0, 12), 136, 12, 'ascii'); // mtime: always the epoch
  h.write('        ', 148, 8, 'ascii');
  h.write(fields.type, 156, 1, 'ascii');
  if (fields.linkname !== undefined) h.write(fields.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write(octal(0, 8), 329, 8, 'ascii');
  h.write(octal(0, 8), 337, 8, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

function checkId(n: number, what: string, path: string): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0o7777777)
    throw new GatehouseError('BAD_INPUT', `layer entry ${path} has an invalid ${what} ${n}`);
}

/**
 * Write a layer: `entries` sorted by path (byte order), each name checked, into `out` (created,
 * never overwritten), hashing as it goes.
 * @throws GatehouseError BAD_INPUT for an unsafe or duplicate path, OUTPUT_REJECTED when a file
 *   changed between being listed and being read
 */
export async function writeLayerTar(entries: readonly TarEntry[], out: string): Promise<WrittenTar> {
  const sorted = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i] as TarEntry;
    if (!isSafeLayerPath(e.path) || e.path.startsWith('./') || e.path.endsWith('/'))
      throw new GatehouseError(
        'BAD_INPUT',
        `layer path '${e.path.slice(0, 200)}' is not a safe relative path`,
      );
    if (i > 0 && sorted[i - 1]?.path === e.path)
      throw new GatehouseError('BAD_INPUT', `layer path '${e.path.slice(0, 200)}' appears twice`);
    checkId(e.uid, 'uid', e.path);
    checkId(e.gid, 'gid', e.path);
  }
  const fh = await open(out, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  const write = async (b: Uint8Array): Promise<void> => {
    if (b.byteLength === 0) return;
    hash.update(b);
    size += b.byteLength;
    await fh.write(b);
  };
  try {
    for (const e of sorted) {
      const name = e.type === 'dir' ? `${e.path}/` : e.path;
      const linkname = e.type === 'symlink' ? e.target : undefined;
      const pax: Buffer[] = [];
      if (Buffer.byteLength(name) > 100) pax.push(paxRecord('path', name));
      if (linkname !== undefined && Buffer.byteLength(linkname) > 100)
        pax.push(paxRecord('linkpath', linkname));
      if (pax.length > 0) {
        const body = Buffer.concat(pax);
        await write(header({ name: 'PaxHeader', mode: 0o644, uid: 0, gid: 0, size: body.length, type: 'x' }));
        await write(body);
        await write(padding(body.length));
      }
      const short = (s: string): string =>
        Buffer.byteLength(s) > 100 ? Buffer.from(s).subarray(0, 100).toString() : s;
      const common = { name: short(name), mode: e.mode, uid: e.uid, gid: e.gid };
      if (e.type === 'dir') await write(header({ ...common, size: 0, type: '5' }));
      else if (e.type === 'symlink')
        await write(header({ ...common, size: 0, type: '2', linkname: short(e.target) }));
      else {
        const c = e.content;
        if ('bytes' in c) {
          await write(header({ ...common, size: c.bytes.byteLength, type: '0' }));
          await write(c.bytes);
          await write(padding(c.bytes.byteLength));
        } else {
          await write(header({ ...common, size: c.size, type: '0' }));
          await copyFileContent(c, e.path, write);
          await write(padding(c.size));
        }
      }
    }
    await write(Buffer.alloc(BLOCK * 2));
  } finally {
    await fh.close();
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * Compress a layer with gzip so that the same tar always gives the same bytes: fflate (pure
 * JavaScript, pinned by the lockfile, so no zlib build of the host decides the output) at level
 * 6, with no file name and mtime 0 in the gzip header. Registries and copy tools keep gzip layers
 * as they are, where they would compress an uncompressed one (and so change the digest).
 */
export async function gzipLayer(tar: string, out: string): Promise<WrittenTar> {
  const src = await open(tar, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  const dest = await open(out, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  let pending: Uint8Array[] = [];
  const gz = new Gzip({ level: 6, mtime: 0 });
  gz.ondata = (chunk) => {
    pending.push(chunk);
  };
  const flush = async (): Promise<void> => {
    const ready = pending;
    pending = [];
    for (const c of ready) {
      hash.update(c);
      size += c.byteLength;
      await dest.write(c);
    }
  };
  try {
    const total = (await src.stat()).size;
    let at = 0;
    do {
      // A fresh buffer for each push: the compressor may keep a reference to what it was given.
      const buf = Buffer.alloc(Math.min(CHUNK, total - at));
      const r = await src.read(buf, 0, buf.length, at);
      at += r.bytesRead;
      gz.push(buf.subarray(0, r.bytesRead), at >= total || r.bytesRead === 0);
      await flush();
      if (r.bytesRead === 0) break;
    } while (at < total);
  } finally {
    await src.close();
    await dest.close();
  }
  return { sha256: hash.digest('hex'), size };
}

/** Copy exactly `c.size` bytes of a file, refusing a file that is not the one listed. */
async function copyFileContent(
  c: { file: string; size: number; ino?: number },
  path: string,
  write: (b: Uint8Array) => Promise<void>,
): Promise<void> {
  let src: FileHandle;
  try {
    src = await open(c.file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (e) {
    throw new GatehouseError('OUTPUT_REJECTED', `image file /${path} cannot be opened`, { cause: e });
  }
  try {
    const st = await src.stat();
    if (!st.isFile() || st.size !== c.size || (c.ino !== undefined && st.ino !== c.ino))
      throw new GatehouseError('OUTPUT_REJECTED', `image file /${path} changed while the layer was written`);
    const buf = Buffer.alloc(Math.min(CHUNK, Math.max(1, c.size)));
    let done = 0;
    while (done < c.size) {
      const r = await src.read(buf, 0, Math.min(buf.length, c.size - done), done);
      if (r.bytesRead === 0) break;
      await write(buf.subarray(0, r.bytesRead));
      done += r.bytesRead;
    }
    if (done !== c.size)
      throw new GatehouseError(
        'OUTPUT_REJECTED',
        `image file /${path} changed size while the layer was written`,
      );
  } finally {
    await src.close();
  }
}

/** One entry of a tar as read back: the name after PAX headers, its kind and its link target. */
export interface ReadEntry {
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  /** The tar type flag, for messages. */
  readonly flag: string;
  readonly size: number;
  readonly mode: number;
  readonly linkname: string;
  /** Offset of the entry's content in the tar. */
  readonly offset: number;
}

function cString(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const end = s.indexOf(0);
  return (end === -1 ? s : s.subarray(0, end)).toString('utf8');
}

function readOctal(b: Buffer, start: number, len: number, where: string): number {
  const field = b.subarray(start, start + len);
  if ((field[0] ?? 0) & 0x80)
    throw new GatehouseError('BAD_INPUT', `${where}: base-256 numbers are not accepted`);
  const s = cString(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new GatehouseError('BAD_INPUT', `${where}: malformed tar header`);
  return Number.parseInt(s, 8);
}

function parsePax(body: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp === -1) break;
    const len = Number(body.subarray(i, sp).toString('ascii'));
    if (!Number.isSafeInteger(len) || len <= sp - i || i + len > body.length)
      throw new GatehouseError('BAD_INPUT', `${where}: malformed PAX header`);
    const rec = body.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/** The content of an entry: read whole (small entries), or chunk by chunk. */
export interface EntryBody {
  all(): Promise<Buffer>;
  each(fn: (chunk: Buffer) => Promise<void> | void): Promise<void>;
}

/** A source of tar bytes read in order: a function that fills the next `n` bytes, or ends. */
export type ByteSource = (n: number) => Promise<Buffer | undefined>;

/** Read exactly `n` bytes from an async iterable of chunks, in order. */
export function byteSource(chunks: AsyncIterable<Buffer | Uint8Array>): ByteSource {
  const it = chunks[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  return async (n) => {
    while (pending.length < n && !ended) {
      const r = await it.next();
      if (r.done === true) ended = true;
      else pending = pending.length === 0 ? Buffer.from(r.value) : Buffer.concat([pending, r.value]);
    }
    if (pending.length < n) return undefined;
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };
}

/**
 * Read the entries of a tar from `read`, calling `onEntry` for each (with a reader of its content
 * when it has one); content not read is skipped. Names from PAX headers replace the header's.
 * `where` names the tar in errors.
 * @throws GatehouseError BAD_INPUT for a truncated or malformed tar
 */
export async function readTar(
  read: ByteSource,
  where: string,
  onEntry: (entry: ReadEntry, content: EntryBody) => Promise<void> | void,
  options: { maxEntries?: number } = {},
): Promise<number> {
  const maxEntries = options.maxEntries ?? 1_000_000;
  let offset = 0;
  let count = 0;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  const take = async (n: number): Promise<Buffer> => {
    const b = await read(n);
    if (b === undefined) throw new GatehouseError('BAD_INPUT', `${where} is truncated at byte ${offset}`);
    offset += n;
    return b;
  };
  for (;;) {
    const h = await read(BLOCK);
    if (h === undefined) {
      // Some writers stop without the end-of-archive blocks; a tar that ends between entries is whole.
      return count;
    }
    offset += BLOCK;
    if (h.every((b) => b === 0)) return count;
    const at = `${where} at byte ${offset - BLOCK}`;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    if (readOctal(h, 148, 8, at) !== sum)
      throw new GatehouseError('BAD_INPUT', `${at}: bad tar header checksum`);
    const flag = String.fromCharCode(h[156] ?? 0x30);
    const size = readOctal(h, 124, 12, at);
    const padded = size + ((BLOCK - (size % BLOCK)) % BLOCK);
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 1024 * 1024) throw new GatehouseError('BAD_INPUT', `${at}: extended header is too large`);
      const body = (await take(padded)).subarray(0, size);
      if (flag === 'x') pax = parsePax(body, at);
      else if (flag === 'L') longName = cString(body, 0, body.length);
      else if (flag === 'K') longLink = cString(body, 0, body.length);
      continue;
    }
    const prefix = h.subarray(257, 263).toString('ascii') === 'ustar\0' ? cString(h, 345, 155) : '';
    const base = cString(h, 0, 100);
    const path = pax.get('path') ?? longName ?? (prefix === '' ? base : `${prefix}/${base}`);
    const linkname = pax.get('linkpath') ?? longLink ?? cString(h, 157, 100);
    pax = new Map();
    longName = undefined;
    longLink = undefined;
    if (++count > maxEntries)
      throw new GatehouseError('BAD_INPUT', `${where} has more than ${maxEntries} entries`);
    const type =
      flag === '0' || flag === '\0' || flag === '7'
        ? 'file'
        : flag === '5'
          ? 'dir'
          : flag === '2'
            ? 'symlink'
            : flag === '1'
              ? 'hardlink'
              : 'other';
    const start = offset;
    let consumed = false;
    await onEntry(
      {
        path,
        type,
        flag,
        size: type === 'file' ? size : 0,
        mode: readOctal(h, 100, 8, at),
        linkname,
        offset: start,
      },
      {
        all: async () => {
          consumed = true;
          return (await take(padded)).subarray(0, size);
        },
        each: async (fn) => {
          consumed = true;
          let left = size;
          while (left > 0) {
            const n = Math.min(left, CHUNK);
            await fn(await take(n));
            left -= n;
          }
          await take(padded - size);
        },
      },
    );
    if (!consumed) {
      let left = padded;
      while (left > 0) {
        const n = Math.min(left, CHUNK);
        await take(n);
        left -= n;
      }
    }
  }
}

/**
 * Check every entry of a layer for what must never be unpacked: a name outside the root (absolute,
 * `..`), a hard link to such a name or to an entry not seen before, a device node or FIFO. With
 * `build: true` (a layer gatehouse wrote from a build's files) whiteouts and hard links are refused
 * too, since gatehouse never writes them.
 * @throws GatehouseError ARTIFACT_REFUSED naming the entry
 */
export async function checkLayerEntries(
  read: ByteSource,
  where: string,
  options: { build?: boolean } = {},
): Promise<number> {
  const seen = new Set<string>();
  return readTar(read, where, (e) => {
    const refuse = (why: string): never => {
      throw new GatehouseError('ARTIFACT_REFUSED', `${where}: entry '${e.path.slice(0, 200)}' ${why}`);
    };
    // The root itself (`./`, as `tar -C dir .` writes it) is a directory entry, not an escape.
    if (e.type === 'dir' && (e.path === './' || e.path === '.')) return;
    if (!isSafeLayerPath(e.path)) refuse('is outside the image root (absolute or with ..)');
    const name = posix.normalize(e.path.replace(/^\.\//, '')).replace(/\/$/, '');
    if (e.type === 'other') refuse(`is a device node, FIFO or other special file (type '${e.flag}')`);
    if (e.type === 'hardlink') {
      if (options.build === true) refuse('is a hard link, which gatehouse never writes');
      if (!isSafeLayerPath(e.linkname))
        refuse(`is a hard link to '${e.linkname.slice(0, 200)}' outside the root`);
      const target = posix.normalize(e.linkname.replace(/^\.\//, ''));
      if (!seen.has(target))
        refuse(`is a hard link to '${target.slice(0, 200)}', which is not an earlier entry`);
    }
    if (options.build === true && posix.basename(name).startsWith('.wh.'))
      refuse('is a whiteout, which gatehouse never writes in a build layer');
    if (e.type === 'file' && (e.mode & 0o6000) !== 0 && options.build === true) refuse('is setuid or setgid');
    seen.add(name);
  });
}
