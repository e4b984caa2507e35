import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { readCycloneDx, writeCycloneDx } from './cyclonedx.ts';
import type { Sbom } from './model.ts';
import { catalogNpmLockfile } from './npm-lock.ts';

const DATA = new URL('../../../shared/data/sbom/', import.meta.url).pathname;
const EXAMPLES = join(DATA, 'cyclonedx-examples');
const SPEC_TESTS = join(DATA, 'cyclonedx-1.6-tests');
const skipUnless = (path: string) => ({
  skip: existsSync(path) ? false : 'reference data ../shared/data not present',
});

const lock = readFileSync(new URL('./testdata/package-lock.v3.json', import.meta.url), 'utf8');
const catalog = catalogNpmLockfile(lock, 'package-lock.json');
const sbom: Sbom = {
  subject: { name: 'demo-app', version: '1.0.0', sha256: 'AB'.repeat(32), dependencies: catalog.direct },
  components: catalog.components,
};
const SERIAL = 'urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79';
const fixed = { serialNumber: SERIAL, timestamp: '2025-01-02T03:04:05Z' };

describe('CycloneDX 1.6 writing', () => {
  // The official schemas are checked with ajv in schema.test.ts; these pin gatehouse's choices.
  const doc = writeCycloneDx(sbom, fixed);

  it('writes the 1.6 header with the given serial number and timestamp', () => {
    assert.equal(doc.bomFormat, 'CycloneDX');
    assert.equal(doc.specVersion, '1.6');
    assert.equal(doc.serialNumber, SERIAL);
    assert.equal(doc.version, 1);
    assert.equal(doc.metadata.timestamp, '2025-01-02T03:04:05Z');
    assert.equal(doc.$schema, 'http://cyclonedx.org/schema/bom-1.6.schema.json');
  });

  it('names gatehouse as the tool, in the 1.5+ tools.components form', () => {
    const [tool] = doc.metadata.tools.components;
    assert.equal(tool?.type, 'application');
    assert.equal(tool?.name, 'gatehouse');
    assert.match(tool?.version ?? '', /^\d+\.\d+\.\d+/);
  });

  it('describes the built artifact with its SHA-256 in metadata.component', () => {
    assert.deepEqual(doc.metadata.component, {
      type: 'application',
      'bom-ref': 'gatehouse:subject:demo-app',
      name: 'demo-app',
      version: '1.0.0',
      hashes: [{ alg: 'SHA-256', content: 'ab'.repeat(32) }],
    });
  });

  it('keys each component by its purl and splits the npm scope into group', () => {
    const n = doc.components.find((c) => c.purl === 'pkg:npm/%40s/n@3.1.0-beta.1');
    assert.equal(n?.['bom-ref'], 'pkg:npm/%40s/n@3.1.0-beta.1');
    assert.equal(n?.type, 'library');
    assert.equal(n?.group, '@s');
    assert.equal(n?.name, 'n');
    assert.deepEqual(n?.licenses, [{ expression: '(MIT OR Apache-2.0)' }]);
  });

  it('maps dev components to scope excluded with the npm development property', () => {
    const d = doc.components.find((c) => c.name === 'd');
    assert.equal(d?.scope, 'excluded');
    assert.deepEqual(d?.properties, [{ name: 'cdx:npm:package:development', value: 'true' }]);
    assert.equal(doc.components.find((c) => c.name === 'fsevents')?.scope, 'optional');
  });

  it('follows the schema rules: unique bom-refs, known refs in dependencies, valid hashes', () => {
    const refs = new Set([doc.metadata.component?.['bom-ref'], ...doc.components.map((c) => c['bom-ref'])]);
    assert.equal(refs.size, doc.components.length + 1);
    for (const d of doc.dependencies) {
      assert.ok(refs.has(d.ref));
      assert.equal(new Set(d.dependsOn).size, d.dependsOn.length);
      for (const to of d.dependsOn) assert.ok(refs.has(to), `${d.ref} → ${to}`);
    }
    const lengths: Record<string, number> = { 'SHA-1': 40, 'SHA-256': 64, 'SHA-384': 96, 'SHA-512': 128 };
    for (const c of doc.components)
      for (const h of c.hashes ?? []) assert.match(h.content, new RegExp(`^[0-9a-f]{${lengths[h.alg]}}$`));
    for (const c of doc.components) {
      const l = c.licenses ?? [];
      // Either one expression or only named licences.
      assert.ok(!l.some((x) => 'expression' in x) || l.length === 1);
    }
  });

  it('reads back to the same components', () => {
    const back = readCycloneDx(JSON.stringify(doc), 'mem');
    assert.deepEqual(back.components, sbom.components);
    assert.deepEqual(back.subject, {
      ...sbom.subject,
      sha256: 'ab'.repeat(32),
      dependencies: catalog.direct,
    });
  });

  it('writes a fresh random serial number and the current time by default', () => {
    const a = writeCycloneDx(sbom);
    const b = writeCycloneDx(sbom);
    assert.notEqual(a.serialNumber, b.serialNumber);
    assert.match(a.serialNumber, /^urn:uuid:[0-9a-f-]{36}$/);
    assert.ok(Math.abs(Date.parse(a.metadata.timestamp) - Date.now()) < 60_000);
  });

  it('refuses a serial number that is not a urn:uuid, a bad timestamp, and repeated purls', () => {
    assert.throws(() => writeCycloneDx(sbom, { serialNumber: 'urn:uuid:123' }), /urn:uuid/);
    assert.throws(() => writeCycloneDx(sbom, { timestamp: '2020-04-13' }), /RFC 3339/);
    const [first] = sbom.components;
    assert.ok(first);
    assert.throws(
      () => writeCycloneDx({ components: [first, first] }),
      (e: unknown) => isGatehouseError(e, 'BAD_SBOM') && /repeats the purl/.test(e.message),
    );
  });
});

