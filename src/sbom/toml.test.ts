import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { parseToml } from './toml.ts';
import { parseXml } from './xml.ts';

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

describe('the TOML reader', () => {
  it('reads tables, arrays of tables, dotted and quoted keys, strings, integers, booleans and inline tables', () => {
    const doc = parseToml(
      [
        'version = 4 # comment',
        '"quoted key" = \'literal \\n\'',
        'a.b = "x\\u00e9\\t"',
        'multi = """',
        'one \\',
        '   two"""',
        "lit = '''",
        "raw \\n'''",
        'n = -1_000',
        'yes = true',
        'list = [',
        '  1, # first',
        '  2,',
        ']',
        '[[package]]',
        'name = "p"',
        'sdist = { url = "u", size = 3, nested.k = false }',
        '[package.deps]',
        'x = "1"',
        '[[package]]',
        'name = "q"',
      ].join('\n'),
      'f.toml',
    );
    assert.deepEqual(plain(doc), {
      version: 4,
      'quoted key': 'literal \\n',
      a: { b: 'x\u00e9\t' },
      multi: 'one two',
      lit: 'raw \\n',
      n: -1000,
      yes: true,
      list: [1, 2],
      package: [
        { name: 'p', sdist: { url: 'u', size: 3, nested: { k: false } }, deps: { x: '1' } },
        { name: 'q' },
      ],
    });
  });

  it('keeps __proto__ as a plain key', () => {
    const doc = parseToml('__proto__ = "x"\n[constructor]\nprototype = 1\n', 'f.toml');
    assert.equal(({} as Record<string, unknown>).x, undefined);
    assert.equal(Object.getPrototypeOf(doc), null);
    assert.equal(Object.getOwnPropertyDescriptor(doc, '__proto__')?.value, 'x');
  });

  const bad: [string, string, RegExp, string][] = [
    ['a duplicate key', 'a = 1\na = 2\n', /defined twice/, 'f.toml:2:1'],
    ['a table defined twice', '[a]\n[a]\n', /defined twice/, 'f.toml:2:1'],
    ['a table over a value', 'a = 1\n[a]\n', /already a value/, 'f.toml:2:1'],
    ['an array of tables over a table', '[a]\n[[a]]\n', /not an array of tables/, 'f.toml:2:1'],
    ['extending an inline table', 'a = { b = 1 }\n[a.c]\n', /already a value/, 'f.toml:2:1'],
    ['a float', 'a = 1.5\n', /unsupported value '1.5'/, 'f.toml:1:5'],
    ['a date', 'a = 1979-05-27\n', /unsupported value/, 'f.toml:1:5'],
    ['an unclosed string', 'a = "abc\nb = 1\n', /not closed/, 'f.toml:1:5'],
    ['an unclosed array', 'a = [1, 2', /array is not closed/, 'f.toml:1:10'],
    ['an unclosed multi-line string', 'a = """abc', /multi-line string is not closed/, 'f.toml:1:5'],
    ['an inline table over two lines', 'a = { b = 1,\n c = 2 }\n', /not closed on its line/, 'f.toml:1:13'],
    ['a bad escape', 'a = "\\q"\n', /invalid escape/, 'f.toml:1:6'],
    ['a surrogate escape', 'a = "\\uD800"\n', /not a Unicode scalar/, 'f.toml:1:8'],
    ['trailing garbage', 'a = 1 2\n', /unexpected '2'/, 'f.toml:1:7'],
    ['a key without a value', 'a =\n', /expected a value/, 'f.toml:1:4'],
    ['a bare word', 'garbage\n', /expected '='/, 'f.toml:1:8'],
    ['an integer out of range', 'a = 99999999999999999999\n', /out of range/, 'f.toml:1:5'],
    ['a control character', 'a = "\u0001"\n', /control character/, 'f.toml:1:6'],
    ['deep nesting', `a = ${'['.repeat(100)}${']'.repeat(100)}\n`, /deeper than 64/, 'f.toml:1:70'],
  ];
  for (const [what, text, message, where] of bad) {
    it(`refuses ${what} with its line and column`, () => {
      assert.throws(
        () => parseToml(text, 'f.toml'),
        (e: unknown) => isGatehouseError(e, 'BAD_LOCKFILE') && message.test(e.message) && e.where === where,
      );
    });
  }
});

describe('the XML reader', () => {
  it('reads elements, attributes, entities, CDATA and namespaced names', () => {
    const root = parseXml(
      '<?xml version="1.0"?>\n<!-- c -->\n<p:project a="1 &amp; 2"><x>a &lt; b &#65;&#x42;</x><y><![CDATA[<raw>]]></y><z/></p:project>',
      'f.xml',
    );
    assert.equal(root.name, 'project');
    assert.equal(root.attributes.a, '1 & 2');
    assert.deepEqual(
      root.children.map((c) => [c.name, c.text]),
      [
        ['x', 'a < b AB'],
        ['y', '<raw>'],
        ['z', ''],
      ],
    );
  });
  const bad: [string, string, RegExp][] = [
    ['a DOCTYPE', '<!DOCTYPE x><x/>', /DOCTYPE/],
    ['an internal entity declaration', '<x><!ENTITY a "b"></x>', /declarations are refused/],
    ['an unknown entity', '<x>&lol;</x>', /unknown entity/],
    ['a bare ampersand', '<x>a & b</x>', /does not start an entity/],
    ['a NUL character reference', '<x>&#0;</x>', /not allowed/],
    ['an unclosed element', '<x><y></y>', /<x> opened at 1:1 is not closed/],
    ['mismatched tags', '<x><y></x>', /does not close <y>/],
    ['two roots', '<x/><y/>', /content after the root/],
    ['a repeated attribute', '<x a="1" a="2"/>', /appears twice/],
    ['an unquoted attribute', '<x a=1/>', /not quoted/],
    ['an empty document', '  ', /no root element/],
    ['deep nesting', '<a>'.repeat(300), /deeper than 256/],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => parseXml(text, 'f.xml'),
        (e: unknown) =>
          isGatehouseError(e, 'BAD_LOCKFILE') &&
          message.test(e.message) &&
          /^f\.xml:\d+:\d+$/.test(e.where ?? ''),
      );
    });
  }
});
