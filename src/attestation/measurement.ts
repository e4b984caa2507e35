import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, sep } from 'node:path';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { IsolationProfile } from '../runner/runner.ts';
import { replayEventLog, type Sha256Hex } from '../tpm/pcr.ts';

/**
 * Which PCR holds what in a runner's measured baseline. 8–11 are the "static OS" range of the TCG
 * PC Client profile; a per-runner vTPM has no boot chain, so nothing else extends them.
 *
 * - 8: the sandbox profile (canonical JSON of {@link SandboxProfile})
 * - 9: the toolchain, one event per binary, in path order
 * - 10: the runner agent's own source files, as one manifest digest
 * - 11: the job binding, SHA-256(jobId ‖ nonce)
 */
export const PCR_ALLOCATION = {
  'sandbox-profile': 8,
  toolchain: 9,
  agent: 10,
  job: 11,
} as const;

/** Kinds of event in a measured baseline. */
export type MeasurementEventType = keyof typeof PCR_ALLOCATION;

/** One TCG-style event-log entry: what was measured, into which PCR, with which digest. */
export interface MeasurementEvent {
  readonly pcr: number;
  readonly type: MeasurementEventType;
  /** What was measured: 'bubblewrap' profile, a binary's absolute path, 'agent', the job id. */
  readonly name: string;
  readonly digest: Sha256Hex;
}

/** PCR index (as a decimal string, as in JSON) → SHA-256 value after replay. */
export type PcrValues = Readonly<Record<string, Sha256Hex>>;

/** An event log and the PCR values it replays to. */
export interface MeasuredBaseline {
  readonly events: readonly MeasurementEvent[];
  readonly pcrs: PcrValues;
}

const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');

/** Schema of a measurement event as received from a runner. */
export const measurementEventSchema = z.strictObject({
  pcr: z.number().int().min(0).max(23),
  type: z.enum(['sandbox-profile', 'toolchain', 'agent', 'job']),
  name: z.string().min(1).max(4096),
  digest: sha256HexSchema,
});

/** Schema of software-measurement evidence as received from a runner. */
export const softwareMeasurementEvidenceSchema = z.strictObject({
  type: z.literal('software-measurement'),
  events: z.array(measurementEventSchema).min(1).max(1024),
  pcrs: z.record(z.string().regex(/^(?:[0-9]|1[0-9]|2[0-3])$/, 'must be a PCR index 0–23'), sha256HexSchema),
  /** A CI platform's OIDC token (GitHub Actions, GitLab CI), as on the TPM path: adds the `ci` submod. */
  ci_token: z.string().min(1).max(16384).optional(),
});

/** Software-measurement evidence: a measured baseline, self-reported (no TPM quote yet). */
export type SoftwareMeasurementEvidence = z.infer<typeof softwareMeasurementEvidenceSchema>;

/** Digest a sandbox profile is measured as: SHA-256 of its canonical JSON. */
export function sandboxProfileDigest(profile: IsolationProfile): Sha256Hex {
  return sha256Hex(canonicalJson(profile));
}

/**
 * The digest that binds evidence to one job: SHA-256(UTF-8 jobId ‖ nonce bytes). The nonce is the
 * job's 32 random bytes, so the fixed-length suffix makes the concatenation unambiguous.
 * @throws GatehouseError BAD_INPUT when the nonce is not canonical base64
 */
export function jobBindingDigest(jobId: string, nonce: string): Sha256Hex {
  const bytes = decodeNonce(nonce);
  return createHash('sha256').update(jobId, 'utf8').update(bytes).digest('hex');
}

/**
 * Decode a job nonce, insisting on canonical base64 so that one nonce has one spelling. Length is
 * the appraiser's business (the authority wants at least 16 bytes); measuring accepts any, so that
 * reference values can be measured with an empty nonce.
 */
export function decodeNonce(nonce: string): Buffer {
  const bytes = Buffer.from(nonce, 'base64');
  if (typeof nonce !== 'string' || bytes.toString('base64') !== nonce) {
    throw new GatehouseError('BAD_INPUT', 'the job nonce is not canonical base64');
  }
  return bytes;
}

