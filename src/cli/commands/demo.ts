import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type JobOutcome, runJob } from '../../agent/agent.ts';
import { sha256 } from '../../common/encoding.ts';
import { describeError } from '../../common/errors.ts';
import { buildIdentity } from '../../gate/submission.ts';
import { environmentCacheOf, initHome, openHome } from '../../home/home.ts';
import { parseBundle } from '../../signing/bundle.ts';
import { LocalGitProvider } from '../../source/local-git-provider.ts';
import { verifyArtifactBundle } from '../../verify/verify.ts';
import { importOsv } from '../../vuln/import.ts';
import { commonOptions, parse } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, dim, green, makeOutput, ms, red } from '../output.ts';
import { printOutcome, printStep, writeOutputs } from './run.ts';

const examples = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples');

/**
 * Run the bundled examples end to end in a fresh temporary home: one passes the gate and is
 * verified offline, the other depends on a release with a published advisory and is blocked.
 */
export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    { ...commonOptions, keep: { type: 'boolean' } },
    {
      min: 0,
      max: 0,
      usage: usageOf('demo'),
    },
  );
  const out = makeOutput(values.json === true);
  const root = await mkdtemp(join(tmpdir(), 'gatehouse-demo-'));
  const t0 = performance.now();
  const timed = async <T>(label: string, fn: () => Promise<T>, detail: (v: T) => string): Promise<T> => {
    const s = performance.now();
    const v = await fn();
    out.line(
      `  ${green('✓')} ${label.padEnd(22)} ${dim(ms(performance.now() - s).padStart(9))}  ${detail(v)}`,
    );
    return v;
  };
  const summary: Record<string, unknown> = { home: root };
  let ok = false;
  try {
    out.line(bold('gatehouse demo'));
    out.line(dim(`a fresh home in ${root}`));
    out.line();
    out.line(bold('control plane'));
    await timed(
      'init',
      () => initHome(root),
      (c) => `created ${c.length} items: keys, internal CA, log, database, policy`,
    );
    const home = await openHome(root);
    try {
      await timed(
        'vulndb import',
        () => importOsv([join(examples, 'advisories')], home.store),
        (r) => `${r.read} OSV record(s) from examples/advisories`,
      );

      const runOne = async (name: string): Promise<JobOutcome> => {
        out.line();
        out.line(bold(`${name}`) + dim(`  (examples/${name})`));
        const outcome = await runJob(join(examples, name), {
          runner: home.runner,
          attester: home.attester,
          host: home.host,
          controlPlane: home.controlPlane,
          source: new LocalGitProvider(),
          onStep: (s) => printStep(out, s),
          outDir: join(root, 'out'),
          environmentCache: environmentCacheOf(root),
        });
        printOutcome(out, outcome);
        return outcome;
      };

      const good = await runOne('hello-app');
      const written = await writeOutputs(join(root, 'out'), good);
      const artifactPath = written[0];
      const bundlePath = written[1];
      let verified = false;
      if (artifactPath !== undefined && bundlePath !== undefined) {
        out.line();
        out.line(bold('deploy-time verification') + dim('  (offline, against the exported trusted root)'));
        const identity = buildIdentity(home.config.identityBase, 'hello-app');
        try {
          const result = await timed(
            'verify',
            async () =>
              verifyArtifactBundle({
                artifactDigest: sha256(await readFile(artifactPath)),
                bundle: parseBundle(JSON.parse(await readFile(bundlePath, 'utf8')), bundlePath),
                trustedRoot: await home.trustedRoot(),
                identity,
                issuer: home.config.issuer,
              }),
            (r) => `signature, certificate chain, identity, subject digest, log inclusion #${r.logIndex}`,
          );
          verified = result.identity === identity;
          // Only a kept home can be verified against after the demo: without --keep it is removed.
          out.line(
            dim(
              values.keep === true
                ? `    gatehouse verify ${artifactPath} --bundle ${bundlePath} --home ${root} --project hello-app`
                : '    (gatehouse demo --keep keeps the home, and prints the verify command to try)',
            ),
          );
        } catch (e) {
          out.line(`  ${red('✗')} verify: ${describeError(e)}`);
        }
      }

      const bad = await runOne('vulnerable-app');
      const logSize = await home.log.size();
      out.line();
      out.line(bold('summary') + dim(`  (${ms(performance.now() - t0)} in all)`));
      const row = (name: string, o: JobOutcome, extra: string): void => {
        const outcome = o.result?.outcome ?? 'failed';
        const words: Record<string, string> = {
          allow: 'ALLOWED',
          deny: 'DENIED',
          quarantine: 'QUARANTINED',
          failed: 'FAILED',
        };
        const word = (words[outcome] ?? outcome).padEnd(11);
        const label = outcome === 'allow' ? green(word) : red(word);
        out.line(`  ${name.padEnd(16)} ${label}  ${extra}`);
      };
      row('hello-app', good, verified ? 'signed, logged, promoted, verified offline' : 'NOT verified');
      const firstReason = bad.result?.reasons[0];
      row(
        'vulnerable-app',
        bad,
        firstReason === undefined ? (bad.failure?.message ?? '') : `blocked: ${firstReason.message}`,
      );
      out.line(`  ${'transparency log'.padEnd(16)} ${logSize} entries, every decision included`);
      ok = good.result?.outcome === 'allow' && verified && bad.result?.outcome === 'deny';
      summary.allowed = good.result;
      summary.blocked = bad.result;
      summary.verified = verified;
      summary.logSize = logSize;
      summary.ok = ok;
      out.document(summary);
      if (!ok) process.stderr.write('gatehouse demo: the demo did not end as expected (see above)\n');
    } finally {
      await home.close();
    }
  } finally {
    if (values.keep !== true) await rm(root, { recursive: true, force: true });
    else out.line(dim(`kept the demo home at ${root}`));
  }
  return ok ? EXIT.ok : EXIT.error;
}
