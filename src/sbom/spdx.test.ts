import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { writeCycloneDx } from './cyclonedx.ts';
import type { Sbom } from './model.ts';
import { catalogNpmLockfile } from './npm-lock.ts';
import { readSbom, sbomAttestationTypes, sbomFormatOf } from './read.ts';
import { readSpdx, readSpdx3, writeSpdx } from './spdx.ts';

const DATA = new URL('../../../shared/data/sbom/', import.meta.url).pathname;
const skipUnless = (path: string) => ({
  skip: existsSync(path) ? false : 'reference data ../shared/data not present',
});
const EXAMPLE = join(DATA, 'spdx/SPDXJSONExample-v2.3.spdx.json');

const catalog = catalogNpmLockfile(
  readFileSync(new URL('./testdata/package-lock.v3.json', import.meta.url), 'utf8'),
  'x',
);
const sbom: Sbom = {
  subject: { name: 'dist/app.tar', sha256: 'cd'.repeat(32), dependencies: catalog.direct },
  components: [
    ...catalog.components,
    {
      name: 'libc6',
      version: '2.36-9',
      purl: 'pkg:deb/debian/libc6@2.36-9?arch=amd64',
      ecosystem: 'deb',
      hashes: [],
      dependencies: [],
      buildEnvironment: true,
      sourcePackage: { name: 'glibc', version: '2.36-9' },
    },
  ],
};
const sorted = (s: Sbom) => [...s.components].sort((a, b) => (a.purl < b.purl ? -1 : 1));

describe('SPDX 2.3 writing', () => {
  const doc = writeSpdx(sbom, { namespace: 'https://example.com/ns', created: '2025-01-02T03:04:05Z' });
  it('describes the artifact with its SHA-256 and lists components with purls', () => {
    assert.deepEqual(doc.documentDescribes, ['SPDXRef-Subject']);
    const subject = doc.packages.find((p) => p.SPDXID === 'SPDXRef-Subject');
    assert.deepEqual(subject?.checksums, [{ algorithm: 'SHA256', checksumValue: 'cd'.repeat(32) }]);
    assert.equal(doc.packages.length, sbom.components.length + 1);
  });
  it('marks dev components and runner-image packages by relationship', () => {
    const id = (purl: string) =>
      doc.packages.find((p) => p.externalRefs?.[0]?.referenceLocator === purl)?.SPDXID;
    const rel = (from: string | undefined, type: string) =>
      doc.relationships.some(
        (r) =>
          r.spdxElementId === from &&
          r.relationshipType === type &&
          r.relatedSpdxElement === 'SPDXRef-Subject',
      );
    assert.ok(rel(id('pkg:npm/d@1.0.0'), 'DEV_DEPENDENCY_OF'));
    assert.ok(rel(id('pkg:deb/debian/libc6@2.36-9?arch=amd64'), 'BUILD_TOOL_OF'));
  });
  it('keeps a licence that is not an SPDX expression as an extracted LicenseRef', () => {
    const d = writeSpdx({
      components: [{ ...sbom.components[0], licenses: ['Some Custom Licence'] } as Sbom['components'][0]],
    });
    assert.equal(d.packages[0]?.licenseDeclared, 'LicenseRef-1');
    assert.deepEqual(d.hasExtractedLicensingInfos, [
      { licenseId: 'LicenseRef-1', extractedText: 'Some Custom Licence', name: 'Some Custom Licence' },
    ]);
  });
  it('reads back to the same components, edges, scopes and subject', () => {
    const back = readSpdx(JSON.stringify(doc), 'x');
    assert.deepEqual(sorted(back), sorted(sbom));
    assert.deepEqual(back.subject, sbom.subject);
  });
  it('refuses a bad creation time and repeated purls', () => {
    assert.throws(() => writeSpdx(sbom, { created: '2025-01-02' }), /not YYYY-MM-DDThh:mm:ssZ/);
    const c = sbom.components[0];
    assert.ok(c);
    assert.throws(() => writeSpdx({ components: [c, c] }), /repeats the purl/);
  });
});

describe('SBOM attestation types', () => {
  it('signs SPDX under the SPDX predicate and CycloneDX under the CycloneDX one', () => {
    assert.deepEqual(sbomAttestationTypes(writeSpdx(sbom)), {
      predicateType: 'https://spdx.dev/Document',
      mediaType: 'application/spdx+json',
    });
    assert.deepEqual(sbomAttestationTypes(writeCycloneDx(sbom)), {
      predicateType: 'https://cyclonedx.org/bom',
      mediaType: 'application/vnd.cyclonedx+json',
    });
  });
});

describe('CycloneDX round trip of gatehouse properties', () => {
  it('keeps the build environment and source package through write and read', () => {
    const back = readSbom(JSON.stringify(writeCycloneDx(sbom)), 'x');
    assert.deepEqual(sorted(back), sorted(sbom));
  });
  it('writes 1.5 and 1.7 on request and refuses other versions', () => {
    assert.equal(
      writeCycloneDx(sbom, { specVersion: '1.5' }).$schema,
      'http://cyclonedx.org/schema/bom-1.5.schema.json',
    );
    assert.throws(() => writeCycloneDx(sbom, { specVersion: '1.4' as '1.5' }), /cannot be written/);
  });
});

