/**
 * Alpine (apk) version ordering. A version is read as a sequence of typed tokens: numbers
 * separated by dots (a number after a dot with leading zeros orders as a fraction), one optional
 * letter, `_suffix[N]` parts (`alpha`, `beta`, `pre`, `rc` before the release; `cvs`, `svn`,
 * `git`, `hg`, `p` after it) and a `-rN` package revision. Where the grammar breaks, the rest is
 * invalid and ordering stops there, as apk itself does.
 */
import { cmpBig } from './common.ts';

// Token kinds in grammar order: a token may only be followed by one of a later kind, with the
// exceptions noted in `next`.
const T = { invalid: -1, digitOrZero: 0, digit: 1, letter: 2, suffix: 3, suffixNo: 4, revisionNo: 5, end: 6 };

const PRE = ['alpha', 'beta', 'pre', 'rc'];
const POST = ['cvs', 'svn', 'git', 'hg', 'p'];

class Reader {
  s: string;
  i = 0;
  kind: number = T.digit;
  constructor(s: string) {
    this.s = s;
  }

  /** Read the separator after a value and decide the next token's kind. */
  next(): void {
    const s = this.s;
    const c = s[this.i];
    const prev = this.kind;
    let n: number = T.invalid;
    if (c === undefined) n = T.end;
    else if ((prev === T.digit || prev === T.digitOrZero) && c >= 'a' && c <= 'z') n = T.letter;
    else if (prev === T.letter && c >= '0' && c <= '9') n = T.digit;
    else if (prev === T.suffix && c >= '0' && c <= '9') n = T.suffixNo;
    else {
      if (c === '.') n = T.digitOrZero;
      else if (c === '_') n = T.suffix;
      else if (c === '-' && s[this.i + 1] === 'r') {
        n = T.revisionNo;
        this.i++;
      }
      this.i++;
    }
    if (n < prev) {
      const allowed =
        (n === T.digitOrZero && prev === T.digit) ||
        (n === T.suffix && prev === T.suffixNo) ||
        (n === T.digit && prev === T.letter);
      if (!allowed) n = T.invalid;
    }
    this.kind = n;
  }

  /** The value of the current token, advancing past it. */
  value(): bigint {
    const s = this.s;
    if (this.i >= s.length) {
      this.kind = T.end;
      return 0n;
    }
    let v = 0n;
    let forced: number | undefined;
    const start = this.i;
    const digits = (): bigint => {
      while (this.i < s.length && (s[this.i] ?? '') >= '0' && (s[this.i] ?? '') <= '9') this.i++;
      return this.i > start ? BigInt(s.slice(start, this.i)) : 0n;
    };
    switch (this.kind) {
      case T.digitOrZero:
        if (s[this.i] === '0') {
          // Leading zeros after a dot: more zeros order lower (1.01 < 1.1).
          while (s[this.i] === '0') this.i++;
          v = BigInt(-(this.i - start));
          forced = T.digit;
        } else v = digits();
        break;
      case T.digit:
      case T.suffixNo:
      case T.revisionNo:
        v = digits();
        break;
      case T.letter:
        v = BigInt(s.charCodeAt(this.i));
        this.i++;
        break;
      case T.suffix: {
        const rest = s.slice(this.i);
        const pre = PRE.findIndex((p) => rest.startsWith(p));
        if (pre >= 0) {
          v = BigInt(pre - PRE.length);
          this.i += PRE[pre]?.length ?? 0;
          break;
        }
        const post = POST.findIndex((p) => rest.startsWith(p));
        if (post >= 0) {
          v = BigInt(post);
          this.i += POST[post]?.length ?? 0;
          break;
        }
        this.kind = T.invalid;
        return -1n;
      }
      default:
        this.kind = T.invalid;
        return -1n;
    }
    if (this.i >= s.length) this.kind = T.end;
    else if (forced !== undefined) this.kind = forced;
    else this.next();
    return v;
  }
}

/** Compare two Alpine package versions. */
export function compareAlpine(a: string, b: string): number {
  const x = new Reader(a.trim());
  const y = new Reader(b.trim());
  let av = 0n;
  let bv = 0n;
  while (x.kind === y.kind && x.kind !== T.end && x.kind !== T.invalid && av === bv) {
    av = x.value();
    bv = y.value();
  }
  const c = cmpBig(av, bv);
  if (c !== 0) return c;
  if (x.kind === y.kind) return 0;
  // Equal so far and one goes on: the longer one is newer unless what follows is a prerelease
  // suffix.
  if (x.kind === T.suffix) {
    const probe = new Reader(x.s);
    probe.i = x.i;
    probe.kind = x.kind;
    if (probe.value() < 0n) return -1;
  }
  if (y.kind === T.suffix) {
    const probe = new Reader(y.s);
    probe.i = y.i;
    probe.kind = y.kind;
    if (probe.value() < 0n) return 1;
  }
  if (x.kind > y.kind) return -1;
  if (y.kind > x.kind) return 1;
  return 0;
}
