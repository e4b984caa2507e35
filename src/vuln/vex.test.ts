import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import type { Finding } from './findings.ts';
import { parseVex, projectPurl, vexFor } from './vex.ts';

const VEX_DIR = new URL('../../../shared/data/sbom/cyclonedx-vex/', import.meta.url).pathname;
const skip = existsSync(VEX_DIR) ? false : 'reference data ../shared/data not present';
const read = (f: string): unknown => JSON.parse(readFileSync(`${VEX_DIR}${f}`, 'utf8'));

const finding = (purl: string, vulnId: string, aliases: string[] = []): Finding => ({
  vulnId,
  aliases,
  purl,
  name: 'x',
  version: '1',
  severity: 'high',
  fixedVersions: [],
  summary: '',
});

const openvex = (statements: unknown[]) => ({
  '@context': 'https://openvex.dev/ns/v0.2.0',
  '@id': 'https://example.test/vex-1',
  author: 'security@example.test',
  timestamp: '2024-01-01T00:00:00Z',
  statements,
});

describe('VEX documents', () => {
  it('reads an OpenVEX statement with products, subcomponents and a justification', () => {
    const [s] = parseVex(
      openvex([
        {
          vulnerability: { name: 'CVE-2021-44906', aliases: ['GHSA-xvch-5gv4-984h'] },
          products: [{ '@id': 'pkg:npm/app@1.0.0', subcomponents: [{ '@id': 'pkg:npm/minimist@1.2.5' }] }],
          status: 'not_affected',
          justification: 'vulnerable_code_not_in_execute_path',
        },
      ]),
      'v.json',
    );
    assert.deepEqual(s, {
      document: 'https://example.test/vex-1',
      vulnerability: 'CVE-2021-44906',
      aliases: ['GHSA-xvch-5gv4-984h'],
      products: ['pkg:npm/app@1.0.0'],
      subcomponents: ['pkg:npm/minimist@1.2.5'],
      status: 'not_affected',
      justification: 'vulnerable_code_not_in_execute_path',
    });
  });

  it('reads the CycloneDX VEX example, resolving a BOM-Link to the component purl', { skip }, () => {
    const [s] = parseVex(read('vex.json'), 'vex.json');
    assert.equal(s?.status, 'not_affected');
    assert.equal(s?.justification, 'code_not_reachable');
    assert.ok(
      s?.products.some((p) => p.startsWith('pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.10.0')),
    );
  });

  it('maps every CycloneDX analysis state of the CISA use cases', { skip }, () => {
    const states = ['not_affected', 'fixed', 'affected', 'under_investigation'].map(
      (f, i) =>
        parseVex(
          read(
            `CISA-Use-Cases/Case-1/vex-${['not_affected', 'fixed', 'affected', 'under_investigation'][i]}.json`,
          ),
          f,
        )[0]?.status,
    );
    assert.deepEqual(states, ['not_affected', 'fixed', 'affected', 'under_investigation']);
  });

  const bad: [string, unknown, RegExp][] = [
    ['a non-object', [], /not a JSON object/],
    ['an unknown format', { hello: 1 }, /neither OpenVEX/],
    ['OpenVEX without statements', { '@context': 'https://openvex.dev/ns/v0.2.0' }, /no statements/],
    [
      'a statement without a vulnerability',
      openvex([{ products: ['pkg:npm/a'], status: 'fixed' }]),
      /names no vulnerability/,
    ],
    [
      'a statement without products',
      openvex([{ vulnerability: 'CVE-1', status: 'fixed' }]),
      /names no product/,
    ],
    [
      'an unknown status',
      openvex([{ vulnerability: 'CVE-1', products: ['p'], status: 'fine' }]),
      /status 'fine'/,
    ],
    [
      'not_affected without a justification',
      openvex([{ vulnerability: 'CVE-1', products: ['p'], status: 'not_affected' }]),
      /without a justification/,
    ],
    [
      'a CycloneDX analysis state that does not exist',
      { bomFormat: 'CycloneDX', vulnerabilities: [{ id: 'CVE-1', analysis: { state: 'meh' } }] },
      /analysis state 'meh'/,
    ],
  ];
  for (const [what, doc, why] of bad)
    it(`refuses ${what}`, () =>
      assert.throws(
        () => parseVex(doc, 'f.json'),
        (e: unknown) => isGatehouseError(e, 'BAD_INPUT') && e.where === 'f.json' && why.test(e.message),
      ));
});

