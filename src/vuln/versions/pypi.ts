/**
 * PyPI version ordering: PEP 440, with versions PEP 440 cannot read ordered the way pip's
 * `packaging` used to order "legacy" versions (before every PEP 440 version), because advisories
 * about old releases still name them.
 */
import { cmpBig, cmpStr } from './common.ts';

// PEP 440's canonical pattern, written out for this reader (case-insensitive, surrounding
// whitespace allowed).
const PEP440 = new RegExp(
  '^\\s*v?(?:(?:(\\d+)!)?(\\d+(?:\\.\\d+)*)' +
    '(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\\d+)?)?' +
    '(?:-(\\d+)|[-_.]?(post|rev|r)[-_.]?(\\d+)?)?' +
    '(?:[-_.]?(dev)[-_.]?(\\d+)?)?)' +
    '(?:\\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?\\s*$',
  'i',
);

// Sentinels for the comparison key: below and above every real value.
const LOW = -1n;
const HIGH = 1n << 200n;

interface Pep440Key {
  epoch: bigint;
  release: bigint[];
  /** [phase, number]: phase 0 a, 1 b, 2 rc; LOW/HIGH sentinels for none. */
  pre: [bigint, bigint];
  post: bigint;
  dev: bigint;
  local: (bigint | string)[] | undefined;
}

const PRE_PHASE: Record<string, bigint> = {
  a: 0n,
  alpha: 0n,
  b: 1n,
  beta: 1n,
  c: 2n,
  rc: 2n,
  pre: 2n,
  preview: 2n,
};

function pep440(v: string): Pep440Key | undefined {
  const m = PEP440.exec(v);
  if (m === null) return undefined;
  const release = (m[2] ?? '0').split('.').map(BigInt);
  // Trailing zeros do not order: 1.0 == 1.0.0.
  while (release.length > 1 && release[release.length - 1] === 0n) release.pop();
  const hasPre = m[3] !== undefined;
  const hasPost = m[5] !== undefined || m[6] !== undefined;
  const hasDev = m[8] !== undefined;
  let pre: [bigint, bigint];
  if (hasPre) pre = [PRE_PHASE[(m[3] ?? '').toLowerCase()] ?? 0n, BigInt(m[4] ?? '0')];
  // A dev release of a final version sorts before its prereleases (1.0.dev0 < 1.0a0).
  else if (!hasPost && hasDev) pre = [LOW, LOW];
  else pre = [HIGH, HIGH];
  const post = hasPost ? BigInt(m[5] ?? m[7] ?? '0') : LOW;
  const dev = hasDev ? BigInt(m[9] ?? '0') : HIGH;
  const local =
    m[10] === undefined
      ? undefined
      : m[10]
          .toLowerCase()
          .split(/[-_.]/)
          .map((p) => (/^\d+$/.test(p) ? BigInt(p) : p));
  return { epoch: BigInt(m[1] ?? '0'), release, pre, post, dev, local };
}

function compareRelease(a: bigint[], b: bigint[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const c = cmpBig(a[i] ?? 0n, b[i] ?? 0n);
    if (c !== 0) return c;
  }
  return 0;
}

function compareLocal(a: Pep440Key['local'], b: Pep440Key['local']): number {
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? -1 : 1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] as bigint | string;
    const y = b[i] as bigint | string;
    // Numeric segments rank above alphanumeric ones.
    let c: number;
    if (typeof x === 'bigint' && typeof y === 'bigint') c = cmpBig(x, y);
    else if (typeof x === 'bigint') c = 1;
    else if (typeof y === 'bigint') c = -1;
    else c = cmpStr(x, y);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function comparePep440(a: Pep440Key, b: Pep440Key): number {
  return (
    cmpBig(a.epoch, b.epoch) ||
    compareRelease(a.release, b.release) ||
    cmpBig(a.pre[0], b.pre[0]) ||
    cmpBig(a.pre[1], b.pre[1]) ||
    cmpBig(a.post, b.post) ||
    cmpBig(a.dev, b.dev) ||
    compareLocal(a.local, b.local)
  );
}

const LEGACY_REPLACE: Record<string, string> = { pre: 'c', preview: 'c', '-': 'final-', rc: 'c', dev: '@' };

/** The ordering key of a legacy (non PEP 440) version: a list of padded strings. */
function legacyKey(v: string): string[] {
  const parts: string[] = [];
  const raw = v.toLowerCase().split(/(\d+|[a-z]+|\.|-)/);
  const tokens: string[] = [];
  for (let part of raw) {
    part = LEGACY_REPLACE[part] ?? part;
    if (part === '' || part === '.') continue;
    tokens.push(/^\d/.test(part) ? part.padStart(8, '0') : `*${part}`);
  }
  tokens.push('*final');
  for (const t of tokens) {
    if (t.startsWith('*')) {
      if (t < '*final') while (parts[parts.length - 1] === '*final-') parts.pop();
      while (parts[parts.length - 1] === '00000000') parts.pop();
    }
    parts.push(t);
  }
  return parts;
}

function compareLegacy(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = cmpStr(a[i] ?? '', b[i] ?? '');
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** Whether `v` is a valid PEP 440 version. */
export function isPep440(v: string): boolean {
  return pep440(v) !== undefined;
}

/** Compare two PyPI versions (PEP 440; legacy versions sort before all PEP 440 ones). */
export function comparePypi(a: string, b: string): number {
  return compareParsedPypi(parsePypi(a), parsePypi(b));
}

/** A PyPI version read once: its PEP 440 key, or the legacy key when PEP 440 cannot read it. */
export type ParsedPypi = { pep440: Pep440Key } | { legacy: string[] };

/** Read a PyPI version for {@link compareParsedPypi}; every string reads (legacy at worst). */
export function parsePypi(v: string): ParsedPypi {
  const key = pep440(v);
  return key === undefined ? { legacy: legacyKey(v) } : { pep440: key };
}

/** Compare two versions read by {@link parsePypi}, exactly as {@link comparePypi} orders them. */
export function compareParsedPypi(a: ParsedPypi, b: ParsedPypi): number {
  if ('pep440' in a) return 'pep440' in b ? comparePep440(a.pep440, b.pep440) : 1;
  if ('pep440' in b) return -1;
  return compareLegacy(a.legacy, b.legacy);
}
