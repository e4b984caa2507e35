import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { type JobOutcome, runJob } from '../../agent/agent.ts';
import { type Attester, SoftwareAttester } from '../../agent/attester.ts';
import { ciTokenSourceFromEnv } from '../../agent/ci-token-source.ts';
import type { RunnerHost } from '../../agent/credentials.ts';
import { quoteHostBootState } from '../../agent/host-quote.ts';
import { GatehouseError } from '../../common/errors.ts';
import type { ControlPlane } from '../../control-plane/control-plane.ts';
import { HttpControlPlane } from '../../control-plane/http-control-plane.ts';
import { environmentCacheOf, openHome, resolveHome, runnerAttester } from '../../home/home.ts';
import { openHostTpm } from '../../home/host-tpm-home.ts';
import { registryOption } from '../../registry/registry-config.ts';
import { bubblewrapRunnerFromConfig, homeImagesDir } from '../../runner/from-config.ts';
import type { Runner } from '../../runner/runner.ts';
import { FileKeySigner } from '../../signing/file-key-signer.ts';
import { LocalGitProvider } from '../../source/local-git-provider.ts';
import type { JobStep } from '../../store/store.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { fillPoolInBackground } from '../background-fill.ts';
import { EXIT, exitCodeByCode, exitCodeOfOutcome } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import {
  bold,
  dim,
  green,
  LiveLines,
  makeOutput,
  ms,
  type Output,
  printableLine,
  red,
  yellow,
} from '../output.ts';

const USAGE = usageOf('run');

/** Exit code for a finished job: 0 allowed, 3 denied, 4 quarantined, else the failure's. */
export function exitCodeOf(outcome: JobOutcome): number {
  if (outcome.result !== undefined) return exitCodeOfOutcome(outcome.result.outcome);
  // A refusal (attestation, token, source) is "denied or verification failed", like the gate's.
  const code = outcome.failure?.code as keyof typeof exitCodeByCode | undefined;
  return code === undefined ? EXIT.error : (exitCodeByCode[code] ?? EXIT.error);
}

export function printStep(out: Output, s: JobStep): void {
  const mark = s.ok ? green('✓') : red('✗');
  out.line(
    `  ${mark} ${s.name.padEnd(10)} ${dim(ms(s.durationMs).padStart(9))}${s.detail === undefined ? '' : `  ${s.detail}`}`,
  );
}

/** Print a decision for a person: outcome, reasons, where the artifact went. */
export function printOutcome(out: Output, o: JobOutcome): void {
  if (o.result === undefined) {
    out.line(`${red(bold('FAILED'))}  ${o.project}  ${o.jobId}`);
    out.line(`  ${o.failure?.message ?? 'unknown failure'}`);
    for (const line of o.failure?.explanation ?? []) out.line(`  ${line}`);
    return;
  }
  const r = o.result;
  const label =
    r.outcome === 'allow'
      ? green(bold('ALLOWED'))
      : r.outcome === 'quarantine'
        ? yellow(bold('QUARANTINED'))
        : red(bold('DENIED'));
  out.line(
    `${label}  ${o.project}  ${o.jobId}  ${dim(`policy sha256:${r.policyDigest.slice(0, 12)}  log #${r.logIndex}`)}`,
  );
  // What the gate found in the artifact, against what the project declared.
  if (r.sbom !== undefined) out.line(`  ${dim(`sbom: ${r.sbom}`)}`);
  for (const reason of r.reasons) {
    const ids = [reason.vulnId, ...((reason.aliases as string[] | undefined) ?? [])].filter(
      (x) => x !== undefined,
    );
    out.line(
      `  ${red('•')} [${reason.rule}] ${reason.message}${ids.length > 0 ? ` (${ids.join(', ')})` : ''}`,
    );
  }
  for (const w of r.warnings) out.line(`  ${yellow('!')} [${w.rule}] ${w.message}`);
  out.line(`  ${r.outcome === 'allow' ? 'promoted' : 'quarantined'}: ${r.placement.reference}`);
  if (o.log !== undefined) out.line(`  ${dim(`build log: ${describeLog(o.log)}`)}`);
}

