import { GatehouseError } from '../common/errors.ts';

/**
 * CVSS v4.0 base (and threat) score, by the specification's method: the vector falls into a
 * MacroVector (six equivalence classes EQ1–EQ6) whose score FIRST published as a table; the
 * score is then lowered by the vector's mean proportional severity distance from the highest
 * vectors of that MacroVector. Environmental metrics are taken as not defined (CR/IR/AR high).
 */

// The published MacroVector scores (EQ1..EQ6 digits → score), from the CVSS v4.0 specification.
const MACRO_SCORES = `000000 10|000001 9.9|000010 9.8|000011 9.5|000020 9.5|000021 9.2|000100 10|000101 9.6|000110 9.3|000111 8.7|000120 9.1|000121 8.1|000200 9.3|000201 9|000210 8.9|000211 8|000220 8.1|000221 6.8|001000 9.8|001001 9.5|001010 9.5|001011 9.2|001020 9|001021 8.4|001100 9.3|001101 9.2|001110 8.9|001111 8.1|001120 8.1|001121 6.5|001200 8.8|001201 8|001210 7.8|001211 7|001220 6.9|001221 4.8|002001 9.2|002011 8.2|002021 7.2|002101 7.9|002111 6.9|002121 5|002201 6.9|002211 5.5|002221 2.7|010000 9.9|010001 9.7|010010 9.5|010011 9.2|010020 9.2|010021 8.5|010100 9.5|010101 9.1|010110 9|010111 8.3|010120 8.4|010121 7.1|010200 9.2|010201 8.1|010210 8.2|010211 7.1|010220 7.2|010221 5.3|011000 9.5|011001 9.3|011010 9.2|011011 8.5|011020 8.5|011021 7.3|011100 9.2|011101 8.2|011110 8|011111 7.2|011120 7|011121 5.9|011200 8.4|011201 7|011210 7.1|011211 5.2|011220 5|011221 3|012001 8.6|012011 7.5|012021 5.2|012101 7.1|012111 5.2|012121 2.9|012201 6.3|012211 2.9|012221 1.7|100000 9.8|100001 9.5|100010 9.4|100011 8.7|100020 9.1|100021 8.1|100100 9.4|100101 8.9|100110 8.6|100111 7.4|100120 7.7|100121 6.4|100200 8.7|100201 7.5|100210 7.4|100211 6.3|100220 6.3|100221 4.9|101000 9.4|101001 8.9|101010 8.8|101011 7.7|101020 7.6|101021 6.7|101100 8.6|101101 7.6|101110 7.4|101111 5.8|101120 5.9|101121 5|101200 7.2|101201 5.7|101210 5.7|101211 5.2|101220 5.2|101221 2.5|102001 8.3|102011 7|102021 5.4|102101 6.5|102111 5.8|102121 2.6|102201 5.3|102211 2.1|102221 1.3|110000 9.5|110001 9|110010 8.8|110011 7.6|110020 7.6|110021 7|110100 9|110101 7.7|110110 7.5|110111 6.2|110120 6.1|110121 5.3|110200 7.7|110201 6.6|110210 6.8|110211 5.9|110220 5.2|110221 3|111000 8.9|111001 7.8|111010 7.6|111011 6.7|111020 6.2|111021 5.8|111100 7.4|111101 5.9|111110 5.7|111111 5.7|111120 4.7|111121 2.3|111200 6.1|111201 5.2|111210 5.7|111211 2.9|111220 2.4|111221 1.6|112001 7.1|112011 5.9|112021 3|112101 5.8|112111 2.6|112121 1.5|112201 2.3|112211 1.3|112221 0.6|200000 9.3|200001 8.7|200010 8.6|200011 7.2|200020 7.5|200021 5.8|200100 8.6|200101 7.4|200110 7.4|200111 6.1|200120 5.6|200121 3.4|200200 7|200201 5.4|200210 5.2|200211 4|200220 4|200221 2.2|201000 8.5|201001 7.5|201010 7.4|201011 5.5|201020 6.2|201021 5.1|201100 7.2|201101 5.7|201110 5.5|201111 4.1|201120 4.6|201121 1.9|201200 5.3|201201 3.6|201210 3.4|201211 1.9|201220 1.9|201221 0.8|202001 6.4|202011 5.1|202021 2|202101 4.7|202111 2.1|202121 1.1|202201 2.4|202211 0.9|202221 0.4|210000 8.8|210001 7.5|210010 7.3|210011 5.3|210020 6|210021 5|210100 7.3|210101 5.5|210110 5.9|210111 4|210120 4.1|210121 2|210200 5.4|210201 4.3|210210 4.5|210211 2.2|210220 2|210221 1.1|211000 7.5|211001 5.5|211010 5.8|211011 4.5|211020 4|211021 2.1|211100 6.1|211101 5.1|211110 4.8|211111 1.8|211120 2|211121 0.9|211200 4.6|211201 1.8|211210 1.7|211211 0.7|211220 0.8|211221 0.2|212001 5.3|212011 2.4|212021 1.4|212101 2.4|212111 1.2|212121 0.5|212201 1|212211 0.3|212221 0.1`;

