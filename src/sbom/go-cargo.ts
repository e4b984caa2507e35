import { type Catalog, finishCatalog, lockfileError } from './lockfile.ts';
import type { Component } from './model.ts';
import { formatPurl } from './purl.ts';
import { isTable, parseToml, type TomlValue } from './toml.ts';

// ---- Go ----

const GO_MODULE = /^[A-Za-z0-9][A-Za-z0-9._~\-/+!]*$/;
const GO_VERSION = /^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

function goComponent(module: string, version: string): Component {
  const slash = module.lastIndexOf('/');
  const purl = formatPurl({
    type: 'golang',
    ...(slash > 0 ? { namespace: module.slice(0, slash) } : {}),
    name: module.slice(slash + 1),
    version,
  });
  return {
    name: module,
    version,
    purl,
    ecosystem: 'golang',
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
}

/** Strip a `//` comment that is not inside a quoted string; report whether it said `indirect`. */
function stripComment(line: string): { body: string; indirect: boolean } {
  let q: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q !== undefined) {
      if (c === '\\' && q === '"') i++;
      else if (c === q) q = undefined;
    } else if (c === '"' || c === '`') q = c;
    else if (c === '/' && line[i + 1] === '/') {
      const comment = line.slice(i + 2).trim();
      return { body: line.slice(0, i).trim(), indirect: /^indirect(;|$)/.test(comment) };
    }
  }
  return { body: line.trim(), indirect: false };
}

function unquote(s: string): string {
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) return JSON.parse(s) as string;
  if (s.startsWith('`') && s.endsWith('`') && s.length >= 2) return s.slice(1, -1);
  return s;
}

/**
 * Catalog a go.mod: every `require` (the module graph go 1.17+ records in full), with `replace`
 * directives applied (a local-path replacement makes the module part of the project) and
 * `exclude` ignored. `// indirect` requirements are not direct dependencies. go.mod records no
 * edges between modules.
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function catalogGoMod(text: string, where: string): Catalog {
  const requires: { module: string; version: string; indirect: boolean; line: number }[] = [];
  const replaces = new Map<string, { module: string; version?: string } | 'local'>();
  let module: string | undefined;
  let block: string | undefined;
  const lines = text.split('\n');
  for (const [n, raw] of lines.entries()) {
    const fail = (m: string) => lockfileError(where, `go.mod: ${m}`, { line: n + 1, column: 1 });
    const { body, indirect } = stripComment(raw.replace(/\r$/, ''));
    if (body === '') continue;
    let verb: string;
    let args: string;
    if (block !== undefined) {
      if (body === ')') {
        block = undefined;
        continue;
      }
      verb = block;
      args = body;
    } else {
      const m = /^(\S+)\s*(.*)$/.exec(body);
      verb = m?.[1] ?? '';
      args = m?.[2] ?? '';
      if (args === '(') {
        block = verb;
        continue;
      }
    }
    const tokens = args.match(/"(?:[^"\\]|\\.)*"|`[^`]*`|=>|\S+/g)?.map(unquote) ?? [];
    switch (verb) {
      case 'module':
        if (tokens.length !== 1) throw fail('module takes one path');
        module = tokens[0];
        break;
      case 'require': {
        const [path, version] = tokens;
        if (tokens.length !== 2 || path === undefined || version === undefined)
          throw fail(`require '${args}' is not 'module version'`);
        if (!GO_MODULE.test(path)) throw fail(`invalid module path '${path}'`);
        if (!GO_VERSION.test(version)) throw fail(`invalid version '${version}' for ${path}`);
        requires.push({ module: path, version, indirect, line: n + 1 });
        break;
      }
      case 'replace': {
        const arrow = tokens.indexOf('=>');
        if (arrow < 1 || arrow > 2 || tokens.length - arrow - 1 < 1 || tokens.length - arrow - 1 > 2)
          throw fail(`replace '${args}' is not 'module [version] => target [version]'`);
        const from = tokens[0] ?? '';
        const fromVersion = arrow === 2 ? tokens[1] : undefined;
        const to = tokens[arrow + 1] ?? '';
        const toVersion = tokens[arrow + 2];
        const key = fromVersion === undefined ? from : `${from}@${fromVersion}`;
        if (to.startsWith('./') || to.startsWith('../') || to.startsWith('/')) replaces.set(key, 'local');
        else {
          if (toVersion === undefined || !GO_VERSION.test(toVersion))
            throw fail(`replacement ${to} needs a version`);
          replaces.set(key, { module: to, version: toVersion });
        }
        break;
      }
      case 'go':
      case 'toolchain':
      case 'exclude':
      case 'retract':
      case 'godebug':
      case 'tool':
      case 'ignore':
        break;
      default:
        throw fail(`unknown directive '${verb}'`);
    }
  }
  if (block !== undefined)
    throw lockfileError(where, `go.mod: ${block} block is not closed (truncated?)`, {
      line: lines.length,
      column: 1,
    });
  const byPurl = new Map<string, Component>();
  const direct: string[] = [];
  for (const r of requires) {
    const rep = replaces.get(`${r.module}@${r.version}`) ?? replaces.get(r.module);
    if (rep === 'local') continue;
    const c =
      rep === undefined
        ? goComponent(r.module, r.version)
        : goComponent(rep.module, rep.version ?? r.version);
    if (!byPurl.has(c.purl)) byPurl.set(c.purl, c);
    if (!r.indirect) direct.push(c.purl);
  }
  return finishCatalog(module === undefined ? {} : { name: module }, byPurl.values(), direct);
}

// ---- Rust ----

const CRATE_NAME = /^[A-Za-z0-9_-]+$/;
const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/**
 * Catalog a Cargo.lock (versions 1 to 4). Packages without a `source` are the workspace's own
 * crates: not components, and their dependencies are the direct ones. The `.crate` checksum is kept
 * as SHA-256.
 * @throws GatehouseError BAD_LOCKFILE naming the position or the package
 */