describe('VEX application', () => {
  const statements = parseVex(
    openvex([
      {
        vulnerability: 'CVE-1',
        products: ['pkg:npm/app@1.0.0'],
        subcomponents: ['pkg:npm/lib'],
        status: 'not_affected',
        justification: 'inline_mitigations_already_exist',
      },
      { vulnerability: 'CVE-2', products: ['pkg:npm/lib@2.0.0'], status: 'fixed' },
      {
        vulnerability: 'CVE-3',
        products: ['pkg:npm/app@1.0.0'],
        status: 'not_affected',
        impact_statement: 'x',
      },
      { vulnerability: 'CVE-3', products: ['pkg:npm/app@1.0.0'], status: 'affected' },
    ]),
    'v',
  );
  const subjects = ['pkg:npm/app@1.0.0'];

  it('suppresses a finding of a named subcomponent in the named product, by id or alias', () => {
    assert.equal(vexFor(finding('pkg:npm/lib@3.1.0', 'CVE-1'), statements, subjects)?.status, 'not_affected');
    assert.equal(
      vexFor(finding('pkg:npm/lib@3.1.0', 'GHSA-1', ['CVE-1']), statements, subjects)?.status,
      'not_affected',
    );
  });

  it('does not suppress for another product, another component or another vulnerability', () => {
    assert.equal(
      vexFor(finding('pkg:npm/lib@3.1.0', 'CVE-1'), statements, ['pkg:npm/other@1.0.0']),
      undefined,
    );
    assert.equal(vexFor(finding('pkg:npm/other-lib@1.0.0', 'CVE-1'), statements, subjects), undefined);
    assert.equal(vexFor(finding('pkg:npm/lib@3.1.0', 'CVE-9'), statements, subjects), undefined);
  });

  it('matches a versioned component purl exactly, whatever the product', () => {
    assert.equal(vexFor(finding('pkg:npm/lib@2.0.0', 'CVE-2'), statements, [])?.status, 'fixed');
    assert.equal(vexFor(finding('pkg:npm/lib@2.0.1', 'CVE-2'), statements, []), undefined);
  });

  it('suppresses nothing when statements that apply disagree', () => {
    assert.equal(vexFor(finding('pkg:npm/lib@3.1.0', 'CVE-3'), statements, subjects), undefined);
  });
});

describe('VEX scope: a statement applies only to the artifact it names', () => {
  const digestA = `sha256:${'a'.repeat(64)}`;
  const digestB = `sha256:${'b'.repeat(64)}`;
  const about = (products: string[], subcomponents: string[] = ['pkg:npm/minimist']) =>
    parseVex(
      openvex([
        {
          vulnerability: 'CVE-2021-44906',
          products,
          subcomponents,
          status: 'not_affected',
          justification: 'vulnerable_code_not_in_execute_path',
        },
      ]),
      'v',
    );
  const minimist = finding('pkg:npm/minimist@1.2.5', 'GHSA-xvch-5gv4-984h', ['CVE-2021-44906']);
  const projectA = [projectPurl('payments'), digestA];
  const projectB = [projectPurl('web'), digestB];

  it('applies to the project its product purl names, and to no other', () => {
    const vex = about(['pkg:generic/payments']);
    assert.equal(vexFor(minimist, vex, projectA)?.status, 'not_affected');
    assert.equal(vexFor(minimist, vex, projectB), undefined);
  });

  it('applies to the artifact whose digest it names, and to no other', () => {
    const vex = about([digestA]);
    assert.equal(vexFor(minimist, vex, projectA)?.status, 'not_affected');
    assert.equal(vexFor(minimist, vex, projectB), undefined);
  });

  it('never applies by an output path or a bare name another project may share', () => {
    for (const product of ['dist/app.tar', 'app.tar', 'payments', 'web'])
      assert.equal(vexFor(minimist, about([product]), [...projectA, ...projectB]), undefined, product);
  });

  it('does not let an unversioned component purl as the product silence every release everywhere', () => {
    assert.equal(vexFor(minimist, about(['pkg:npm/minimist'], []), projectB), undefined);
    assert.equal(vexFor(minimist, about(['pkg:npm/minimist@1.2.5'], []), projectB)?.status, 'not_affected');
  });
});