const LOOKUP: ReadonlyMap<string, number> = new Map(
  MACRO_SCORES.split('|').map((e) => {
    const [k, v] = e.split(' ');
    return [k ?? '', Number(v)];
  }),
);

/** The number of MacroVectors with a published score (270 in CVSS v4.0). */
export const CVSS4_MACROVECTORS = LOOKUP.size;

// Highest-severity vectors of each MacroVector level, per equivalence class (specification data).
const MAX_VECTORS: Record<string, Record<string, string[]>> = {
  eq1: {
    0: ['AV:N/PR:N/UI:N'],
    1: ['AV:A/PR:N/UI:N', 'AV:N/PR:L/UI:N', 'AV:N/PR:N/UI:P'],
    2: ['AV:P/PR:N/UI:N', 'AV:A/PR:L/UI:P'],
  },
  eq2: { 0: ['AC:L/AT:N'], 1: ['AC:H/AT:N', 'AC:L/AT:P'] },
  eq4: { 0: ['SC:H/SI:S/SA:S'], 1: ['SC:H/SI:H/SA:H'], 2: ['SC:L/SI:L/SA:L'] },
  eq5: { 0: ['E:A'], 1: ['E:P'], 2: ['E:U'] },
};
// EQ3 and EQ6 are scored together: keyed `${eq3}${eq6}`.
const MAX_VECTORS_EQ3EQ6: Record<string, string[]> = {
  '00': ['VC:H/VI:H/VA:H/CR:H/IR:H/AR:H'],
  '01': ['VC:H/VI:H/VA:L/CR:M/IR:M/AR:H', 'VC:H/VI:H/VA:H/CR:M/IR:M/AR:M'],
  '10': ['VC:L/VI:H/VA:H/CR:H/IR:H/AR:H', 'VC:H/VI:L/VA:H/CR:H/IR:H/AR:H'],
  '11': [
    'VC:L/VI:H/VA:L/CR:H/IR:M/AR:H',
    'VC:L/VI:H/VA:H/CR:H/IR:M/AR:M',
    'VC:H/VI:L/VA:H/CR:M/IR:H/AR:M',
    'VC:H/VI:L/VA:L/CR:M/IR:H/AR:H',
    'VC:L/VI:L/VA:H/CR:H/IR:H/AR:M',
  ],
  '21': ['VC:L/VI:L/VA:L/CR:H/IR:H/AR:H'],
};
// Depth of each MacroVector level in severity steps (specification data).
const MAX_DEPTH = {
  eq1: [1, 4, 5],
  eq2: [1, 2],
  eq3eq6: { '00': 7, '01': 6, '10': 8, '11': 8, '21': 10 } as Record<string, number>,
  eq4: [6, 5, 4],
};

