import type { GatehouseError } from '../common/errors.ts';
import { lockfileError, positionAt } from './lockfile.ts';

/** A TOML value as this reader produces it. Tables have no prototype, so `__proto__` is a plain key. */
export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

const MAX_DEPTH = 64;
const BARE_KEY = /[A-Za-z0-9_-]/;

/**
 * A strict reader for the subset of TOML 1.0 that Cargo.lock, poetry.lock and uv.lock use: tables,
 * arrays of tables, dotted and quoted keys, the four string forms, decimal integers, booleans,
 * arrays and inline tables. Everything else (floats, dates, hex integers) is refused by name rather
 * than guessed at, as are duplicate keys and redefined tables.
 * @param where the file, for error messages
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function parseToml(text: string, where: string): TomlTable {
  return new TomlReader(text, where).document();
}

const table = (): TomlTable => Object.create(null) as TomlTable;
/** True when a TOML value is a table (not an array, not a scalar). */
export const isTable = (v: TomlValue | undefined): v is TomlTable =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

class TomlReader {
  #i = 0;
  readonly #text: string;
  readonly #where: string;
  // Tables opened by a [header] or holding key/values directly, and values that are complete
  // (inline tables and static arrays) and so may not be extended.
  readonly #defined = new Set<TomlTable>();
  readonly #frozen = new Set<TomlValue>();
  readonly #arrayTables = new Set<TomlValue[]>();

  constructor(text: string, where: string) {
    this.#text = text;
    this.#where = where;
  }

  #fail(message: string, at = this.#i): GatehouseError {
    return lockfileError(this.#where, `TOML: ${message}`, positionAt(this.#text, at));
  }

