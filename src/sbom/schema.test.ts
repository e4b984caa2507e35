import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import type { AnySchema } from 'ajv';
import { Ajv } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import { writeCycloneDx } from './cyclonedx.ts';
import type { Component, Sbom } from './model.ts';
import { catalogNpmLockfile } from './npm-lock.ts';
import { writeSpdx } from './spdx.ts';

const require = createRequire(import.meta.url);
const SCHEMAS = `${require.resolve('@cyclonedx/cyclonedx-library/package.json').replace(/package\.json$/, '')}res/schema/`;
const SPDX_SCHEMA = new URL('../../../shared/data/sbom/spdx/spdx-2.3-schema.json', import.meta.url).pathname;
const load = (name: string) =>
  JSON.parse(readFileSync(`${SCHEMAS}${name}`, 'utf8')) as Record<string, unknown>;

function cycloneDxValidator(version: string) {
  const ajv = new Ajv({ strict: false, allErrors: false });
  addFormats.default(ajv);
  // ajv-formats has no IRI formats; an IRI reference is at least free of whitespace.
  ajv.addFormat('iri-reference', (s: string) => !/\s/.test(s));
  ajv.addFormat('idn-email', (s: string) => /^[^\s@]+@[^\s@]+$/.test(s));
  // The bom schemas refer to their companions by SNAPSHOT file name, relative to their own $id.
  for (const dep of ['spdx', 'jsf-0.82', 'cryptography-defs']) {
    if (!existsSync(`${SCHEMAS}${dep}.SNAPSHOT.schema.json`)) continue;
    ajv.addSchema({
      ...load(`${dep}.SNAPSHOT.schema.json`),
      $id: `http://cyclonedx.org/schema/${dep}.SNAPSHOT.schema.json`,
    } as AnySchema);
  }
  return ajv.compile(load(`bom-${version}.SNAPSHOT.schema.json`));
}

const lock = readFileSync(new URL('./testdata/package-lock.v3.json', import.meta.url), 'utf8');
const catalog = catalogNpmLockfile(lock, 'package-lock.json');
// Beside the npm fixture: an OS package of the build environment with a source package, and a
// licence that is not an SPDX expression, so every writer path is checked against the schema.
const osPackage: Component = {
  name: 'libc6',
  version: '2.36-9+deb12u4',
  purl: 'pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12',
  ecosystem: 'deb',
  hashes: [],
  dependencies: [],
  buildEnvironment: true,
  sourcePackage: { name: 'glibc', version: '2.36-9+deb12u4' },
  licenses: ['see /usr/share/doc/libc6/copyright'],
};
const sbom: Sbom = {
  subject: { name: 'dist/app.tar', sha256: 'ab'.repeat(32), dependencies: catalog.direct },
  components: [...catalog.components, osPackage],
};

describe('written SBOMs against the official schemas', () => {
  for (const version of ['1.5', '1.6', '1.7'] as const) {
    it(`CycloneDX ${version} validates against bom-${version}.schema.json`, () => {
      const validate = cycloneDxValidator(version);
      const doc = writeCycloneDx(sbom, { specVersion: version });
      assert.equal(doc.specVersion, version);
      assert.ok(validate(doc), JSON.stringify(validate.errors?.slice(0, 3)));
      // The validator is live: a broken document fails.
      assert.equal(validate({ ...doc, components: [{ type: 'library' }] }), false);
    });
  }

  it('SPDX 2.3 validates against spdx-2.3-schema.json', {
    skip: existsSync(SPDX_SCHEMA) ? false : 'reference data ../shared/data not present',
  }, () => {
    const ajv = new Ajv2019({ strict: false });
    addFormats.default(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(SPDX_SCHEMA, 'utf8')) as AnySchema);
    const doc = writeSpdx(sbom);
    assert.ok(validate(doc), JSON.stringify(validate.errors?.slice(0, 3)));
    assert.equal(validate({ ...doc, packages: [{ name: 'x' }] }), false);
  });
});