// Severity level of each metric value, in tenths: 0 is the most severe.
const LEVEL: Record<string, Record<string, number>> = {
  AV: { N: 0, A: 1, L: 2, P: 3 },
  PR: { N: 0, L: 1, H: 2 },
  UI: { N: 0, P: 1, A: 2 },
  AC: { L: 0, H: 1 },
  AT: { N: 0, P: 1 },
  VC: { H: 0, L: 1, N: 2 },
  VI: { H: 0, L: 1, N: 2 },
  VA: { H: 0, L: 1, N: 2 },
  SC: { H: 1, L: 2, N: 3 },
  SI: { S: 0, H: 1, L: 2, N: 3 },
  SA: { S: 0, H: 1, L: 2, N: 3 },
  CR: { H: 0, M: 1, L: 2 },
  IR: { H: 0, M: 1, L: 2 },
  AR: { H: 0, M: 1, L: 2 },
};

const BASE: Record<string, string[]> = {
  AV: ['N', 'A', 'L', 'P'],
  AC: ['L', 'H'],
  AT: ['N', 'P'],
  PR: ['N', 'L', 'H'],
  UI: ['N', 'P', 'A'],
  VC: ['H', 'L', 'N'],
  VI: ['H', 'L', 'N'],
  VA: ['H', 'L', 'N'],
  SC: ['H', 'L', 'N'],
  SI: ['H', 'L', 'N'],
  SA: ['H', 'L', 'N'],
};
const THREAT: Record<string, string[]> = { E: ['X', 'A', 'P', 'U'] };

function parseVector(vector: string): Map<string, string> {
  const bad = (why: string) => new GatehouseError('BAD_INPUT', `CVSS vector '${vector}' ${why}`);
  const parts = vector.split('/');
  if (parts[0] !== 'CVSS:4.0') throw bad('is not CVSS v4.0');
  const m = new Map<string, string>();
  for (const p of parts.slice(1)) {
    const [k, v, extra] = p.split(':');
    if (k === undefined || v === undefined || extra !== undefined || m.has(k))
      throw bad(`has a malformed metric '${p}'`);
    const allowed = BASE[k] ?? THREAT[k];
    // Environmental and supplemental metrics are accepted and do not change the base score here.
    if (allowed !== undefined && !allowed.includes(v)) throw bad(`has an invalid value for ${k}`);
    m.set(k, v);
  }
  for (const k of Object.keys(BASE)) if (!m.has(k)) throw bad(`lacks ${k}`);
  // Not defined threat and requirement metrics count at their most severe.
  if (m.get('E') === undefined || m.get('E') === 'X') m.set('E', 'A');
  for (const k of ['CR', 'IR', 'AR']) m.set(k, 'H');
  return m;
}

function macroVector(m: Map<string, string>): [number, number, number, number, number, number] {
  const is = (k: string, v: string) => m.get(k) === v;
  const eq1 =
    is('AV', 'N') && is('PR', 'N') && is('UI', 'N')
      ? 0
      : (is('AV', 'N') || is('PR', 'N') || is('UI', 'N')) && !is('AV', 'P')
        ? 1
        : 2;
  const eq2 = is('AC', 'L') && is('AT', 'N') ? 0 : 1;
  const eq3 = is('VC', 'H') && is('VI', 'H') ? 0 : is('VC', 'H') || is('VI', 'H') || is('VA', 'H') ? 1 : 2;
  const eq4 = is('SI', 'S') || is('SA', 'S') ? 0 : is('SC', 'H') || is('SI', 'H') || is('SA', 'H') ? 1 : 2;
  const eq5 = is('E', 'A') ? 0 : is('E', 'P') ? 1 : 2;
  const eq6 =
    (is('CR', 'H') && is('VC', 'H')) || (is('IR', 'H') && is('VI', 'H')) || (is('AR', 'H') && is('VA', 'H'))
      ? 0
      : 1;
  return [eq1, eq2, eq3, eq4, eq5, eq6];
}