function describeLog(log: NonNullable<JobOutcome['log']>): string {
  return `sha256:${log.sha256.slice(0, 12)}  ${log.size} bytes${log.truncated ? ', cut in the middle' : ''}${log.stored ? '' : ' (not kept by the control plane)'}`;
}

/**
 * Live build output under the running step, for a person: each line indented under the step
 * list, made printable; the partial last line is shown when its phase ends.
 */
function liveOutput(out: Output): { onOutput: (chunk: Buffer) => void; stepEnded: (s: JobStep) => void } {
  const lines = new LiveLines((l) => out.line(`    ${dim('│')} ${l}`));
  return {
    onOutput: (chunk) => lines.push(chunk),
    stepEnded: (s) => {
      if (s.name === 'fetch' || s.name === 'build') lines.flush();
    },
  };
}

/**
 * A failed build's last lines, on stderr before the one line naming the failure, so that the
 * reason is on screen (and in a CI log) without opening the stored log.
 */
export function printFailureTail(outcome: JobOutcome, where: string): void {
  const log = outcome.log;
  if (outcome.failure === undefined || log === undefined || log.lastLines.length === 0) return;
  const tail = log.lastLines.map((l) => `  ${printableLine(l)}\n`).join('');
  process.stderr.write(
    `gatehouse run: the last ${log.lastLines.length} lines of the build log (all of it: ${where}):\n${tail}`,
  );
}

/**
 * Write the bundles of an allowed build to `dir`, next to its outputs (which the agent copied there
 * before the runner was destroyed), so that they can be verified and shipped.
 * @returns the outputs and bundles in `dir`
 */
export async function writeOutputs(dir: string, outcome: JobOutcome): Promise<string[]> {
  const written: string[] = [];
  const r = outcome.result;
  const artifacts = outcome.outputs ?? [];
  if (r === undefined || r.outcome !== 'allow') return written;
  await mkdir(dir, { recursive: true });
  for (const a of artifacts) {
    const path = join(dir, basename(a.name));
    if (existsSync(path)) written.push(path);
  }
  if (r.bundle !== undefined) {
    const path = join(dir, `${basename(artifacts[0]?.name ?? outcome.project)}.sigstore.json`);
    await writeFile(path, `${JSON.stringify(r.bundle, null, 2)}\n`);
    written.push(path);
  }
  if (r.sbomBundle !== undefined) {
    const path = join(dir, `${basename(artifacts[0]?.name ?? outcome.project)}.sbom.sigstore.json`);
    await writeFile(path, `${JSON.stringify(r.sbomBundle, null, 2)}\n`);
    written.push(path);
  }
  if (r.vsaBundle !== undefined) {
    const path = join(dir, `${basename(artifacts[0]?.name ?? outcome.project)}.vsa.sigstore.json`);
    await writeFile(path, `${JSON.stringify(r.vsaBundle, null, 2)}\n`);
    written.push(path);
  }
  return written;
}

