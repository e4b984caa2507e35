/**
 * What a file is, judged by its first bytes (the magic numbers), never by its name alone: an
 * archive renamed `.txt` is still opened, and a `.jar` that is not a zip is not.
 */
export type FileKind =
  | 'gzip'
  | 'zstd'
  | 'bzip2'
  | 'xz'
  | 'zip'
  | 'tar'
  | 'elf'
  | 'macho'
  | 'pe'
  | 'wasm'
  | 'other';

/** How many leading bytes {@link sniffFileKind} needs to decide (a tar's magic is at 257). */
export const SNIFF_BYTES = 512;

/** True when a 512-byte block is a tar header whose checksum is right (tar has no magic before ustar). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]{1,8}$/.test(field)) return false;
  const stored = Number.parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  // Some old writers summed signed bytes; both are accepted by GNU tar.
  return stored === unsigned || stored === signed;
}

/** The kind of a file from its first bytes (up to {@link SNIFF_BYTES}). */
export function sniffFileKind(head: Buffer): FileKind {
  const b = (i: number) => head[i] ?? -1;
  if (b(0) === 0x1f && b(1) === 0x8b) return 'gzip';
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return 'zstd';
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68) return 'bzip2';
  if (b(0) === 0xfd && head.subarray(1, 6).toString('latin1') === '7zXZ\0') return 'xz';
  if (b(0) === 0x50 && b(1) === 0x4b && ((b(2) === 3 && b(3) === 4) || (b(2) === 5 && b(3) === 6)))
    return 'zip';
  if (b(0) === 0x7f && b(1) === 0x45 && b(2) === 0x4c && b(3) === 0x46) return 'elf';
  const be = head.length >= 4 ? head.readUInt32BE(0) : 0;
  if (be === 0xfeedface || be === 0xfeedfacf || be === 0xcefaedfe || be === 0xcffaedfe) return 'macho';
  // A universal binary shares 0xcafebabe with Java class files; a class's major version (≥ 45)
  // sits where a universal binary keeps its small architecture count.
  if (be === 0xcafebabe && head.length >= 8 && head.readUInt32BE(4) > 0 && head.readUInt32BE(4) < 20)
    return 'macho';
  if (b(0) === 0 && b(1) === 0x61 && b(2) === 0x73 && b(3) === 0x6d) return 'wasm';
  if (b(0) === 0x4d && b(1) === 0x5a && head.length >= 64) {
    const pe = head.readUInt32LE(60);
    if (pe + 4 <= head.length && head.readUInt32BE(pe) === 0x50450000) return 'pe';
    if (pe + 4 > head.length && pe < 4096) return 'pe';
  }
  if (head.length >= 512) {
    const magic = head.subarray(257, 262).toString('latin1');
    if (magic === 'ustar' || isTarHeader(head.subarray(0, 512))) return 'tar';
  }
  return 'other';
}

/** True for the kinds scanned for embedded Go and Rust build data. */
export function isExecutable(kind: FileKind): boolean {
  return kind === 'elf' || kind === 'macho' || kind === 'pe' || kind === 'wasm';
}