function metricsOf(partial: string): Map<string, string> {
  return new Map(partial.split('/').map((p) => p.split(':') as [string, string]));
}

/**
 * The CVSS v4.0 score of a vector such as
 * `CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N`.
 * @throws GatehouseError BAD_INPUT when the vector is not a complete v4.0 base vector
 */
export function cvss4Score(vector: string): number {
  const m = parseVector(vector);
  if (['VC', 'VI', 'VA', 'SC', 'SI', 'SA'].every((k) => m.get(k) === 'N')) return 0;
  const eqs = macroVector(m);
  const key = (e: number[]) => e.join('');
  const score = (e: number[]) => LOOKUP.get(key(e));
  const value = score(eqs);
  if (value === undefined) throw new GatehouseError('INTERNAL', `no CVSS v4 MacroVector ${key(eqs)}`);
  const [eq1, eq2, eq3, eq4, eq5, eq6] = eqs;
  const bump = (i: number, by = 1, j?: number) => eqs.map((x, k) => (k === i || k === j ? x + by : x));

  // The next lower MacroVector in each class; EQ3 and EQ6 move together.
  let lower36: number | undefined;
  if (eq3 === 0 && eq6 === 0) {
    const left = score(bump(5));
    const right = score(bump(2));
    lower36 = left === undefined ? right : right === undefined ? left : Math.max(left, right);
  } else if (eq3 === 1 && eq6 === 0) lower36 = score(bump(5));
  else if (eq6 === 1 && eq3 !== 2) lower36 = score(bump(2));
  else lower36 = score(bump(2, 1, 5));
  const lower = [score(bump(0)), score(bump(1)), lower36, score(bump(3)), score(bump(4))];

  // The first highest vector of this MacroVector that is at least as severe in every metric.
  const k36 = `${eq3}${eq6}`;
  let dist: Map<string, number> | undefined;
  for (const a of MAX_VECTORS.eq1?.[eq1] ?? [])
    for (const b of MAX_VECTORS.eq2?.[eq2] ?? [])
      for (const c of MAX_VECTORS_EQ3EQ6[k36] ?? [])
        for (const d of MAX_VECTORS.eq4?.[eq4] ?? []) {
          if (dist !== undefined) break;
          const max = metricsOf(`${a}/${b}/${c}/${d}`);
          const dd = new Map<string, number>();
          let ok = true;
          for (const [metric, levels] of Object.entries(LEVEL)) {
            const x = (levels[m.get(metric) ?? ''] ?? 0) - (levels[max.get(metric) ?? ''] ?? 0);
            if (x < 0) ok = false;
            dd.set(metric, x);
          }
          if (ok) dist = dd;
        }
  if (dist === undefined) throw new GatehouseError('INTERNAL', `no CVSS v4 highest vector for ${key(eqs)}`);
  const sum = (...ks: string[]) => ks.reduce((s, k) => s + (dist?.get(k) ?? 0), 0) / 10;
  const current = [
    sum('AV', 'PR', 'UI'),
    sum('AC', 'AT'),
    sum('VC', 'VI', 'VA', 'CR', 'IR', 'AR'),
    sum('SC', 'SI', 'SA'),
    0,
  ];
  const depth = [
    (MAX_DEPTH.eq1[eq1] ?? 1) / 10,
    (MAX_DEPTH.eq2[eq2] ?? 1) / 10,
    (MAX_DEPTH.eq3eq6[k36] ?? 1) / 10,
    (MAX_DEPTH.eq4[eq4] ?? 1) / 10,
    1,
  ];
  void eq5;
  let n = 0;
  let total = 0;
  for (let i = 0; i < 5; i++) {
    const next = lower[i];
    if (next === undefined) continue;
    n++;
    total += (value - next) * ((current[i] ?? 0) / (depth[i] ?? 1));
  }
  const s = Math.min(10, Math.max(0, value - (n === 0 ? 0 : total / n)));
  return Math.round(s * 10) / 10;
}
