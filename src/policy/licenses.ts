import spdxCorrect from 'spdx-correct';
import parseSpdx from 'spdx-expression-parse';

/**
 * Licence categories a policy can name as `category:<name>`. A licence not in the table is in
 * no category (a rule can still name it by its SPDX id).
 */
export const LICENSE_CATEGORIES = {
  permissive: [
    '0BSD',
    'AFL-3.0',
    'Apache-1.1',
    'Apache-2.0',
    'Artistic-2.0',
    'BlueOak-1.0.0',
    'BSD-1-Clause',
    'BSD-2-Clause',
    'BSD-3-Clause',
    'BSD-3-Clause-Clear',
    'BSL-1.0',
    'ISC',
    'MIT',
    'MIT-0',
    'NCSA',
    'PostgreSQL',
    'PSF-2.0',
    'Python-2.0',
    'Python-2.0.1',
    'Ruby',
    'X11',
    'Zlib',
    'ZPL-2.1',
    'OpenSSL',
    'curl',
    'HPND',
    'W3C',
    'BSD-2-Clause-Patent',
    'UPL-1.0',
    'Unicode-DFS-2016',
    'Unicode-3.0',
  ],
  'public-domain': ['CC0-1.0', 'Unlicense', 'WTFPL', 'PDDL-1.0'],
  'weak-copyleft': [
    'LGPL-2.0-only',
    'LGPL-2.0-or-later',
    'LGPL-2.1-only',
    'LGPL-2.1-or-later',
    'LGPL-3.0-only',
    'LGPL-3.0-or-later',
    'MPL-1.1',
    'MPL-2.0',
    'EPL-1.0',
    'EPL-2.0',
    'CDDL-1.0',
    'CDDL-1.1',
    'CPL-1.0',
    'EUPL-1.1',
    'EUPL-1.2',
    'OSL-3.0',
    'MS-RL',
    'CC-BY-SA-4.0',
  ],
  'strong-copyleft': [
    'GPL-1.0-only',
    'GPL-1.0-or-later',
    'GPL-2.0-only',
    'GPL-2.0-or-later',
    'GPL-3.0-only',
    'GPL-3.0-or-later',
    'AGPL-1.0-only',
    'AGPL-1.0-or-later',
    'AGPL-3.0-only',
    'AGPL-3.0-or-later',
    'SSPL-1.0',
    'OSL-3.0',
    'EUPL-1.2',
  ],
  'network-copyleft': [
    'AGPL-1.0-only',
    'AGPL-1.0-or-later',
    'AGPL-3.0-only',
    'AGPL-3.0-or-later',
    'SSPL-1.0',
  ],
  'non-commercial': ['CC-BY-NC-4.0', 'CC-BY-NC-SA-4.0', 'CC-BY-NC-ND-4.0', 'PolyForm-Noncommercial-1.0.0'],
  'source-available': ['BUSL-1.1', 'Elastic-2.0', 'SSPL-1.0', 'Commons-Clause'],
} as const satisfies Record<string, readonly string[]>;

export type LicenseCategory = keyof typeof LICENSE_CATEGORIES;

const CATEGORY_OF = new Map<string, Set<string>>();
for (const [cat, ids] of Object.entries(LICENSE_CATEGORIES))
  for (const id of ids) CATEGORY_OF.set(id, (CATEGORY_OF.get(id) ?? new Set()).add(cat));

/** A parsed SPDX expression tree. */
export type LicenseTree =
  | { license: string; exception?: string }
  | { left: LicenseTree; conjunction: 'and' | 'or'; right: LicenseTree };

/** A component's licence, read: an SPDX expression tree, or unknown with the reason. */
export type ReadLicense =
  | { known: true; expression: string; tree: LicenseTree }
  | { known: false; why: string };

const UNKNOWN_WORDS = new Set(['NOASSERTION', 'NONE', '']);

/**
 * Read the licences an SBOM declares for a component into one SPDX expression (declared
 * licences are ANDed). Each licence id is normalised with spdx-correct (`Apache 2` →
 * `Apache-2.0`); `NOASSERTION`, `NONE`, nothing declared, and anything that stays unparseable
 * are unknown, which the policy decides.
 */
export function readLicense(declared: readonly string[] | undefined): ReadLicense {
  if (declared === undefined || declared.length === 0) return { known: false, why: 'no licence declared' };
  const trees: LicenseTree[] = [];
  for (const raw of declared) {
    const text = raw.trim();
    if (UNKNOWN_WORDS.has(text.toUpperCase()))
      return { known: false, why: `licence is ${text === '' ? 'empty' : text}` };
    let tree: LicenseTree | undefined;
    try {
      tree = correctTree(parseSpdx(text) as LicenseTree);
    } catch {
      // Not an expression: a free-form name spdx-correct may recognise.
      const fixed = spdxCorrect(text, { upgrade: true });
      if (fixed !== null) {
        try {
          tree = parseSpdx(fixed) as LicenseTree;
        } catch {
          tree = undefined;
        }
      }
    }
    if (tree === undefined) return { known: false, why: `licence '${text}' is not an SPDX expression` };
    trees.push(tree);
  }
  const [first, ...rest] = trees as [LicenseTree, ...LicenseTree[]];
  const tree = rest.reduce<LicenseTree>((acc, t) => ({ left: acc, conjunction: 'and', right: t }), first);
  return { known: true, expression: render(tree), tree };
}

function correctTree(t: LicenseTree): LicenseTree {
  if ('license' in t) {
    if (t.license.startsWith('LicenseRef-') || t.license.startsWith('DocumentRef-')) return t;
    const fixed = spdxCorrect(t.license, { upgrade: true }) ?? t.license;
    return t.exception === undefined ? { license: fixed } : { license: fixed, exception: t.exception };
  }
  return { left: correctTree(t.left), conjunction: t.conjunction, right: correctTree(t.right) };
}

/** The normalised text of a licence tree. */
export function render(t: LicenseTree): string {
  if ('license' in t) return t.exception === undefined ? t.license : `${t.license} WITH ${t.exception}`;
  const side = (x: LicenseTree) =>
    'conjunction' in x && x.conjunction !== t.conjunction ? `(${render(x)})` : render(x);
  return `${side(t.left)} ${t.conjunction.toUpperCase()} ${side(t.right)}`;
}

/** Whether a licence id is named by a list of ids and `category:<name>` entries. */
export function licenseNamed(id: string, names: readonly string[]): boolean {
  for (const n of names) {
    if (n.startsWith('category:')) {
      if (CATEGORY_OF.get(id)?.has(n.slice('category:'.length)) === true) return true;
    } else if (n === id) return true;
  }
  return false;
}

/**
 * The licence choices an expression offers: each choice is a set of licences that must all be
 * honoured (OR gives alternatives, AND joins requirements).
 */
export function licenseChoices(t: LicenseTree): string[][] {
  if ('license' in t) return [[t.license]];
  const l = licenseChoices(t.left);
  const r = licenseChoices(t.right);
  if (t.conjunction === 'or') return [...l, ...r];
  const out: string[][] = [];
  for (const a of l) for (const b of r) out.push([...a, ...b]);
  // Bound the expansion: pathological expressions should not blow up evaluation.
  return out.slice(0, 256);
}
