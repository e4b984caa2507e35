/**
 * Policy benchmark: import of the real Go and PyPI `all.zip` exports; one 10,000-component SBOM
 * (real Go modules and PyPI packages named by those advisories, plus npm packages matched
 * against a SYNTHETIC npm advisory set, labelled as such) evaluated against the whole database
 * on the gate's own path (the policy service's live in-memory index, its generation checked per
 * decision, then the default policy); and a policy of 50 CEL rules over 10,000 components.
 *
 * No peer tool runs here (osv-scanner and grype are not installable from the npm registry), so
 * there is no side-by-side column; the numbers stand alone.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_POLICY } from '../src/home/default-policy.ts';
import { EmbeddedPolicyEngine } from '../src/policy/embedded-engine.ts';
import { parsePolicy } from '../src/policy/policy.ts';
import { PolicyService } from '../src/policy/policy-service.ts';
import type { Component } from '../src/sbom/model.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { component } from '../src/testing/components.ts';
import { importOsv } from '../src/vuln/import.ts';
import { matchVulnerabilities } from '../src/vuln/match.ts';
import { parseOsvJson } from '../src/vuln/osv.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const DATA = new URL('../../shared/data/osv/', import.meta.url).pathname;
const ZIPS = { Go: join(DATA, 'Go', 'all.zip'), PyPI: join(DATA, 'PyPI', 'all.zip') };
const SYNTHETIC_NPM = 5000;
const COMPONENTS = 10_000;
const RUNS = 40;

/** SYNTHETIC npm advisories: one per package `synthetic-<i>`, affected below 2.0.0. */
async function syntheticNpm(store: SqliteStore): Promise<void> {
  const records = [];
  for (let i = 0; i < SYNTHETIC_NPM; i++) {
    const json = JSON.stringify({
      id: `SYNTH-npm-${i}`,
      modified: '2024-01-01T00:00:00Z',
      aliases: [`CVE-SYNTH-${i}`],
      summary: 'synthetic advisory (benchmark data)',
      database_specific: { severity: ['LOW', 'MODERATE', 'HIGH', 'CRITICAL'][i % 4] },
      affected: [
        {
          package: { ecosystem: 'npm', name: `synthetic-${i}` },
          ranges: [{ type: 'SEMVER', events: [{ introduced: '0' }, { fixed: '2.0.0' }] }],
        },
      ],
    });
    records.push({
      id: `SYNTH-npm-${i}`,
      modified: '2024-01-01T00:00:00Z',
      withdrawn: null,
      aliases: [`CVE-SYNTH-${i}`],
      json,
      packages: [{ ecosystem: 'npm', name: `synthetic-${i}` }],
    });
  }
  await store.vulns.upsert(records);
}

/** 10,000 components: Go modules and PyPI packages named by real advisories, plus npm ones. */
async function buildSbom(store: SqliteStore): Promise<Component[]> {
  const goNames = new Set<string>();
  const pyNames = new Set<string>();
  for (const r of await store.vulns.all()) {
    if (r.id.startsWith('SYNTH-')) continue;
    const rec = parseOsvJson(r.json, r.id);
    for (const a of rec.affected) {
      if (a.package?.ecosystem === 'Go') goNames.add(a.package.name);
      if (a.package?.ecosystem === 'PyPI') pyNames.add(a.package.name);
    }
  }
  const out: Component[] = [];
  const go = [...goNames].slice(0, 3000);
  const py = [...pyNames].slice(0, 3000);
  for (const [i, n] of go.entries()) {
    const v = i % 2 === 0 ? '0.1.0' : '99.0.0';
    out.push(component(`pkg:golang/${n}@v${v}`, { licenses: ['MIT'] }));
  }
  for (const [i, n] of py.entries()) {
    const v = i % 2 === 0 ? '0.1' : '9999.0';
    out.push(component(`pkg:pypi/${n.toLowerCase()}@${v}`, { name: n, licenses: ['MIT'] }));
  }
  for (let i = 0; out.length < COMPONENTS; i++) {
    const name = i < SYNTHETIC_NPM ? `synthetic-${i}` : `clean-${i}`;
    const v = i % 3 === 0 ? '2.1.0' : '1.4.2';
    out.push(component(`pkg:npm/${name}@${v}`, { licenses: ['MIT'] }));
  }
  return out;
}

function celPolicy(n: number): string {
  const rules = [];
  for (let i = 0; i < n; i++)
    rules.push(
      [
        `  - id: cel-${i}`,
        '    kind: cel',
        '    forEach: component',
        `    when: 'component.name == "never-${i}" || (component.ecosystem == "npm" && component.version.startsWith("0.0.${i}."))'`,
        `    message: rule ${i}`,
        '    action: warn',
      ].join('\n'),
    );
  return `apiVersion: gatehouse.dev/v1\nkind: Policy\nname: cel-bench\nrules:\n${rules.join('\n')}\n`;
}