async function fileDigest(path: string): Promise<Sha256Hex> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function commonDir(paths: readonly string[]): string {
  let common = dirname(paths[0] ?? '/');
  for (const p of paths) {
    while (common !== '/' && !(p === common || p.startsWith(common + sep))) common = dirname(common);
  }
  return common;
}

/**
 * One digest for the agent's files that does not depend on where they are installed: SHA-256 of
 * the canonical JSON list of `{ path, sha256 }`, paths relative to the files' common directory,
 * sorted.
 */
export async function agentManifestDigest(files: readonly string[]): Promise<Sha256Hex> {
  if (files.length === 0) throw new GatehouseError('BAD_INPUT', 'the agent has no files to measure');
  const real = await Promise.all(files.map((f) => realpath(f)));
  const base = commonDir(real);
  const entries = await Promise.all(
    real.map(async (f) => ({ path: relative(base, f).split(sep).join('/'), sha256: await fileDigest(f) })),
  );
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sha256Hex(canonicalJson(entries));
}

/** Inputs to {@link measureBaseline}. */
export interface BaselineInputs {
  readonly sandboxProfile: IsolationProfile;
  /** Absolute paths of the binaries the build may use, e.g. /bin/sh, /usr/bin/node. */
  readonly toolchain: readonly string[];
  /**
   * The runner agent's own source files, for an agent event in this baseline (reference values,
   * the self-reported software path). Absent on the TPM path: there the launcher extends the
   * agent event into the vTPM before the job begins (src/agent/launcher.ts).
   */
  readonly agentFiles?: readonly string[] | undefined;
  readonly jobId: string;
  /** The job's nonce, base64. */
  readonly nonce: string;
}

/**
 * Measure a runner's baseline into a TCG-style event log and replay it into PCR values. Toolchain
 * binaries are measured by content, following symlinks (/bin/sh → dash is measured as dash's
 * bytes under the name /bin/sh).
 * @throws GatehouseError BAD_INPUT for a relative or unreadable toolchain path, an empty agent file list, or
 *   a malformed nonce
 */
export async function measureBaseline(inputs: BaselineInputs): Promise<MeasuredBaseline> {
  const events: MeasurementEvent[] = [
    {
      pcr: PCR_ALLOCATION['sandbox-profile'],
      type: 'sandbox-profile',
      name: inputs.sandboxProfile.backend,
      digest: sandboxProfileDigest(inputs.sandboxProfile),
    },
  ];
  const toolchain = [...new Set(inputs.toolchain)].sort();
  for (const path of toolchain) {
    if (!isAbsolute(path)) throw new GatehouseError('BAD_INPUT', `toolchain path '${path}' is not absolute`);
    let digest: Sha256Hex;
    try {
      digest = await fileDigest(path);
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', `cannot measure toolchain binary ${path}`, { cause: e });
    }
    events.push({ pcr: PCR_ALLOCATION.toolchain, type: 'toolchain', name: path, digest });
  }
  if (inputs.agentFiles !== undefined) {
    events.push({
      pcr: PCR_ALLOCATION.agent,
      type: 'agent',
      name: 'agent',
      digest: await agentManifestDigest(inputs.agentFiles),
    });
  }
  events.push({
    pcr: PCR_ALLOCATION.job,
    type: 'job',
    name: inputs.jobId,
    digest: jobBindingDigest(inputs.jobId, inputs.nonce),
  });
  return Object.freeze({
    events: Object.freeze(events.map((e) => Object.freeze(e))),
    pcrs: replayToRecord(events),
  });
}

/** Replay an event log into PCR values keyed by decimal PCR index. */
export function replayToRecord(events: readonly { pcr: number; digest: string }[]): PcrValues {
  const replayed = replayEventLog(events);
  const out: Record<string, Sha256Hex> = {};
  for (const [k, v] of Object.entries(replayed)) out[k] = v;
  return Object.freeze(out);
}
