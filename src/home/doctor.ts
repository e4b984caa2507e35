import { existsSync } from 'node:fs';
import { readdir, readFile, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { agentFiles } from '../agent/agent.ts';
import { explainReferenceDrift } from '../agent/drift.ts';
import { appraiseBaseline } from '../attestation/baseline.ts';
import { CHECKS } from '../attestation/checks.ts';
import { ReferenceValueService } from '../attestation/reference-values.ts';
import { attestationPaths } from '../attestation/trust-store.ts';
import { describeError } from '../common/errors.ts';
import { checkBwrap } from '../runner/bwrap-binary.ts';
import { defaultImageCacheDir, hostImageHistory } from '../runner/image.ts';
import { describeHostTpm, hostTpmLocation } from '../tpm/host-tpm.ts';
import { type Config, loadConfig } from './config.ts';
import { homePaths, measureHostBaseline, openHome } from './home.ts';
import { trustedSecurityKeys } from './security-role.ts';

/** One finding of `gatehouse doctor`. */
export interface DoctorCheck {
  name: string;
  /** ok; warn: works, but something will bite; fail: jobs are refused or the home cannot open. */
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  /** What to do about a warn or fail: the exact command where there is one. */
  fix?: string[];
}

const MiB = 1024 * 1024;

/** The tools jobs need (fail when absent) and the tools some features need (warn). */
const REQUIRED_TOOLS = ['bwrap', 'swtpm', 'swtpm_setup', 'swtpm_localca', 'git', 'dpkg-query'];
const OPTIONAL_TOOLS: Record<string, string> = {
  skopeo: 'copying images between registries',
  'docker-registry': 'a local OCI registry',
  umoci: 'unpacking container images',
  runc: 'running container images',
  gpg: 'verifying GPG-signed commits',
  'ssh-keygen': 'verifying SSH-signed commits',
};

function onPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, tool);
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Check the tools, the sandbox, the home, its database and log, reference values, pool, disk and clock. */
export async function runDoctor(root: string): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const check = async (name: string, fn: () => Promise<Omit<DoctorCheck, 'name'>>) => {
    try {
      out.push({ name, ...(await fn()) });
    } catch (e) {
      out.push({ name, status: 'fail', detail: describeError(e).split('\n')[0] ?? '' });
    }
  };

  await check('node', async () => {
    const major = Number(process.versions.node.split('.')[0]);
    return major >= 24
      ? { status: 'ok', detail: `v${process.versions.node}` }
      : { status: 'fail', detail: `v${process.versions.node} is older than 24`, fix: ['scripts/setup'] };
  });
  await check('tools', async () => {
    const missing = REQUIRED_TOOLS.filter((t) => onPath(t) === undefined);
    const absent = Object.keys(OPTIONAL_TOOLS).filter((t) => onPath(t) === undefined);
    if (missing.length > 0)
      return {
        status: 'fail',
        detail: `missing: ${missing.join(', ')}`,
        fix: ['scripts/setup (as root), or install bubblewrap swtpm swtpm-tools git'],
      };
    if (absent.length > 0)
      return {
        status: 'warn',
        detail: `${REQUIRED_TOOLS.length} required found; absent: ${absent.map((t) => `${t} (${OPTIONAL_TOOLS[t]})`).join(', ')}`,
        fix: ['scripts/setup (as root)'],
      };
    return { status: 'ok', detail: `${REQUIRED_TOOLS.length + Object.keys(OPTIONAL_TOOLS).length} found` };
  });
  await check('sandbox', async () => ({
    status: 'ok',
    detail: `bubblewrap starts a sandbox (${await checkBwrap(undefined)})`,
  }));

  const p = homePaths(root);
  if (!existsSync(p.config)) {
    out.push({
      name: 'home',
      status: 'fail',
      detail: `no gatehouse home at ${root}`,
      fix: [`gatehouse init --home ${root}`],
    });
    return out;
  }
  const config = loadConfig(p.config);
  let opened: Awaited<ReturnType<typeof openHome>> | undefined;
  await check('database', async () => {
    // Opening checks the database against the log anchor and runs SQLite's quick_check.
    opened = await openHome(root);
    const size = await opened.log.size();
    return {
      status: 'ok',
      detail: `${config.store.kind} store opens; the log holds ${size} entries and matches its anchor`,
    };
  });
  if (opened === undefined) {
    const last = out.at(-1);
    if (last !== undefined)
      last.fix = [
        `gatehouse restore BACKUP --home ${root}   (from the latest backup)`,
        `gatehouse init --new-log --home ${root}   (only if no backup exists: starts a new log under a new key)`,
      ];
  }
  try {
    await check('image', async () => {
      const cacheDir = hostImageCacheDir(config);
      if (cacheDir === undefined)
        return { status: 'ok', detail: 'the runner does not use the host-system image' };
      const summary = JSON.parse(
        await readFile(join(cacheDir, 'host-system.json'), 'utf8').catch(() => '{}'),
      ) as {
        digest?: string;
        verifiedAt?: number;
      };
      if (summary.digest === undefined)
        return {
          status: 'warn',
          detail: `the host-system image was never measured (cache ${cacheDir}): the next job measures it first, about a minute`,
          fix: ['scripts/setup (measures it once)'],
        };
      const history = await hostImageHistory(cacheDir);
      const since = history.at(-1)?.firstMeasuredAt;
      return {
        status: 'ok',
        detail: `host-system sha256:${summary.digest.slice(0, 16)}… verified ${iso(summary.verifiedAt ?? 0)}${since === undefined ? '' : `, this digest since ${iso(since)}`}`,
      };
    });
    await check('reference values', async () => {
      if (opened === undefined) return { status: 'warn', detail: 'not checked: the home does not open' };
      const service = new ReferenceValueService({
        store: opened.store.attestation,
        trustedKeys: await trustedSecurityKeys(p.keys),
      });
      const published = (await service.current()).values;
      // The authority's own appraisal of what this host measures now, reference checks only.
      const { events, profile } = await measureHostBaseline(config, root);
      const refusal = appraiseBaseline(events, published, undefined, undefined)
        .filter((f) => f.check === CHECKS.referenceValues)
        .map((f) => `${f.check}: ${f.message}`)
        .join('; ');
      if (refusal === '')
        return {
          status: 'ok',
          detail: "this host's agent, sandbox profile and toolchain match the published values",
        };
      const lines = await explainReferenceDrift({
        refusal,
        ...('image' in profile && 'digest' in profile.image ? { image: profile.image } : {}),
        imageCacheDir: hostImageCacheDir(config) ?? defaultImageCacheDir(),
        agentFiles,
        agentRoot: new URL('../..', import.meta.url).pathname,
        home: root,
      });
      return {
        status: 'fail',
        detail: `jobs are refused: ${refusal}`,
        fix: lines,
      };
    });
    await check('host TPM', async () => {
      if ((config.runner.attestation ?? 'tpm') !== 'tpm')
        return { status: 'ok', detail: 'software attestation' };
      const where = describeHostTpm(hostTpmLocation());
      const home = opened;
      if (home === undefined) return { status: 'warn', detail: `${where}; the home did not open` };
      const enrolled = await home.hosts.get(home.host.name);
      if (enrolled?.tpm === undefined)
        return {
          status: 'fail',
          detail: `${where}; runner host ${home.host.name} is not enrolled with its TPM: its vTPMs are refused`,
          fix: [`gatehouse host enroll ${home.host.name} --tpm --home ${root}`],
        };
      // Only the record is read: the doctor changes nothing, and quotes nothing.
      const standing = await home.hostAttestation.standing(enrolled, enrolled.name);
      const last = await home.store.attestation.hostAttestation(enrolled.name);
      const age =
        last === undefined ? '' : `, last quote ${Math.round((Date.now() - last.quotedAt) / 1000)} s ago`;
      if (standing.problem === undefined)
        return { status: 'ok', detail: `${where}; host AK ${enrolled.tpm.akName.slice(4, 20)}${age}` };
      return {
        status: standing.check === 'HOST_QUOTE_STALE' ? 'warn' : 'fail',
        detail: `${where}: ${standing.problem}`,
        fix:
          standing.check === 'HOST_QUARANTINED'
            ? [
                `gatehouse host clear ${enrolled.name} [--accept-current] --home ${root}   (security role, once the change is understood)`,
              ]
            : [`gatehouse host quote --home ${root}`],
      };
    });
    await check('vTPM pool', async () => {
      if ((config.runner.attestation ?? 'tpm') !== 'tpm')
        return { status: 'ok', detail: 'software attestation' };
      const pool = attestationPaths(root).vtpmPool;
      const ready = (await readdir(join(pool, 'ready')).catch(() => [])).filter((n) => !n.startsWith('.'));
      const inUse = await readdir(join(pool, 'in-use')).catch(() => []);
      const target = config.runner.vtpmPool?.target ?? 4;
      const detail = `${ready.length} ready (target ${target}), ${inUse.length} in use`;
      return ready.length < Math.min(1, target)
        ? {
            status: 'warn',
            detail: `${detail}: each job manufactures its vTPM (about a second)`,
            fix: [`gatehouse attestation vtpm-pool fill --home ${root}`],
          }
        : { status: 'ok', detail };
    });
    await check('disk', async () => {
      const report: string[] = [];
      let worst: DoctorCheck['status'] = 'ok';
      for (const [what, dir] of [
        ['home', root],
        ['workspaces', tmpdir()],
      ] as const) {
        const s = await statfs(dir);
        const free = s.bavail * s.bsize;
        report.push(`${what} ${dir}: ${Math.floor(free / MiB)} MiB free`);
        if (free < 256 * MiB) worst = 'fail';
        else if (free < 2048 * MiB && worst === 'ok') worst = 'warn';
      }
      return worst === 'ok'
        ? { status: 'ok', detail: report.join('; ') }
        : {
            status: worst,
            detail: report.join('; '),
            fix: ['free space (jobs and the database need room to write)'],
          };
    });
    await check('clock', async () => {
      if (opened === undefined) return { status: 'warn', detail: 'not checked: the home does not open' };
      const [latest] = await opened.store.jobs.list({ limit: 1 });
      const now = Date.now();
      const last = latest === undefined ? undefined : Date.parse(latest.createdAt);
      if (last !== undefined && last > now + 5 * 60_000)
        return {
          status: 'fail',
          detail: `the clock (${iso(now)}) is behind the newest job (${iso(last)}): certificates and tokens would be dated wrongly`,
          fix: ['set the system clock (timedatectl set-ntp true)'],
        };
      return { status: 'ok', detail: `${iso(now)}${last === undefined ? '' : `, newest job ${iso(last)}`}` };
    });
    await check('leftovers', async () => {
      if (opened === undefined) return { status: 'warn', detail: 'not checked: the home does not open' };
      const running = new Set(
        (await opened.store.jobs.list({ limit: 1000 }))
          .filter((j) => j.state === 'queued' || j.state === 'running' || j.state === 'submitted')
          .map((j) => j.id),
      );
      const stale: string[] = [];
      for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
        const id = /^gatehouse-(job-[0-9a-f-]{36})-/.exec(name)?.[1];
        if (id !== undefined && !running.has(id)) {
          const age = Date.now() - (await stat(join(tmpdir(), name))).mtimeMs;
          if (age > 10 * 60_000) stale.push(join(tmpdir(), name));
        }
      }
      return stale.length === 0
        ? { status: 'ok', detail: 'no workspaces of ended jobs' }
        : {
            status: 'warn',
            detail: `${stale.length} workspace(s) of ended jobs: ${stale.slice(0, 3).join(', ')}`,
            fix: [`gatehouse server --home ${root} (sweeps at start-up), or remove them`],
          };
    });
  } finally {
    await (opened as { close(): Promise<void> } | undefined)?.close();
  }
  return out;
}

/** Where the host-system image's measurements are cached, when the runner uses that image. */
function hostImageCacheDir(config: Config): string | undefined {
  if (config.runner.kind !== 'bubblewrap') return undefined;
  const image = config.runner.image ?? { kind: 'host-system' as const };
  if (image.kind !== 'host-system') return undefined;
  return image.cacheDir ?? defaultImageCacheDir();
}