  #peek(n = 0): string {
    return this.#text[this.#i + n] ?? '';
  }

  #skipSpace(): void {
    while (this.#peek() === ' ' || this.#peek() === '\t') this.#i++;
  }

  #skipComment(): void {
    if (this.#peek() !== '#') return;
    while (this.#i < this.#text.length && this.#peek() !== '\n') {
      const c = this.#text.charCodeAt(this.#i);
      if ((c < 0x20 && c !== 0x09 && c !== 0x0d) || c === 0x7f)
        throw this.#fail('control character in a comment');
      this.#i++;
    }
  }

  #endOfLine(): void {
    this.#skipSpace();
    this.#skipComment();
    if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#i += 2;
    else if (this.#peek() === '\n') this.#i++;
    else if (this.#i < this.#text.length) throw this.#fail(`unexpected '${this.#peek()}' after a value`);
  }

  // Whitespace, newlines and comments, as allowed between array elements.
  #skipBlank(): void {
    for (;;) {
      this.#skipSpace();
      this.#skipComment();
      if (this.#peek() === '\n') this.#i++;
      else if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#i += 2;
      else return;
    }
  }

  document(): TomlTable {
    const root = table();
    let current = root;
    for (;;) {
      this.#skipBlank();
      if (this.#i >= this.#text.length) return root;
      if (this.#peek() === '[') {
        const start = this.#i;
        const array = this.#peek(1) === '[';
        this.#i += array ? 2 : 1;
        this.#skipSpace();
        const keys = this.#key();
        this.#skipSpace();
        if (this.#text.slice(this.#i, this.#i + (array ? 2 : 1)) !== (array ? ']]' : ']'))
          throw this.#fail(`table header is not closed with '${array ? ']]' : ']'}'`);
        this.#i += array ? 2 : 1;
        this.#endOfLine();
        current = array ? this.#openArrayTable(root, keys, start) : this.#openTable(root, keys, start);
      } else {
        const start = this.#i;
        const keys = this.#key();
        this.#skipSpace();
        if (this.#peek() !== '=') throw this.#fail("expected '=' after a key");
        this.#i++;
        this.#skipSpace();
        const value = this.#value(0);
        this.#assign(current, keys, value, start);
        this.#endOfLine();
      }
    }
  }

  #openTable(root: TomlTable, keys: string[], at: number): TomlTable {
    const parent = this.#openPath(root, keys.slice(0, -1), at);
    const k = keys[keys.length - 1] ?? '';
    const v = parent[k];
    let t: TomlTable;
    if (v === undefined) {
      t = table();
      parent[k] = t;
    } else if (isTable(v) && !this.#frozen.has(v)) {
      if (this.#defined.has(v)) throw this.#fail(`table [${keys.join('.')}] is defined twice`, at);
      t = v;
    } else throw this.#fail(`key '${keys.join('.')}' is already a value`, at);
    this.#defined.add(t);
    return t;
  }

  #openArrayTable(root: TomlTable, keys: string[], at: number): TomlTable {
    const parent = this.#openPath(root, keys.slice(0, -1), at);
    const k = keys[keys.length - 1] ?? '';
    let v = parent[k];
    if (v === undefined) {
      v = [];
      parent[k] = v;
      this.#arrayTables.add(v);
    } else if (!Array.isArray(v) || !this.#arrayTables.has(v))
      throw this.#fail(`[[${keys.join('.')}]] redefines a key that is not an array of tables`, at);
    const fresh = table();
    v.push(fresh);
    this.#defined.add(fresh);
    return fresh;
  }

  // Walk (creating implicitly) the tables a header passes through: tables, and the last table of an
  // array of tables.
  #openPath(root: TomlTable, keys: string[], at: number): TomlTable {
    return this.#walk(root, keys, at, 'is already a value', (v) => {
      if (isTable(v) && !this.#frozen.has(v)) return v;
      const last = Array.isArray(v) && this.#arrayTables.has(v) ? v[v.length - 1] : undefined;
      return isTable(last) ? last : undefined;
    });
  }

  /**
   * Walk `keys` from `t`, creating the tables that are not there yet; `into` names the table an
   * existing value lets the walk go on in, else the key is `taken` (an error naming it).
   */
  #walk(
    t: TomlTable,
    keys: string[],
    at: number,
    taken: string,
    into: (v: TomlValue) => TomlTable | undefined,
  ): TomlTable {
    let target = t;
    for (const [n, k] of keys.entries()) {
      const v = target[k];
      if (v === undefined) {
        const fresh = table();
        target[k] = fresh;
        target = fresh;
        continue;
      }
      const next = into(v);
      if (next === undefined) throw this.#fail(`key '${keys.slice(0, n + 1).join('.')}' ${taken}`, at);
      target = next;
    }
    return target;
  }

  #assign(t: TomlTable, keys: string[], value: TomlValue, at: number): void {
    // Dotted keys pass through tables they made themselves, never through a [table] or an inline one.
    const target = this.#walk(t, keys.slice(0, -1), at, 'is already defined', (v) =>
      isTable(v) && !this.#frozen.has(v) && !this.#defined.has(v) ? v : undefined,
    );
    const last = keys[keys.length - 1] ?? '';
    if (last in target) throw this.#fail(`key '${keys.join('.')}' is defined twice`, at);
    target[last] = value;
  }

  #key(): string[] {
    const keys: string[] = [];
    for (;;) {
      this.#skipSpace();
      const c = this.#peek();
      if (c === '"') keys.push(this.#basicString());
      else if (c === "'") keys.push(this.#literalString());
      else {
        const start = this.#i;
        while (BARE_KEY.test(this.#peek())) this.#i++;
        if (this.#i === start)
          throw this.#fail(
            c === '' ? 'unexpected end of file, expected a key' : `unexpected '${c}', expected a key`,
          );
        keys.push(this.#text.slice(start, this.#i));
      }
      this.#skipSpace();
      if (this.#peek() !== '.') return keys;
      this.#i++;
    }
  }

  #value(depth: number): TomlValue {
    if (depth > MAX_DEPTH) throw this.#fail(`values nest deeper than ${MAX_DEPTH} levels`);
    const c = this.#peek();
    if (c === '"')
      return this.#text.startsWith('"""', this.#i) ? this.#multilineBasic() : this.#basicString();
    if (c === "'")
      return this.#text.startsWith("'''", this.#i) ? this.#multilineLiteral() : this.#literalString();
    if (c === '[') return this.#array(depth);
    if (c === '{') return this.#inlineTable(depth);
    if (this.#text.startsWith('true', this.#i) && !BARE_KEY.test(this.#peek(4))) {
      this.#i += 4;
      return true;
    }
    if (this.#text.startsWith('false', this.#i) && !BARE_KEY.test(this.#peek(5))) {
      this.#i += 5;
      return false;
    }
    const start = this.#i;
    while (/[0-9A-Za-z_+\-.:]/.test(this.#peek())) this.#i++;
    const raw = this.#text.slice(start, this.#i);
    if (raw === '')
      throw this.#fail(
        c === '' ? 'unexpected end of file, expected a value' : `unexpected '${c}', expected a value`,
      );
    if (/^[+-]?(0|[1-9](_?[0-9])*)$/.test(raw)) {
      const n = Number(raw.replace(/_/g, ''));
      if (!Number.isSafeInteger(n)) throw this.#fail(`integer ${raw} is out of range`, start);
      return n;
    }
    throw this.#fail(
      `unsupported value '${raw}' (floats, dates and non-decimal integers are not used by lockfiles)`,
      start,
    );
  }

  #array(depth: number): TomlValue[] {
    this.#i++;
    const out: TomlValue[] = [];
    for (;;) {
      this.#skipBlank();
      if (this.#peek() === ']') {
        this.#i++;
        this.#frozen.add(out);
        return out;
      }
      out.push(this.#value(depth + 1));
      this.#skipBlank();
      if (this.#peek() === ',') this.#i++;
      else if (this.#peek() !== ']')
        throw this.#fail(
          this.#i >= this.#text.length ? 'array is not closed' : "expected ',' or ']' in an array",
        );
    }
  }

  #inlineTable(depth: number): TomlTable {
    const start = this.#i;
    this.#i++;
    const out = table();
    this.#skipSpace();
    if (this.#peek() === '}') {
      this.#i++;
      this.#frozen.add(out);
      return out;
    }
    const unclosed = () => {
      const p = positionAt(this.#text, start);
      return this.#fail(`inline table opened at ${p.line}:${p.column} is not closed on its line`);
    };
    for (;;) {
      this.#skipSpace();
      if (this.#i >= this.#text.length || this.#peek() === '\n' || this.#peek() === '\r') throw unclosed();
      const at = this.#i;
      const keys = this.#key();
      this.#skipSpace();
      if (this.#peek() !== '=') throw this.#fail("expected '=' after a key in an inline table");
      this.#i++;
      this.#skipSpace();
      this.#assign(out, keys, this.#value(depth + 1), at);
      this.#skipSpace();
      if (this.#peek() === ',') this.#i++;
      else if (this.#peek() === '}') {
        this.#i++;
        this.#frozen.add(out);
        // Tables made by dotted keys inside an inline table are complete too.
        for (const v of Object.values(out)) if (isTable(v)) this.#frozen.add(v);
        return out;
      } else throw unclosed();
    }
  }

  #control(c: number): boolean {
    return (c < 0x20 && c !== 0x09) || c === 0x7f;
  }

  #escape(): string {
    const c = this.#peek();
    this.#i++;
    const simple: Record<string, string> = {
      b: '\b',
      t: '\t',
      n: '\n',
      f: '\f',
      r: '\r',
      '"': '"',
      '\\': '\\',
    };
    const s = simple[c];
    if (s !== undefined) return s;
    if (c === 'u' || c === 'U') {
      const len = c === 'u' ? 4 : 8;
      const hex = this.#text.slice(this.#i, this.#i + len);
      if (!new RegExp(`^[0-9A-Fa-f]{${len}}$`).test(hex)) throw this.#fail(`invalid \\${c} escape`);
      const cp = Number.parseInt(hex, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        throw this.#fail(`\\${c}${hex} is not a Unicode scalar value`);
      this.#i += len;
      return String.fromCodePoint(cp);
    }
    throw this.#fail(`invalid escape '\\${c}'`, this.#i - 2);
  }

  #basicString(): string {
    const start = this.#i;
    this.#i++;
    let out = '';
    for (;;) {
      const c = this.#peek();
      if (c === '' || c === '\n') throw this.#fail('string is not closed on its line', start);
      this.#i++;
      if (c === '"') return out;
      if (c === '\\') out += this.#escape();
      else if (this.#control(c.charCodeAt(0))) throw this.#fail('control character in a string', this.#i - 1);
      else out += c;
    }
  }

  #literalString(): string {
    const start = this.#i;
    this.#i++;
    const end = this.#text.indexOf("'", this.#i);
    const nl = this.#text.indexOf('\n', this.#i);
    if (end < 0 || (nl >= 0 && nl < end)) throw this.#fail('string is not closed on its line', start);
    const s = this.#text.slice(this.#i, end);
    if ([...s].some((ch) => this.#control(ch.charCodeAt(0))))
      throw this.#fail('control character in a string', start);
    this.#i = end + 1;
    return s;
  }

  #multilineBasic(): string {
    const start = this.#i;
    this.#i += 3;
    if (this.#peek() === '\n') this.#i++;
    else if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#i += 2;
    let out = '';
    for (;;) {
      if (this.#i >= this.#text.length) throw this.#fail('multi-line string is not closed', start);
      if (this.#text.startsWith('"""', this.#i)) {
        // Up to two quotes may directly precede the closing delimiter.
        let n = 3;
        while (this.#peek(n) === '"' && n < 5) n++;
        out += '"'.repeat(n - 3);
        this.#i += n;
        return out;
      }
      const c = this.#peek();
      this.#i++;
      if (c === '\\') {
        // A line-ending backslash trims the newline and the whitespace that follows.
        const rest = /^[ \t]*\r?\n/.exec(this.#text.slice(this.#i, this.#i + 256));
        if (rest !== null) {
          this.#i += rest[0].length;
          while (/[ \t\r\n]/.test(this.#peek())) this.#i++;
        } else out += this.#escape();
      } else if (c !== '\n' && c !== '\r' && this.#control(c.charCodeAt(0)))
        throw this.#fail('control character in a string', this.#i - 1);
      else out += c;
    }
  }

  #multilineLiteral(): string {
    const start = this.#i;
    this.#i += 3;
    if (this.#peek() === '\n') this.#i++;
    else if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#i += 2;
    const end = this.#text.indexOf("'''", this.#i);
    if (end < 0) throw this.#fail('multi-line string is not closed', start);
    let close = end + 3;
    while (this.#text[close] === "'" && close < end + 5) close++;
    const s = this.#text.slice(this.#i, close - 3);
    this.#i = close;
    return s;
  }
}
