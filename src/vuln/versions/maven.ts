/**
 * Maven version ordering (Maven's ComparableVersion rules): a version is a tree of lists of
 * numbers and qualifiers; `.` separates items, `-` and digit/letter changes open a sub-list;
 * known qualifiers order alpha < beta < milestone < rc < snapshot < release < sp, unknown ones
 * after sp alphabetically; trailing zeros and release qualifiers do not count.
 */
import { cmpBig, cmpStr } from './common.ts';

type Item = { kind: 'int'; value: bigint } | { kind: 'str'; value: string } | { kind: 'list'; items: Item[] };

const QUALIFIERS = ['alpha', 'beta', 'milestone', 'rc', 'snapshot', '', 'sp'];
const ALIASES: Record<string, string> = { ga: '', final: '', release: '', cr: 'rc' };
const RELEASE_INDEX = String(QUALIFIERS.indexOf(''));

function qualifierKey(q: string): string {
  const i = QUALIFIERS.indexOf(q);
  return i < 0 ? `${QUALIFIERS.length}-${q}` : String(i);
}

function stringItem(s: string, followedByDigit: boolean): Item {
  let v = s;
  if (followedByDigit && v.length === 1)
    v = v === 'a' ? 'alpha' : v === 'b' ? 'beta' : v === 'm' ? 'milestone' : v;
  return { kind: 'str', value: ALIASES[v] ?? v };
}

function item(isDigit: boolean, s: string): Item {
  return isDigit ? { kind: 'int', value: BigInt(s) } : stringItem(s, false);
}

function isNull(i: Item): boolean {
  if (i.kind === 'int') return i.value === 0n;
  if (i.kind === 'str') return qualifierKey(i.value) === RELEASE_INDEX;
  return i.items.length === 0;
}

function normalize(list: Item[]): void {
  for (let i = list.length - 1; i >= 0; i--) {
    const last = list[i] as Item;
    if (isNull(last)) list.splice(i, 1);
    else if (last.kind !== 'list') break;
  }
}

function parse(version: string): Item[] {
  const v = version.trim().toLowerCase();
  const root: Item[] = [];
  let list = root;
  const stack: Item[][] = [root];
  const open = (): void => {
    const sub: Item[] = [];
    list.push({ kind: 'list', items: sub });
    list = sub;
    stack.push(sub);
  };
  let isDigit = false;
  let start = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i] as string;
    if (c === '.' || c === '-') {
      const it = i === start ? ({ kind: 'int', value: 0n } as const) : item(isDigit, v.slice(start, i));
      start = i + 1;
      // A release qualifier between dashes (`1-ga-1`) says nothing: it neither adds an item
      // nor opens a level, so `1-ga-1` equals `1-1`.
      if (c === '-' && it.kind === 'str' && isNull(it) && list !== root) continue;
      list.push(it);
      if (c === '-') open();
    } else if (c >= '0' && c <= '9') {
      if (!isDigit && i > start) {
        // A qualifier directly followed by a number (`rc1`): the number is its own sub-list.
        list.push(stringItem(v.slice(start, i), true));
        start = i;
        open();
      }
      isDigit = true;
    } else {
      if (isDigit && i > start) {
        list.push(item(true, v.slice(start, i)));
        start = i;
        open();
      }
      isDigit = false;
    }
  }
  if (v.length > start) list.push(item(isDigit, v.slice(start)));
  while (stack.length > 0) normalize(stack.pop() as Item[]);
  return root;
}

function compare(a: Item | undefined, b: Item | undefined): number {
  if (a === undefined) return b === undefined ? 0 : -compare(b, undefined);
  switch (a.kind) {
    case 'int':
      if (b === undefined) return a.value === 0n ? 0 : 1;
      return b.kind === 'int' ? cmpBig(a.value, b.value) : 1;
    case 'str':
      if (b === undefined) return cmpStr(qualifierKey(a.value), RELEASE_INDEX);
      if (b.kind === 'int' || b.kind === 'list') return -1;
      return cmpStr(qualifierKey(a.value), qualifierKey(b.value));
    case 'list': {
      if (b === undefined) {
        for (const x of a.items) {
          const c = compare(x, undefined);
          if (c !== 0) return c;
        }
        return 0;
      }
      if (b.kind === 'int') return -1;
      if (b.kind === 'str') return 1;
      return compareLists(a.items, b.items);
    }
  }
}

function compareLists(a: Item[], b: Item[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const c = compare(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}

/** Compare two Maven versions. */
export function compareMaven(a: string, b: string): number {
  return compareLists(parse(a), parse(b));
}
