import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { promisify } from 'node:util';
import { CHECKS } from '../attestation/checks.ts';
import { hostImageHistory } from '../runner/image.ts';
import type { ImageRef } from '../runner/runner.ts';

/** What a runner knows about itself when its measurements are refused as not reference values. */
export interface DriftFacts {
  /** The refusal's message (the authority names each measurement that is not a reference value). */
  refusal: string;
  /** The image the refused sandbox ran on. */
  image?: ImageRef;
  /** Where the host-system image's measurements (and their history) are cached. */
  imageCacheDir?: string;
  /** Lists the agent's files (called only when the agent's digest is what changed). */
  agentFiles?: () => Promise<readonly string[]>;
  /** Where the agent's files live, to name them relative to it. */
  agentRoot?: string;
  /** The home whose security role publishes reference values (named in the command to run). */
  home?: string;
  /** dpkg's log (default /var/log/dpkg.log). */
  dpkgLog?: string;
}

/** One package change dpkg recorded. */
export interface PackageChange {
  at: Date;
  action: string;
  name: string;
  version: string;
}

const DPKG_ACTION =
  /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (install|upgrade|remove|purge) (\S+) (\S+) (\S+)$/;

/** The package installs, upgrades and removals in dpkg's log (local times, as dpkg writes them). */
export async function packageChanges(dpkgLog = '/var/log/dpkg.log'): Promise<PackageChange[]> {
  let text: string;
  try {
    text = await readFile(dpkgLog, 'utf8');
  } catch {
    return [];
  }
  const out: PackageChange[] = [];
  for (const line of text.split('\n')) {
    const m = DPKG_ACTION.exec(line);
    if (m === null) continue;
    const [, day, time, action, pkg, from, to] = m as unknown as string[];
    out.push({
      at: new Date(`${day}T${time}`),
      action: action as string,
      name: (pkg as string).split(':')[0] as string,
      version: action === 'remove' || action === 'purge' ? (from as string) : (to as string),
    });
  }
  return out;
}

function listChanges(changes: readonly PackageChange[], max = 6): string {
  const byName = new Map<string, PackageChange>();
  for (const c of changes) byName.set(c.name, c); // the last change of each package
  const items = [...byName.values()].map((c) => `${c.action} ${c.name} ${c.version}`);
  const shown = items.slice(-max).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

const iso = (ms: number | Date) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const short = (digest: string) => `sha256:${digest.slice(0, 16)}…`;

/** The Debian package that installed `path` (dpkg records merged-/usr files under /bin, /sbin, /lib). */
async function owningPackage(path: string): Promise<string | undefined> {
  for (const candidate of [path, path.replace(/^\/usr(?=\/(?:s?bin|lib)\/)/, '')]) {
    try {
      const { stdout } = await promisify(execFile)('dpkg-query', ['-S', candidate], { timeout: 5000 });
      const pkg = stdout.split(':')[0]?.trim();
      if (pkg !== undefined && pkg !== '') return pkg;
    } catch {
      // not this spelling of the path
    }
  }
  return undefined;
}

/**
 * Explain a refusal for measurements that are not reference values: which measurement changed,
 * since when (the image's measurement history and dpkg's log), and the exact command that makes the
 * current state the reference, for the security role to run once it has checked the change was
 * intended. Empty when the refusal is of another kind.
 */
export async function explainReferenceDrift(facts: DriftFacts): Promise<string[]> {
  if (!facts.refusal.includes(CHECKS.referenceValues)) return [];
  const lines: string[] = [];
  const changes = await packageChanges(facts.dpkgLog);
  if (/sandbox profile digest/.test(facts.refusal)) {
    const image = facts.image;
    const history =
      image?.kind === 'host-system' && facts.imageCacheDir !== undefined
        ? await hostImageHistory(facts.imageCacheDir)
        : [];
    const now = history.at(-1);
    const before = history.at(-2);
    if (image !== undefined && now !== undefined && before !== undefined && now.digest === image.digest) {
      lines.push(
        `cause: the runner's ${image.kind} image changed: it measured ${short(before.digest)} from ${iso(before.firstMeasuredAt)} and measures ${short(now.digest)} since ${iso(now.firstMeasuredAt)}`,
      );
      const since = changes.filter((c) => c.at.getTime() >= before.firstMeasuredAt - 1000);
      if (since.length > 0)
        lines.push(
          `packages changed on this host since ${iso(before.firstMeasuredAt)}: ${listChanges(since)}`,
        );
    } else {
      lines.push(
        `cause: the runner's isolation (image ${image === undefined ? 'unknown' : `${image.kind} ${short(image.digest)}`}, seccomp filter, limits, namespaces) is not the one measured when the reference values were published`,
      );
      const last = changes.at(-1);
      if (last !== undefined)
        lines.push(
          `latest package changes on this host (${iso(last.at)}): ${listChanges(changes.filter((c) => last.at.getTime() - c.at.getTime() < 3600_000))}`,
        );
    }
  }
  if (/agent digest/.test(facts.refusal)) {
    let newest: { path: string; mtime: number } | undefined;
    for (const f of (await facts.agentFiles?.()) ?? []) {
      const m = (await stat(f).catch(() => undefined))?.mtimeMs;
      if (m !== undefined && (newest === undefined || m > newest.mtime)) newest = { path: f, mtime: m };
    }
    lines.push(
      newest === undefined
        ? "cause: the runner agent's code changed (gatehouse was updated or edited)"
        : `cause: the runner agent's code changed (gatehouse was updated or edited): its newest file is ${facts.agentRoot === undefined ? newest.path : relative(facts.agentRoot, newest.path)}, modified ${iso(newest.mtime)}`,
    );
  }
  for (const m of facts.refusal.matchAll(/toolchain (\/\S+) digest/g)) {
    const path = m[1] as string;
    const pkg = await owningPackage(path);
    const last = pkg === undefined ? undefined : changes.filter((c) => c.name === pkg).at(-1);
    lines.push(
      `cause: the build tool ${path} changed${pkg === undefined ? '' : ` (package ${pkg}${last === undefined ? '' : `: ${last.action} ${last.version} at ${iso(last.at)}`})`}`,
    );
  }
  const home = facts.home === undefined ? '' : ` --home ${facts.home}`;
  lines.push(
    `fix: if the change was intended, the security role makes it the reference: gatehouse init --update-reference-values${home} (or gatehouse attestation reference-values publish FILE with a reviewed bundle); until then every job on this runner is refused`,
  );
  return lines;
}
