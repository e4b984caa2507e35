/**
 * Go build information embedded in a binary (what `go version -m` prints): the Go version, the
 * main module and every module dependency with its version, found by scanning the bytes.
 *
 * The data starts with the 14-byte magic `\xff Go buildinf:`, then the pointer size and a flags
 * byte. Since Go 1.18 (flag bit 1) the version and the module information follow inline as two
 * varint-length strings. Before, the header holds two pointers into the data segment; rather than
 * map them through ELF, Mach-O or PE headers, the module information is found by the sentinels Go
 * has always wrapped it in (the same 16 bytes before and after), and the Go version is not read.
 */
import type { Component } from '../model.ts';
import { formatPurl } from '../purl.ts';
import type { CaptureRule } from './binary-scanner.ts';

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
/** The sentinels cmd/go wraps the module information in (modload's infoStart and infoEnd). */
const INFO_START = Buffer.from('3077af0c9274080241e1c107e6d618e6', 'hex');
const INFO_END = Buffer.from('f932433186182072008242104116d8f2', 'hex');

const GO_MODULE = /^[A-Za-z0-9][A-Za-z0-9._~\-/+!]*$/;
const GO_VERSION = /^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** What a scan of one binary found: inline build info, and sentinel-wrapped module text. */
export interface GoBuildInfo {
  goVersion?: string;
  modinfo: string;
}

function uvarint(b: Buffer, at: number): [value: number, next: number] | undefined {
  let v = 0;
  let mul = 1;
  for (let i = at; i < b.length && i < at + 10; i++) {
    const x = b[i] as number;
    v += (x & 0x7f) * mul;
    if (x < 0x80) return [v, i + 1];
    mul *= 128;
  }
  return undefined;
}

function stripSentinels(s: Buffer): Buffer {
  // As debug/buildinfo does: the text sits between the two 16-byte sentinels.
  if (s.length >= 33 && s[s.length - 17] === 0x0a) return s.subarray(16, s.length - 16);
  return s;
}

/** The scan rules and their findings for one Go binary. */
export class GoBuildInfoScan {
  #inline: GoBuildInfo | undefined;
  #oldFormat = false;
  #wrapped: string[] = [];

  /** Rules for a {@link BinaryScanner}; `maxBytes` bounds the module text kept. */
  rules(maxBytes: number): CaptureRule[] {
    return [
      {
        pattern: MAGIC,
        initial: 64,
        inspect: (b, atEnd) => {
          if (b.length < 32 || this.#inline !== undefined) return 0;
          const ptrSize = b[14];
          const flags = b[15] as number;
          if (ptrSize !== 4 && ptrSize !== 8) return 0;
          if ((flags & 2) === 0) {
            this.#oldFormat = true;
            return 0;
          }
          const a = uvarint(b, 32);
          if (a === undefined) return atEnd ? 0 : b.length + 16;
          const [vLen, vAt] = a;
          if (vLen > 256) return 0;
          const m = uvarint(b, vAt + vLen);
          if (m === undefined) return vAt + vLen + 10 > b.length ? vAt + vLen + 10 : 0;
          const [mLen, mAt] = m;
          if (mLen > maxBytes) return 0;
          if (b.length < mAt + mLen) return mAt + mLen;
          const version = b.subarray(vAt, vAt + vLen).toString('utf8');
          const modinfo = stripSentinels(b.subarray(mAt, mAt + mLen)).toString('utf8');
          this.#inline = { goVersion: version, modinfo };
          return 0;
        },
      },
      {
        pattern: INFO_START,
        initial: 4096,
        inspect: (b, atEnd) => {
          const end = b.indexOf(INFO_END, 16);
          if (end >= 0) {
            if (this.#wrapped.length < 8) this.#wrapped.push(b.subarray(16, end).toString('utf8'));
            return 0;
          }
          return atEnd || b.length >= maxBytes ? 0 : Math.min(maxBytes, b.length * 2);
        },
      },
    ];
  }

  /** The build info found, if the binary is a Go binary with module information. */
  result(): GoBuildInfo | undefined {
    if (this.#inline !== undefined) return this.#inline;
    if (!this.#oldFormat) return undefined;
    const text = this.#wrapped.find((t) => t.startsWith('path\t') || t.startsWith('mod\t'));
    return text === undefined ? undefined : { modinfo: text };
  }
}

function goComponent(module: string, version: string): Component {
  const slash = module.lastIndexOf('/');
  return {
    name: module,
    version,
    purl: formatPurl({
      type: 'golang',
      ...(slash > 0 ? { namespace: module.slice(0, slash) } : {}),
      name: module.slice(slash + 1),
      version,
    }),
    ecosystem: 'golang',
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
}

/**
 * The components of Go build info: the main module when it has a version (a build from a work
 * tree says `(devel)`, which is not one), every `dep` (its `=>` replacement when there is one; a
 * replacement by a local directory is part of the project, as in go.mod), and the standard
 * library as `stdlib` at the Go version (`pkg:golang/stdlib@1.22.1`), which Go advisories name.
 */
export function goBuildInfoComponents(info: GoBuildInfo): Component[] {
  const out: Component[] = [];
  const push = (path: string, version: string | undefined) => {
    if (version === undefined || !GO_MODULE.test(path) || !GO_VERSION.test(version)) return;
    out.push(goComponent(path, version));
  };
  let pending: { path: string; version: string } | undefined;
  const flush = () => {
    if (pending !== undefined) push(pending.path, pending.version);
    pending = undefined;
  };
  for (const line of info.modinfo.split('\n')) {
    const f = line.split('\t');
    switch (f[0]) {
      case 'mod':
        flush();
        push(f[1] ?? '', f[2]);
        break;
      case 'dep':
        flush();
        pending = { path: f[1] ?? '', version: f[2] ?? '' };
        break;
      case '=>': {
        const target = f[1] ?? '';
        const version = f[2] ?? '';
        // A replacement by a directory has no version: that module is the project's own code.
        if (pending !== undefined) pending = version === '' ? undefined : { path: target, version };
        break;
      }
      default:
        flush();
    }
  }
  flush();
  const m = /^go(\d+\.\d+(?:\.\d+)?(?:(?:rc|beta)\d+)?)(?:\s|$)/.exec(info.goVersion ?? '');
  if (m?.[1] !== undefined)
    out.push({
      name: 'stdlib',
      version: m[1],
      purl: formatPurl({ type: 'golang', name: 'stdlib', version: m[1] }),
      ecosystem: 'golang',
      hashes: [],
      dependencies: [],
      scope: 'required',
    });
  return out;
}