/** The build log in `run --json`: its digest (the provenance's), and the last lines of a failure. */
function logDocument(outcome: JobOutcome, server: string | undefined): Record<string, unknown> {
  const log = outcome.log;
  if (log === undefined) return {};
  return {
    sha256: log.sha256,
    size: log.size,
    truncated: log.truncated,
    stored: log.stored,
    ...(log.stored && server !== undefined
      ? { url: new URL(`/v1/jobs/${encodeURIComponent(outcome.jobId)}/log`, server).href }
      : {}),
    ...(outcome.failure === undefined ? {} : { lastLines: log.lastLines }),
  };
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      project: { type: 'string' },
      server: { type: 'string' },
      registry: { type: 'string' },
      out: { type: 'string' },
      commit: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      host: { type: 'string' },
      'host-key': { type: 'string' },
      'ci-audience': { type: 'string' },
    },
    { min: 1, max: 1, usage: USAGE },
  );
  const out = makeOutput(values.json === true);
  const dir = resolve(positionals[0] ?? '.');
  const homeRoot = resolveHome(values.home);
  let cp: ControlPlane;
  // With --server, a bubblewrap runner uses the default limits and image, which the server's
  // reference values must then describe (another backend is the home's own); embedded, it is
  // the runner the home's config describes.
  let runner: Runner = bubblewrapRunnerFromConfig({});
  let attester: () => Attester;
  let host: RunnerHost;
  let close = async (): Promise<void> => {};
  let ciToken: (() => Promise<string>) | undefined;
  // Secret values this process holds, masked in the build's output besides the job's own tokens.
  let secrets: string[] = [];
  let useHomeCache = true;
  if ((values.host === undefined) !== (values['host-key'] === undefined))
    throw new UsageError(`--host and --host-key go together\nusage: ${USAGE}`);
  if (values.server === undefined && (values.host !== undefined || values['ci-audience'] !== undefined))
    throw new UsageError(`--host, --host-key and --ci-audience need --server\nusage: ${USAGE}`);
  if (values.server !== undefined) {
    // A runner host needs no operator token: its requests are signed with its enrolled key.
    cp = new HttpControlPlane({ url: values.server });
    const operatorToken = process.env.GATEHOUSE_API_TOKEN;
    if (operatorToken !== undefined && operatorToken !== '') secrets = [operatorToken];
    // Inside a CI job the platform's identity token goes with every attestation of a CI host
    // (--host), or of a home's host when --ci-audience asks for it: a TPM host that merely runs in
    // CI sends none, so a control plane without CI issuers does not refuse it. A CI job that was
    // given no token (GitHub: no `id-token: write`) fails here, named; outside CI there is none.
    if (values.host !== undefined || values['ci-audience'] !== undefined) {
      const source = ciTokenSourceFromEnv(process.env, {
        audience: values['ci-audience'] ?? new URL(values.server).origin,
      });
      if (source !== undefined) ciToken = () => source.token();
    }
    if (values.host !== undefined && values['host-key'] !== undefined) {
      // A CI runner (host enrolled `--attestation ci`): no home, a key from the CI's secrets, the
      // measured baseline in software, and the CI token the control plane then requires.
      host = await hostFromKeyFile(values.host, values['host-key']);
      attester = () => new SoftwareAttester();
      useHomeCache = false;
    } else {
      // Against a remote control plane the runner attests exactly as an embedded one: a vTPM from
      // this host's home (the control plane refuses software evidence unless configured for it).
      const local = await runnerAttester(homeRoot);
      ({ attester, host } = local);
      // A node agent's home names its backend (Kubernetes Jobs, GitHub JIT runners): it is used.
      if (local.runner !== undefined) runner = local.runner;
      // What runners of agents killed on this host left behind goes first.
      await local.sweep(runner);
      // Before claiming, this host's boot state must be fresh at the control plane: one request
      // when it is; a quote when it is due. A control plane that does not attest hosts, or a host
      // enrolled without a TPM, leaves the decision to attestation (which fails closed).
      await quoteHostBootState(cp, host, openHostTpm).catch(() => undefined);
    }
  } else {
    const home = await openHome(homeRoot, registryOption(values.registry, values.server));
    // The embedded control plane settles what an earlier run's crash left unfinished, and what
    // runners of agents killed on this host left behind goes.
    await home.reconciler.run();
    await home.sweep();
    // Before claiming a job the host's boot-state quote must be fresh: one store read when it is.
    await home.requoteHost();
    cp = home.controlPlane;
    runner = home.runner;
    attester = home.attester;
    host = home.host;
    secrets = [home.apiToken];
    close = () => home.close();
  }
  // Ctrl-C or SIGTERM cancels the job: its sandbox is killed, its runner, workspace and vTPM
  // destroyed, and the control plane records it cancelled. A second signal leaves at once.
  const cancel = new AbortController();
  const onSignal = (): void => {
    if (cancel.signal.aborted) process.exit(EXIT.error);
    process.stderr.write('gatehouse run: cancelling the job (again to leave at once)\n');
    cancel.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    out.line(
      `${bold('gatehouse run')} ${dir}${values.server === undefined ? '' : `  (control plane ${values.server})`}`,
    );
    // The build's output streams under its step for a person; --quiet and --json leave it out
    // (--json keeps stdout for its one document).
    const live = out.json || values.quiet === true ? undefined : liveOutput(out);
    const outcome = await runJob(dir, {
      signal: cancel.signal,
      runner,
      attester,
      host,
      controlPlane: cp,
      source: new LocalGitProvider(),
      onStep: (s) => {
        live?.stepEnded(s);
        printStep(out, s);
      },
      ...(live === undefined ? {} : { onOutput: live.onOutput }),
      secrets,
      ...(values.project === undefined ? {} : { project: values.project }),
      ...(values.commit === undefined ? {} : { commit: values.commit }),
      ...(values.out === undefined ? {} : { outDir: resolve(values.out) }),
      ...(ciToken === undefined ? {} : { ciToken }),
      ...(useHomeCache ? { environmentCache: environmentCacheOf(homeRoot) } : {}),
      ...(values.server === undefined ? { referenceHome: homeRoot } : {}),
      imagesDir: homeImagesDir(homeRoot),
    });
    const written = values.out === undefined ? [] : await writeOutputs(resolve(values.out), outcome);
    printOutcome(out, outcome);
    for (const w of written) out.line(`  wrote ${w}`);
    out.document({
      jobId: outcome.jobId,
      project: outcome.project,
      outcome: outcome.result?.outcome ?? 'failed',
      steps: outcome.steps,
      outputs: (outcome.outputs ?? []).map((o) => ({ name: o.name, sha256: o.sha256 })),
      ...(outcome.result === undefined ? {} : { decision: outcome.result }),
      ...(outcome.failure === undefined ? {} : { failure: outcome.failure }),
      ...(outcome.log === undefined ? {} : { log: logDocument(outcome, values.server) }),
      written,
    });
    if (outcome.result === undefined && outcome.failure !== undefined) {
      printFailureTail(
        outcome,
        values.server === undefined
          ? `\`gatehouse server\` serves it at /v1/jobs/${outcome.jobId}/log`
          : new URL(`/v1/jobs/${encodeURIComponent(outcome.jobId)}/log`, values.server).href,
      );
      process.stderr.write(`gatehouse run: ${printableLine(outcome.failure.message.split('\n')[0] ?? '')}\n`);
      for (const line of outcome.failure.explanation ?? []) process.stderr.write(`  ${line}\n`);
    }
    return exitCodeOf(outcome);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await close();
    // The vTPM this job used is replaced for the next one, after this job and in the background.
    if (useHomeCache) await fillPoolInBackground(homeRoot);
  }
}

/**
 * A runner host from its name and a plain PKCS#8 P-256 key file (a CI secret written to a file):
 * refused when others may read the file.
 * @throws GatehouseError BAD_INPUT, NOT_FOUND
 */
async function hostFromKeyFile(name: string, path: string): Promise<RunnerHost> {
  const file = resolve(path);
  const mode = await stat(file).then(
    (s) => s.mode,
    (cause: unknown) => {
      throw new GatehouseError('NOT_FOUND', 'cannot read the host key file', { where: file, cause });
    },
  );
  if ((mode & 0o077) !== 0)
    throw new GatehouseError(
      'BAD_INPUT',
      `the host key file is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
      { where: file },
    );
  return { name, signer: await FileKeySigner.load(file) };
}