describe('SPDX reading', () => {
  it('reads the SPDX 2.3 specification example', skipUnless(EXAMPLE), () => {
    const s = readSbom(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);
    assert.deepEqual(
      s.components.map((c) => c.purl),
      ['pkg:maven/org.apache.jena/apache-jena@3.12.0'],
    );
    assert.equal(s.components[0]?.name, 'org.apache.jena:apache-jena');
    // The described package is the subject; the others without a purl are reported as
    // unidentified, not dropped.
    assert.equal(s.subject?.name, 'glibc');
    assert.equal(s.subject?.sha256, '11b6d3ee554eedf79299905a98f9b9a04e498210b59f15094c916c91d150efcd');
    assert.deepEqual(s.unidentified?.map((u) => u.name).sort(), ['Apache Commons Lang', 'Saxon']);
  });
  it('reads SPDX 3.0 JSON-LD: packages, dependsOn, development scope, licences, the root as subject', () => {
    const s = readSbom(readFileSync(new URL('./testdata/spdx3.jsonld', import.meta.url), 'utf8'), 'x');
    assert.deepEqual(s.subject, {
      name: 'app',
      version: '1.0.0',
      sha256: 'ab'.repeat(32),
      dependencies: ['pkg:npm/jest@29.7.0', 'pkg:npm/lodash@4.17.21'],
    });
    const lodash = s.components.find((c) => c.name === 'lodash');
    assert.deepEqual(lodash?.licenses, ['MIT']);
    assert.equal(lodash?.hashes[0]?.alg, 'SHA-512');
    const jest = s.components.find((c) => c.name === 'jest');
    assert.equal(jest?.scope, 'dev');
    assert.deepEqual(jest?.dependencies, ['pkg:npm/lodash@4.17.21']);
    assert.deepEqual(s.unidentified, [{ name: 'mystery', bomRef: 'https://example.com/pkg/mystery' }]);
  });
  it(
    'reads every real CycloneDX example through the format-detecting reader',
    skipUnless(join(DATA, 'cyclonedx-examples')),
    () => {
      for (const f of readdirSync(join(DATA, 'cyclonedx-examples'))) {
        const path = join(DATA, 'cyclonedx-examples', f);
        const text = readFileSync(path, 'utf8');
        assert.equal(sbomFormatOf(JSON.parse(text)), 'cyclonedx');
        assert.ok(readSbom(text, path).components.length > 0, f);
      }
    },
  );

  const spdx = JSON.parse(JSON.stringify(writeSpdx(sbom))) as Record<string, unknown> & {
    packages: Record<string, unknown>[];
  };
  const bad: [string, unknown, RegExp][] = [
    ['text that is not JSON', '{"spdxVersion": "SPDX-2.3",', /not valid JSON/],
    ['a document of no known format', { hello: 1 }, /neither CycloneDX .* nor SPDX/],
    ['SPDX 2.1', { ...spdx, spdxVersion: 'SPDX-2.1' }, /spdxVersion: is not SPDX-2.2 or SPDX-2.3/],
    ['a package without SPDXID', { ...spdx, packages: [{ name: 'x' }] }, /packages\[0\]\.SPDXID/],
    [
      'a non-hex checksum',
      {
        ...spdx,
        packages: [{ ...spdx.packages[1], checksums: [{ algorithm: 'SHA1', checksumValue: 'zz' }] }],
      },
      /checksumValue: is not hex/,
    ],
    [
      'an invalid purl',
      {
        ...spdx,
        packages: [
          {
            ...spdx.packages[1],
            externalRefs: [
              { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: 'npm/x@1' },
            ],
          },
        ],
      },
      /packages\[0\] has an invalid purl 'npm\/x@1'/,
    ],
    ['a repeated SPDXID', { ...spdx, packages: [spdx.packages[1], spdx.packages[1]] }, /repeats SPDXID/],
    ['SPDX 3 without @graph array', { '@context': 'x', '@graph': {} }, /SPDX 3 @graph/],
    [
      'SPDX 3 package without name',
      { '@context': 'x', '@graph': [{ type: 'software_Package', spdxId: 'a' }] },
      /needs spdxId and name/,
    ],
    [
      'SPDX 3 relationship without from',
      { '@context': 'x', '@graph': [{ type: 'Relationship', relationshipType: 'dependsOn', to: ['a'] }] },
      /needs from and relationshipType/,
    ],
  ];
  for (const [what, input, message] of bad) {
    it(`refuses ${what} with BAD_SBOM naming the problem`, () => {
      assert.throws(
        () => readSbom(input, 'in.json'),
        (e: unknown) => isGatehouseError(e, 'BAD_SBOM') && e.where === 'in.json' && message.test(e.message),
      );
    });
  }
  it('readSpdx3 refuses an SPDX 2 document', () => {
    assert.throws(() => readSpdx3(spdx, 'x'), /SPDX 3/);
  });
});
