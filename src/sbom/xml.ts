import type { GatehouseError } from '../common/errors.ts';
import { lockfileError, positionAt } from './lockfile.ts';

/** One element of an XML document: its local name (prefix dropped), attributes, children and text. */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own character data, concatenated. */
  text: string;
  line: number;
  column: number;
}

const MAX_DEPTH = 256;
const NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*/;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * A small, safe XML reader for project files such as Maven's pom.xml. It refuses any DOCTYPE
 * (so no entity can be declared, expanded or fetched: no billion laughs, no XXE), knows only the
 * five predefined entities and character references, and checks that tags nest.
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function parseXml(text: string, where: string): XmlElement {
  let i = 0;
  const fail = (message: string, at = i): GatehouseError =>
    lockfileError(where, `XML: ${message}`, positionAt(text, at));

  const decode = (raw: string, at: number): string =>
    raw.replace(/&([^;&<]*);?/g, (m, ent: string) => {
      if (!m.endsWith(';')) throw fail(`'&' that does not start an entity reference`, at);
      const pre = PREDEFINED[ent];
      if (pre !== undefined) return pre;
      const num = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(ent);
      if (num !== null) {
        const cp = num[1] !== undefined ? Number.parseInt(num[1], 16) : Number(num[2]);
        if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
          throw fail(`character reference &${ent}; is not allowed`, at);
        return String.fromCodePoint(cp);
      }
      throw fail(`unknown entity &${ent}; (only the five predefined entities are allowed)`, at);
    });

  const skipMisc = (): void => {
    for (;;) {
      while (/\s/.test(text[i] ?? '')) i++;
      if (text.startsWith('<?', i)) {
        const end = text.indexOf('?>', i);
        if (end < 0) throw fail('processing instruction is not closed');
        i = end + 2;
      } else if (text.startsWith('<!--', i)) {
        const end = text.indexOf('-->', i + 4);
        if (end < 0) throw fail('comment is not closed');
        i = end + 3;
      } else if (text.startsWith('<!', i) && !text.startsWith('<![CDATA[', i)) {
        throw fail('DOCTYPE and other declarations are refused (no entities may be defined)');
      } else return;
    }
  };

  if (text.charCodeAt(0) === 0xfeff) i = 1;
  skipMisc();
  if (text[i] !== '<')
    throw fail(i >= text.length ? 'the document has no root element' : 'expected the root element');

  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (i < text.length) {
    if (stack.length === 0 && root !== undefined) {
      skipMisc();
      if (i < text.length) throw fail('content after the root element');
      break;
    }
    const c = text[i];
    if (c !== '<') {
      const end = text.indexOf('<', i);
      const stop = end < 0 ? text.length : end;
      const top = stack[stack.length - 1];
      if (top === undefined) throw fail('text outside the root element');
      top.text += decode(text.slice(i, stop), i);
      i = stop;
      if (end < 0) break;
      continue;
    }
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) throw fail('comment is not closed');
      i = end + 3;
    } else if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i);
      if (end < 0) throw fail('CDATA section is not closed');
      const top = stack[stack.length - 1];
      if (top !== undefined) top.text += text.slice(i + 9, end);
      i = end + 3;
    } else if (text.startsWith('<!', i)) {
      throw fail('DOCTYPE and other declarations are refused (no entities may be defined)');
    } else if (text.startsWith('<?', i)) {
      const end = text.indexOf('?>', i);
      if (end < 0) throw fail('processing instruction is not closed');
      i = end + 2;
    } else if (text.startsWith('</', i)) {
      const start = i;
      const m = NAME.exec(text.slice(i + 2, i + 2 + 512));
      if (m === null) throw fail('malformed closing tag');
      i += 2 + m[0].length;
      while (/\s/.test(text[i] ?? '')) i++;
      if (text[i] !== '>') throw fail(`closing tag </${m[0]}> is not closed`);
      i++;
      const top = stack.pop();
      const local = m[0].slice(m[0].indexOf(':') + 1);
      if (top === undefined || top.name !== local)
        throw fail(`</${m[0]}> does not close <${top?.name ?? '(nothing)'}>`, start);
    } else {
      const start = i;
      const m = NAME.exec(text.slice(i + 1, i + 1 + 512));
      if (m === null) throw fail('malformed tag');
      i += 1 + m[0].length;
      const pos = positionAt(text, start);
      const el: XmlElement = {
        name: m[0].slice(m[0].indexOf(':') + 1),
        attributes: Object.create(null) as Record<string, string>,
        children: [],
        text: '',
        line: pos.line,
        column: pos.column,
      };
      for (;;) {
        const ws = i;
        while (/\s/.test(text[i] ?? '')) i++;
        if (text[i] === '>' || text.startsWith('/>', i)) break;
        if (i >= text.length) throw fail(`<${m[0]}> is not closed (truncated?)`, start);
        if (i === ws) throw fail(`malformed attribute in <${m[0]}>`);
        const a = NAME.exec(text.slice(i, i + 512));
        if (a === null)
          throw fail(i >= text.length ? `<${m[0]}> is not closed` : `malformed attribute in <${m[0]}>`);
        i += a[0].length;
        while (/\s/.test(text[i] ?? '')) i++;
        if (text[i] !== '=') throw fail(`attribute ${a[0]} has no value`);
        i++;
        while (/\s/.test(text[i] ?? '')) i++;
        const q = text[i];
        if (q !== '"' && q !== "'") throw fail(`attribute ${a[0]} is not quoted`);
        const end = text.indexOf(q, i + 1);
        if (end < 0) throw fail(`attribute ${a[0]} is not closed`);
        const raw = text.slice(i + 1, end);
        if (raw.includes('<')) throw fail(`'<' in the value of attribute ${a[0]}`);
        if (a[0] in el.attributes) throw fail(`attribute ${a[0]} appears twice`);
        el.attributes[a[0]] = decode(raw, i);
        i = end + 1;
      }
      const parent = stack[stack.length - 1];
      if (parent !== undefined) parent.children.push(el);
      else root = el;
      if (text.startsWith('/>', i)) i += 2;
      else {
        i++;
        if (stack.length >= MAX_DEPTH) throw fail(`elements nest deeper than ${MAX_DEPTH} levels`, start);
        stack.push(el);
      }
    }
  }
  const open = stack[stack.length - 1];
  if (open !== undefined)
    throw fail(`<${open.name}> opened at ${open.line}:${open.column} is not closed (truncated?)`);
  if (root === undefined) throw fail('the document has no root element');
  return root;
}

/** The first child element with this name. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** The trimmed text of the first child element with this name. */
export function childText(el: XmlElement | undefined, name: string): string | undefined {
  const c = child(el, name);
  return c === undefined ? undefined : c.text.trim();
}