describe('CycloneDX reading', () => {
  it('reads every real example SBOM', skipUnless(EXAMPLES), () => {
    const expected: Record<string, number> = {
      'dropwizard-1.3.15.cdx.json': 167,
      'keycloak-10.0.2.cdx.json': 903,
      'protonmail-webclient-v4-0912dff.cdx.json': 883,
    };
    for (const f of readdirSync(EXAMPLES).filter((x) => x.endsWith('.json'))) {
      const s = readCycloneDx(readFileSync(join(EXAMPLES, f), 'utf8'), f);
      assert.ok(s.components.length > 100, f);
      if (expected[f] !== undefined)
        assert.equal(s.components.length + (s.unidentified?.length ?? 0), expected[f], f);
      for (const c of s.components) assert.ok(c.purl.startsWith('pkg:') && c.version !== '', f);
    }
  });

  it('keeps the dependency graph of an SBOM that has one', skipUnless(EXAMPLES), () => {
    const s = readCycloneDx(readFileSync(join(EXAMPLES, 'keycloak-10.0.2.cdx.json'), 'utf8'), 'keycloak');
    assert.ok(s.components.some((c) => c.dependencies.length > 0));
    const purls = new Set(s.components.map((c) => c.purl));
    for (const c of s.components) for (const d of c.dependencies) assert.ok(purls.has(d));
  });

  it('names npm components by scope and name, and Maven ones by group:artifact', skipUnless(EXAMPLES), () => {
    const shop = readCycloneDx(readFileSync(join(EXAMPLES, 'juice-shop.cdx.json'), 'utf8'), 'juice-shop');
    assert.ok(shop.components.some((c) => c.name === '@babel/helper-string-parser' && c.ecosystem === 'npm'));
    const kc = readCycloneDx(readFileSync(join(EXAMPLES, 'keycloak-10.0.2.cdx.json'), 'utf8'), 'keycloak');
    assert.ok(
      kc.components.some((c) => c.name === 'org.bouncycastle:bcprov-jdk15on' && c.ecosystem === 'maven'),
    );
  });

  it('reads every valid-*.json test of the 1.6 specification', skipUnless(SPEC_TESTS), () => {
    for (const f of readdirSync(SPEC_TESTS).filter((x) => x.startsWith('valid-'))) {
      assert.doesNotThrow(() => readCycloneDx(readFileSync(join(SPEC_TESTS, f), 'utf8'), f), f);
    }
  });

  // The reader checks what the model relies on (identity, hashes, scope, licences, graph) plus the
  // enumerations the specification's own invalid cases exercise (swid, pedigree, service data).
  const refusedSpecCases = existsSync(SPEC_TESTS)
    ? readdirSync(SPEC_TESTS).filter((x) => x.startsWith('invalid-'))
    : ['invalid-*.json'];
  for (const f of refusedSpecCases) {
    it(`refuses the specification's ${f}`, skipUnless(SPEC_TESTS), () => {
      assert.throws(
        () => readCycloneDx(readFileSync(join(SPEC_TESTS, f), 'utf8'), f),
        (e: unknown) =>
          isGatehouseError(e, 'BAD_SBOM') && e.where === f && /^CycloneDX \S+: /.test(e.message),
      );
    });
  }

  const base = { bomFormat: 'CycloneDX', specVersion: '1.6', version: 1 };
  const lib = { type: 'library', name: 'x', version: '1.0.0', purl: 'pkg:npm/x@1.0.0' };
  const adversarial: [string, unknown, RegExp][] = [
    ['text that is not JSON', '{"bomFormat":', /not valid JSON/],
    ['an array', [], /the document/],
    ['SPDX handed in as CycloneDX', { spdxVersion: 'SPDX-2.3' }, /bomFormat/],
    ['spec version 1.1', { ...base, specVersion: '1.1' }, /specVersion/],
    ['components that is not an array', { ...base, components: {} }, /components/],
    [
      'a component with an invalid purl',
      { ...base, components: [{ ...lib, purl: 'pkg:npm' }] },
      /components\[0\] has an invalid purl 'pkg:npm'/,
    ],
    [
      'a hash with non-hex content',
      { ...base, components: [{ ...lib, hashes: [{ alg: 'SHA-256', content: 'z'.repeat(64) }] }] },
      /components\[0\]\.hashes\[0\]\.content/,
    ],
    [
      'a repeated bom-ref',
      {
        ...base,
        components: [
          { ...lib, 'bom-ref': 'a' },
          { ...lib, 'bom-ref': 'a' },
        ],
      },
      /repeats bom-ref 'a'/,
    ],
    [
      'a nested malformed component',
      { ...base, components: [{ ...lib, components: [{ type: 'library' }] }] },
      /components\[0\]\.components\[0\]\.name/,
    ],
  ];
  for (const [what, input, message] of adversarial) {
    it(`refuses ${what} with BAD_SBOM naming the field`, () => {
      assert.throws(
        () => readCycloneDx(typeof input === 'string' ? input : JSON.stringify(input), 'in.json'),
        (e: unknown) => isGatehouseError(e, 'BAD_SBOM') && message.test(e.message),
      );
    });
  }

  it('lists components without purl or version as unidentified, not as matchable components', () => {
    const s = readCycloneDx({ ...base, components: [lib, { type: 'file', name: 'blob' }] }, 'x');
    assert.equal(s.components.length, 1);
    assert.deepEqual(s.unidentified, [{ name: 'blob' }]);
  });
});
