import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import type { BuildLog } from '../runner/build-log.ts';
import { EgressProxy, type FetchedArtifact } from '../runner/egress-proxy.ts';
import type { RunnerInstance } from '../runner/runner.ts';

/** What a fetch phase did, for the job record and the provenance. */
export interface FetchOutcome {
  /** Every artifact that passed the proxy, with its digest. */
  readonly fetched: FetchedArtifact[];
  /** A one-line summary for the job's step record. */
  readonly summary: string;
}

/**
 * Run a runner's dependency-fetch phase behind an egress proxy that allows only `allow`, then
 * stop the proxy: the build phase that follows has no way out at all. A project without a fetch
 * phase fetches nothing.
 * @throws GatehouseError FETCH_FAILED (naming refused requests when there were any),
 *   BUILD_TIMEOUT, BUILD_LIMIT_EXCEEDED
 */
export async function fetchDependencies(
  instance: RunnerInstance,
  allow: readonly string[],
  log?: BuildLog,
): Promise<FetchOutcome> {
  const fetch = instance.config.fetch;
  if (fetch === undefined) return { fetched: [], summary: 'no fetch phase declared' };
  // Unix socket paths are short (108 bytes): the socket gets its own short, private directory.
  const dir = await mkdtemp(join(tmpdir(), 'gh-egress-'));
  const proxy = new EgressProxy({ allow, socketPath: join(dir, 'egress.sock') });
  try {
    await proxy.start();
    const result = await instance.fetch({
      command: fetch.command,
      timeoutSeconds: fetch.timeoutSeconds,
      proxySocket: proxy.socketPath,
      ...(log === undefined ? {} : { output: (chunk: Buffer) => log.write(chunk) }),
    });
    const refused = proxy.refused();
    if (result.exitCode !== 0) {
      const first = refused[0];
      // From the masked log when there is one: the message is shown and kept.
      const why =
        first === undefined
          ? log === undefined
            ? lastLine(result.stderrTail || result.stdoutTail)
            : lastLineOf(log)
          : `egress refused ${first.method} ${first.target}: ${first.reason}`;
      throw new GatehouseError('FETCH_FAILED', `the fetch exited with code ${result.exitCode}: ${why}`, {
        where: instance.jobId,
      });
    }
    const fetched = proxy.fetched();
    return {
      fetched,
      summary: `${fetched.length} artifacts fetched${refused.length === 0 ? '' : `, ${refused.length} requests refused`}`,
    };
  } finally {
    await proxy.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

/** The last line of a build log, masked (ending the log), as a failure message quotes it. */
export function lastLineOf(log: BuildLog): string {
  return (log.tail(1)[0] ?? '').trim().slice(0, 300);
}
