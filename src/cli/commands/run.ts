import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { type JobOutcome, runJob } from '../../agent/agent.ts';
import type { Attester } from '../../agent/attester.ts';
import type { RunnerHost } from '../../agent/credentials.ts';
import { quoteHostBootState } from '../../agent/host-quote.ts';
import type { ControlPlane } from '../../control-plane/control-plane.ts';
import { HttpControlPlane } from '../../control-plane/http-control-plane.ts';
import { environmentCacheOf, openHome, resolveHome, runnerAttester } from '../../home/home.ts';
import { openHostTpm } from '../../home/host-tpm-home.ts';
import { registryOption } from '../../registry/registry-config.ts';
import { bubblewrapRunnerFromConfig } from '../../runner/from-config.ts';
import type { Runner } from '../../runner/runner.ts';
import { LocalGitProvider } from '../../source/local-git-provider.ts';
import type { JobStep } from '../../store/store.ts';
import { commonOptions, parse } from '../args.ts';
import { fillPoolInBackground } from '../background-fill.ts';
import { EXIT, exitCodeByCode, exitCodeOfOutcome } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, dim, green, makeOutput, ms, type Output, red, yellow } from '../output.ts';

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
    },
    { min: 1, max: 1, usage: USAGE },
  );
  const out = makeOutput(values.json === true);
  const dir = resolve(positionals[0] ?? '.');
  const homeRoot = resolveHome(values.home);
  let cp: ControlPlane;
  // With --server, the runner uses the default limits and image, which the server's reference
  // values must then describe; embedded, it is the runner the home's config describes.
  let runner: Runner = bubblewrapRunnerFromConfig({});
  let attester: () => Attester;
  let host: RunnerHost;
  let close = async (): Promise<void> => {};
  if (values.server !== undefined) {
    // A runner host needs no operator token: its requests are signed with its enrolled key.
    cp = new HttpControlPlane({ url: values.server });
    // Against a remote control plane the runner attests exactly as an embedded one: a vTPM from
    // this host's home (the control plane refuses software evidence unless configured for it).
    const local = await runnerAttester(homeRoot);
    ({ attester, host } = local);
    // What runners of agents killed on this host left behind goes first.
    await local.sweep(runner);
    // Before claiming, this host's boot state must be fresh at the control plane: one request
    // when it is; a quote when it is due. A control plane that does not attest hosts, or a host
    // enrolled without a TPM, leaves the decision to attestation (which fails closed).
    await quoteHostBootState(cp, host, openHostTpm).catch(() => undefined);
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
    const outcome = await runJob(dir, {
      signal: cancel.signal,
      runner,
      attester,
      host,
      controlPlane: cp,
      source: new LocalGitProvider(),
      onStep: (s) => printStep(out, s),
      ...(values.project === undefined ? {} : { project: values.project }),
      ...(values.commit === undefined ? {} : { commit: values.commit }),
      ...(values.out === undefined ? {} : { outDir: resolve(values.out) }),
      environmentCache: environmentCacheOf(homeRoot),
      ...(values.server === undefined ? { referenceHome: homeRoot } : {}),
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
      written,
    });
    if (outcome.result === undefined && outcome.failure !== undefined) {
      process.stderr.write(`gatehouse run: ${outcome.failure.message.split('\n')[0]}\n`);
      for (const line of outcome.failure.explanation ?? []) process.stderr.write(`  ${line}\n`);
    }
    return exitCodeOf(outcome);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await close();
    // The vTPM this job used is replaced for the next one, after this job and in the background.
    await fillPoolInBackground(homeRoot);
  }
}
