/** Attestation set-up for the tests: measured baselines, evidence, refusals (test support, not product code). */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { missingTools } from '../../test/helpers.ts';
import type { AttestationAuthority, AttestationResult } from '../attestation/authority.ts';
import type { ReferenceValues } from '../attestation/baseline.ts';
import { EvidenceRejectedError } from '../attestation/checks.ts';
import { type MeasuredBaseline, measureBaseline } from '../attestation/measurement.ts';
import { generateRunnerKey } from '../attestation/token.ts';
import { detectHostLayout } from '../runner/host-layout.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import type { SandboxProfile } from '../runner/runner.ts';
import { bubblewrapSandboxProfile } from '../runner/sandbox-profile.ts';

/** The reason to skip the tests that need swtpm and tpm2-tools, else undefined. */
export function tpmToolsMissing(): string | undefined {
  return missingTools('swtpm', 'tpm2_quote');
}

/** The bubblewrap sandbox profile of a minimal project on this host. */
export async function minimalSandboxProfile(): Promise<SandboxProfile> {
  return bubblewrapSandboxProfile(
    parseProjectConfig('project: p\nbuild: {command: make}\noutputs: [a]\n', 'x'),
    await detectHostLayout(),
  );
}

/** A fresh EC P-256 private key, the kind an attestation authority signs its tokens with. */
export function newSigningKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

/**
 * A software-measured baseline of a minimal project's sandbox, `toolchain` and `agentFiles` for one
 * job, and the reference values it passes (each measured digest, nothing else).
 */
export async function measuredSoftware(inputs: {
  toolchain: string[];
  agentFiles: string[];
  jobId: string;
  nonce: string;
}): Promise<{ baseline: MeasuredBaseline; reference: ReferenceValues }> {
  const baseline = await measureBaseline({ sandboxProfile: await minimalSandboxProfile(), ...inputs });
  const digestsOf = (type: string) => baseline.events.filter((e) => e.type === type);
  return {
    baseline,
    reference: {
      agent: digestsOf('agent').map((e) => e.digest),
      sandboxProfile: digestsOf('sandbox-profile').map((e) => e.digest),
      toolchain: Object.fromEntries(digestsOf('toolchain').map((e) => [e.name, [e.digest]])),
    },
  };
}

/** Software-measurement evidence of a baseline's events and PCRs. */
export function softwareEvidence(b: { events: readonly object[]; pcrs: object }): {
  type: 'software-measurement';
  events: readonly object[];
  pcrs: object;
} {
  return { type: 'software-measurement', events: b.events, pcrs: b.pcrs };
}

/** One attestation of `evidence` for the job, bound to a fresh runner key. */
export async function attestWithFreshKey(
  authority: AttestationAuthority,
  request: { jobId: string; nonce: string; evidence: unknown },
): Promise<AttestationResult> {
  return authority.attest({ ...request, runnerKey: (await generateRunnerKey()).publicJwk });
}

/** The checks an evidence refusal names; fails the test when `p` is not refused. */
export async function refusedChecks(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (e) {
    if (e instanceof EvidenceRejectedError) return e.failedChecks.map((f) => f.check);
    throw e;
  }
  assert.fail('expected a refusal');
}