export function catalogCargoLock(text: string, where: string): Catalog {
  const doc = parseToml(text, where);
  const version = doc.version ?? 1;
  if (typeof version !== 'number' || version < 1 || version > 4)
    throw lockfileError(where, `Cargo.lock: version ${String(version)} is not supported (expected 1 to 4)`);
  const packages = doc.package ?? [];
  if (!Array.isArray(packages)) throw lockfileError(where, 'Cargo.lock: package is not an array of tables');
  // v1 keeps checksums in [metadata] as "checksum name version (source)" = "hex".
  const legacy = isTable(doc.metadata) ? doc.metadata : {};
  const byName = new Map<
    string,
    { c: Component | undefined; version: string; source: string | undefined }[]
  >();
  const pending: [Component | undefined, TomlValue[], number][] = [];
  for (const [i, p] of packages.entries()) {
    const fail = (m: string) => lockfileError(where, `Cargo.lock package ${i + 1}: ${m}`);
    if (!isTable(p)) throw fail('is not a table');
    const { name, version: v, source, checksum } = p;
    if (typeof name !== 'string' || !CRATE_NAME.test(name))
      throw fail(`invalid crate name '${String(name)}'`);
    if (typeof v !== 'string' || !SEMVER.test(v))
      throw fail(`crate ${name} has an invalid version '${String(v)}'`);
    const src = typeof source === 'string' ? source : undefined;
    let c: Component | undefined;
    if (src !== undefined) {
      c = {
        name,
        version: v,
        purl: formatPurl({ type: 'cargo', name, version: v }),
        ecosystem: 'cargo',
        hashes: [],
        dependencies: [],
        scope: 'required',
      };
      const sum = typeof checksum === 'string' ? checksum : legacy[`checksum ${name} ${v} (${src})`];
      if (typeof sum === 'string') {
        if (!/^[0-9a-f]{64}$/.test(sum)) throw fail(`crate ${name} has an invalid checksum`);
        c.hashes = [{ alg: 'SHA-256', content: sum }];
      }
    }
    byName.set(name, [...(byName.get(name) ?? []), { c, version: v, source: src }]);
    pending.push([c, Array.isArray(p.dependencies) ? p.dependencies : [], i]);
  }
  const byPurl = new Map<string, Component>();
  const direct: string[] = [];
  for (const [c, deps, i] of pending) {
    for (const d of deps) {
      const fail = (m: string) => lockfileError(where, `Cargo.lock package ${i + 1}: ${m}`);
      if (typeof d !== 'string') throw fail('a dependency is not a string');
      // "name", "name version" or "name version (source)", the latter only when ambiguous.
      const m = /^([A-Za-z0-9_-]+)(?: ([^ ]+))?(?: \((.+)\))?$/.exec(d);
      if (m === null) throw fail(`dependency '${d}' is malformed`);
      const candidates = (byName.get(m[1] ?? '') ?? []).filter(
        (x) => (m[2] === undefined || x.version === m[2]) && (m[3] === undefined || x.source === m[3]),
      );
      if (candidates.length !== 1)
        throw fail(`dependency '${d}' ${candidates.length === 0 ? 'is not locked' : 'is ambiguous'}`);
      const t = candidates[0]?.c;
      if (t === undefined) continue; // another workspace crate
      if (c === undefined) direct.push(t.purl);
      else c.dependencies.push(t.purl);
    }
    if (c !== undefined) byPurl.set(c.purl, c);
  }
  return finishCatalog({}, byPurl.values(), direct);
}
