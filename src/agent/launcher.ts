import { readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentManifestDigest, type MeasurementEvent, PCR_ALLOCATION } from '../attestation/measurement.ts';

/**
 * The launcher: what measures the runner agent below the agent. It runs on the pool's claim path
 * ({@link VtpmPool.take} in src/tpm/swtpm.ts), before any of the job's own code touches the vTPM:
 * the agent's files are digested from disk and extended into the agent PCR of the vTPM the job is
 * handed, and that event is recorded with the vTPM. The agent itself never reports, nor chooses,
 * its own digest; an agent that extends the agent PCR again makes a second agent event, which
 * the appraisal refuses (exactly one is allowed), and one that leaves the launcher's event out of
 * its log does not replay to the quoted PCR. What this does and does not protect against while
 * the launcher and the agent are one process: docs/attestation.md "Measured below the agent".
 */

const srcRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const testingDir = join(srcRoot, 'testing');

/**
 * The files that make up the runner agent: every non-test source file of this installation
 * (test support under `src/testing/` is not part of it), the launcher included. Their digests
 * are measured into the baseline, so a modified agent cannot attest.
 */
export async function agentFiles(): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (p !== testingDir) await walk(p);
      } else if (/\.(?:ts|mjs)$/.test(e.name) && !e.name.endsWith('.test.ts')) out.push(p);
    }
  }
  await walk(srcRoot);
  return out.sort();
}

/** The agent's measurement event, digested from the files on disk now. */
export async function agentEvent(files?: readonly string[]): Promise<MeasurementEvent & { type: 'agent' }> {
  return Object.freeze({
    pcr: PCR_ALLOCATION.agent,
    type: 'agent',
    name: 'agent',
    digest: await agentManifestDigest(files ?? (await agentFiles())),
  });
}

/** What the launcher extends into each vTPM the pool hands to a job: the agent's measurement. */
export async function launchMeasurements(): Promise<readonly (MeasurementEvent & { type: 'agent' })[]> {
  return [await agentEvent()];
}
