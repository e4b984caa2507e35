import { type Catalog, finishCatalog, lockfileError } from './lockfile.ts';
import type { Component, ComponentScope } from './model.ts';
import { formatPurl } from './purl.ts';
import { child, childText, parseXml, type XmlElement } from './xml.ts';

const COORD = /^[A-Za-z0-9_.-]+$/;
const MAVEN_VERSION = /^[A-Za-z0-9_.+-]+$/;

function mavenComponent(group: string, artifact: string, version: string, scope: ComponentScope): Component {
  return {
    name: `${group}:${artifact}`,
    version,
    purl: formatPurl({ type: 'maven', namespace: group, name: artifact, version }),
    ecosystem: 'maven',
    hashes: [],
    dependencies: [],
    scope,
  };
}

/**
 * Catalog the direct dependencies a Maven pom.xml declares. Versions may use `${property}`
 * placeholders defined in the pom's `<properties>` (or `project.version`/`project.parent.version`),
 * and may be left to the pom's own `<dependencyManagement>`. A version that cannot be resolved from
 * the pom alone (a parent or imported BOM manages it) or that is a range is refused, naming the
 * dependency: the SBOM does not guess. Transitive dependencies need a resolved lockfile.
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function catalogPom(text: string, where: string): Catalog {
  const root = parseXml(text, where);
  if (root.name !== 'project')
    throw lockfileError(where, `pom.xml: the root element is <${root.name}>, not <project>`);
  const parent = child(root, 'parent');
  const props = new Map<string, string>();
  const put = (k: string, v: string | undefined) => v !== undefined && props.set(k, v);
  put('project.groupId', childText(root, 'groupId') ?? childText(parent, 'groupId'));
  put('project.artifactId', childText(root, 'artifactId'));
  put('project.version', childText(root, 'version') ?? childText(parent, 'version'));
  put('project.parent.version', childText(parent, 'version'));
  put('project.parent.groupId', childText(parent, 'groupId'));
  for (const p of child(root, 'properties')?.children ?? []) props.set(p.name, p.text.trim());
  const expand = (s: string, el: XmlElement): string => {
    let out = s;
    // Properties may refer to properties; a bounded number of rounds stops cycles.
    for (let round = 0; round < 16 && out.includes('${'); round++)
      out = out.replace(
        /\$\{([^}]+)\}/g,
        (m, k: string) => props.get(k.startsWith('pom.') ? `project.${k.slice(4)}` : k) ?? m,
      );
    const left = /\$\{([^}]+)\}/.exec(out);
    if (left !== null)
      throw lockfileError(where, `pom.xml: property \${${left[1]}} is not defined in this pom`, {
        line: el.line,
        column: el.column,
      });
    return out;
  };
  const managed = new Map<string, string>();
  for (const d of child(child(root, 'dependencyManagement'), 'dependencies')?.children ?? []) {
    const g = childText(d, 'groupId');
    const a = childText(d, 'artifactId');
    const v = childText(d, 'version');
    if (g !== undefined && a !== undefined && v !== undefined)
      managed.set(`${expand(g, d)}:${expand(a, d)}`, expand(v, d));
  }
  const byPurl = new Map<string, Component>();
  for (const d of child(root, 'dependencies')?.children ?? []) {
    if (d.name !== 'dependency') continue;
    const fail = (m: string) => lockfileError(where, `pom.xml: ${m}`, { line: d.line, column: d.column });
    const g = expand(childText(d, 'groupId') ?? '', d);
    const a = expand(childText(d, 'artifactId') ?? '', d);
    if (!COORD.test(g) || !COORD.test(a))
      throw fail(`dependency '${g}:${a}' has an invalid groupId or artifactId`);
    const raw = childText(d, 'version');
    const v = raw === undefined ? managed.get(`${g}:${a}`) : expand(raw, d);
    if (v === undefined)
      throw fail(
        `the version of ${g}:${a} is managed outside this pom (parent or BOM); pin it or catalogue a resolved lockfile`,
      );
    if (/^[[(]/.test(v)) throw fail(`${g}:${a} has a version range '${v}', not one version`);
    if (!MAVEN_VERSION.test(v)) throw fail(`${g}:${a} has an invalid version '${v}'`);
    const mscope = childText(d, 'scope') ?? 'compile';
    const scope: ComponentScope =
      mscope === 'test'
        ? 'dev'
        : childText(d, 'optional') === 'true' || mscope === 'provided'
          ? 'optional'
          : 'required';
    if (mscope === 'import') continue; // a BOM import in dependencies is a mistake Maven ignores too
    const c = mavenComponent(g, a, v, scope);
    const existing = byPurl.get(c.purl);
    if (existing === undefined) byPurl.set(c.purl, c);
    else if (scope === 'required') existing.scope = 'required';
  }
  const project: Catalog['project'] = {};
  const g = props.get('project.groupId');
  const a = props.get('project.artifactId');
  if (a !== undefined) project.name = g === undefined ? a : `${g}:${a}`;
  const pv = props.get('project.version');
  if (pv !== undefined) project.version = pv;
  return finishCatalog(project, byPurl.values(), byPurl.keys());
}

/**
 * Catalog a gradle.lockfile (Gradle dependency locking): `group:artifact:version=configurations`
 * lines. A module locked only in test or annotation-processor configurations is a dev component.
 * The lockfile records no edges and no direct dependencies.
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function catalogGradleLockfile(text: string, where: string): Catalog {
  const byPurl = new Map<string, Component>();
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const fail = (m: string, col = 1) =>
      lockfileError(where, `gradle.lockfile: ${m}`, { line: n + 1, column: col });
    const eq = line.indexOf('=');
    if (eq < 0) throw fail(`'${line}' is not 'group:artifact:version=configurations'`);
    const coord = line.slice(0, eq);
    if (coord === 'empty') continue;
    const parts = coord.split(':');
    if (parts.length !== 3) throw fail(`'${coord}' is not group:artifact:version`);
    const [g = '', a = '', v = ''] = parts;
    if (!COORD.test(g) || !COORD.test(a)) throw fail(`'${coord}' has an invalid group or artifact`);
    if (!MAVEN_VERSION.test(v)) throw fail(`'${coord}' has an invalid version`, g.length + a.length + 3);
    const configs = line
      .slice(eq + 1)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (configs.length === 0) throw fail(`'${coord}' names no configuration`, eq + 2);
    const dev = configs.every((c) =>
      /^test|Test[A-Z]|^annotationProcessor|^kapt|^detekt|^ktlint|^jacoco/.test(c),
    );
    const c = mavenComponent(g, a, v, dev ? 'dev' : 'required');
    if (byPurl.has(c.purl)) throw fail(`'${coord}' is listed twice`);
    byPurl.set(c.purl, c);
  }
  return finishCatalog({}, byPurl.values(), []);
}