function stats(samples: number[]): { p50: string; p95: string; min: string } {
  return {
    p50: percentile(samples, 50).toFixed(1),
    p95: percentile(samples, 95).toFixed(1),
    min: Math.min(...samples).toFixed(1),
  };
}

export async function run(): Promise<void> {
  if (!existsSync(ZIPS.Go) || !existsSync(ZIPS.PyPI)) {
    process.stdout.write(`policy benchmark skipped: reference data not found under ${DATA}\n`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-policy-'));
  try {
    const store = SqliteStore.open(join(dir, 'bench.db'));
    const imports: Record<string, string | number>[] = [];
    for (const [eco, zip] of Object.entries(ZIPS)) {
      const t0 = performance.now();
      const r = await importOsv([zip], store);
      imports.push({
        input: `${eco} all.zip (real)`,
        records: r.read,
        refused: r.refused.length,
        ms: Math.round(performance.now() - t0),
      });
    }
    const t1 = performance.now();
    const again = await importOsv([ZIPS.Go, ZIPS.PyPI], store);
    imports.push({
      input: 'both again (incremental, unchanged)',
      records: again.unchanged,
      refused: again.refused.length,
      ms: Math.round(performance.now() - t1),
    });
    const t2 = performance.now();
    await syntheticNpm(store);
    imports.push({
      input: `npm (SYNTHETIC, ${SYNTHETIC_NPM} records)`,
      records: SYNTHETIC_NPM,
      refused: 0,
      ms: Math.round(performance.now() - t2),
    });
    printTable('OSV import', imports);

    // The gate's path: the policy service's live index (home.ts hands the same one to the gate),
    // whose generation is read on every decision, then the policy engine.
    const service = new PolicyService({ store, trustedKeys: [] });
    const components = await buildSbom(store);
    const engine = new EmbeddedPolicyEngine({ policy: parsePolicy(DEFAULT_POLICY, 'default') });
    let findings = 0;
    let outcome = '';
    const decide = async (): Promise<number> => {
      // Each decision reads its SBOM afresh at the gate: fresh component objects, nothing of the
      // previous decision's per-component work carried over (read outside the timing).
      const fresh = structuredClone(components);
      const t = performance.now();
      const m = await service.match(fresh);
      const d = await engine.evaluate({
        project: 'bench',
        components: fresh,
        findings: m.findings,
        unmatched: m.unmatched,
        attestation: { verified: true, evidenceTypes: ['software-measurement'] },
      });
      findings = m.findings.length;
      outcome = d.outcome;
      return performance.now() - t;
    };
    const firstMs = await decide();
    const index = await service.vulnIndex.current();
    const evalSamples: number[] = [];
    const matchSamples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      evalSamples.push(await decide());
      const t = performance.now();
      await service.match(components);
      matchSamples.push(performance.now() - t);
    }
    // A write by any process moves the generation: the next decision reloads, then runs warm.
    const touched = await store.vulns.get('SYNTH-npm-0');
    if (touched !== undefined) await store.vulns.upsert([{ ...touched, modified: '2030-01-01T00:00:00Z' }]);
    const reloadMs = await decide();
    const storeSamples: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await matchVulnerabilities(components, store.vulns);
      storeSamples.push(performance.now() - t);
    }
    const celEngine = new EmbeddedPolicyEngine({ policy: parsePolicy(celPolicy(50), 'cel') });
    const celSamples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await celEngine.evaluate({ project: 'bench', components, findings: [] });
      celSamples.push(performance.now() - t);
    }
    const rows = [
      {
        what: `first decision: load ${index.size} records into memory + match + policy`,
        ...stats([firstMs]),
        runs: 1,
      },
      {
        what: `gate path: match + default policy, ${components.length} components (index loaded)`,
        ...stats(evalSamples),
        runs: RUNS,
      },
      { what: `  of which matching (generation check included)`, ...stats(matchSamples), runs: RUNS },
      { what: 'decision after another import (reload + match + policy)', ...stats([reloadMs]), runs: 1 },
      {
        what: `match, ${components.length} components, per-package SQLite lookups (before)`,
        ...stats(storeSamples),
        runs: 3,
      },
      { what: `50 CEL rules × ${components.length} components`, ...stats(celSamples), runs: 5 },
    ];
    printTable(`Evaluation (ms); ${findings} findings, outcome ${outcome}`, rows);
    const path = writeResult('policy', {
      note: 'npm advisories are SYNTHETIC (benchmark data); Go and PyPI are the real exports',
      imports,
      evaluation: rows,
      findings,
      targets: { evaluateMs: 200, importBothMs: 10_000 },
    });
    process.stdout.write(`\nwrote ${path}\n`);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
