/**
 * Test support (not product code): drive a home's gate the way a runner agent does, but without a
 * build, so that a test can produce each outcome on purpose. The runner is attested with a vTPM
 * extended with exactly the profile the home measures its reference values with (home/home.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentFiles, isolationProfile } from '../agent/agent.ts';
import { JobCredentials } from '../agent/credentials.ts';
import { type MeasuredBaseline, measureBaseline } from '../attestation/measurement.ts';
import { signJobRequest } from '../attestation/request-proof.ts';
import { generateRunnerKey, type RunnerKeyPair, signSubmission } from '../attestation/token.ts';
import { sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import type { ControlPlane, JobTicket } from '../control-plane/control-plane.ts';
import type { Submission, SubmitRequest } from '../gate/submission.ts';
import { homePaths, type OpenHome } from '../home/home.ts';
import { LOCAL_POOL } from '../home/runner-host.ts';
import { loadSecuritySigner, securityKeyPath } from '../home/security-role.ts';
import type { ProjectContent, ProjectRegistration } from '../policy/projects.ts';
import { runnerFromConfig } from '../runner/from-config.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import { writeCycloneDx } from '../sbom/cyclonedx.ts';
import type { Component } from '../sbom/model.ts';
import { signSecurityAct } from '../signing/security-act.ts';
import { importOsv } from '../vuln/import.ts';

/**
 * The baseline the home's runner measures for a job (the reference-value profile), with the
 * agent's event as the software path self-reports it; without it (`agent: false`), as the agent
 * measures on the TPM path, where the launcher has measured the agent into the vTPM.
 */
export async function baselineFor(
  home: OpenHome,
  ticket: JobTicket,
  { agent = true }: { agent?: boolean } = {},
): Promise<MeasuredBaseline> {
  const probe = parseProjectConfig(
    'project: reference\nbuild:\n  command: ["true"]\noutputs: [out]\n',
    'reference',
  );
  return measureBaseline({
    sandboxProfile: isolationProfile(await runnerFromConfig(home.config.runner).profileFor(probe)),
    toolchain: ticket.toolchain,
    agentFiles: agent ? await agentFiles() : undefined,
    jobId: ticket.jobId,
    nonce: ticket.nonce,
  });
}

/** Software-measurement evidence for a job, as a runner without a TPM would present it. */
export async function evidenceFor(
  home: OpenHome,
  ticket: JobTicket,
): Promise<{ type: 'software-measurement'; events: unknown; pcrs: unknown }> {
  const baseline = await baselineFor(home, ticket);
  return { type: 'software-measurement', events: baseline.events, pcrs: baseline.pcrs };
}

/** A job of the home's control plane, attested: its ticket, its runner's key and its token. */
export interface AttestedJob {
  ticket: JobTicket;
  key: RunnerKeyPair;
  token: string;
}

/** A job the home's own runner host opened (and so claimed), with the key its runner will use. */
export interface OpenedJob {
  ticket: JobTicket;
  key: RunnerKeyPair;
  credentials: JobCredentials;
}

/** Open a job for `project` as the home's runner host does: signed by the host, claimed by it. */
export async function openedJob(home: OpenHome, project: string): Promise<OpenedJob> {
  const key = await generateRunnerKey();
  const credentials = new JobCredentials(home.host, home.controlPlane, key);
  const request = { project };
  const ticket = await home.controlPlane.createJob(
    request,
    await credentials.host('create', undefined, request),
  );
  return { ticket, key, credentials };
}

/**
 * Open a job for `project` and attest a fresh runner key for it the way the home's runners do: a
 * vTPM from the home's pool, extended with the baseline, quoted (or the software path on a home
 * whose config says `software`).
 */
export async function attestedJob(home: OpenHome, project: string): Promise<AttestedJob> {
  const { ticket, key, credentials } = await openedJob(home, project);
  const attester = home.attester();
  try {
    const { token } = await attester.attest({
      jobId: ticket.jobId,
      baseline: await baselineFor(home, ticket, { agent: false }),
      runnerKey: key.publicJwk,
      endpoints: credentials.endpoints(ticket.jobId),
    });
    return { ticket, key, token };
  } finally {
    await attester.destroy();
  }
}

/**
 * A submission of one artifact file for a job, from a plain directory, signed with `key`: its
 * CycloneDX SBOM lists `components`. `upload` is the content sent (default: `bytes`, the subject).
 */
export async function submitRequest(
  job: { ticket: JobTicket; key: RunnerKeyPair },
  options: {
    token: string | undefined;
    name: string;
    bytes: Uint8Array;
    components?: Component[];
    upload?: Uint8Array;
    /** Seconds since the epoch the proof says it was signed at (default: now). */
    signedAt?: number;
    /** Where the output's bytes are uploaded before the submission, with the job key's proof. */
    controlPlane: ControlPlane;
    /** `sha256:<hex>` of a build-environment SBOM the submission references. */
    environment?: string;
  },
): Promise<SubmitRequest> {
  const { ticket, key } = job;
  await uploadOutput(options.controlPlane, ticket.jobId, key, options.name, options.upload ?? options.bytes);
  const subject = { name: options.name, sha256: sha256Hex(options.bytes) };
  const submission: Submission = {
    jobId: ticket.jobId,
    proof: { jti: randomUUID().replaceAll('-', ''), iat: options.signedAt ?? Math.floor(Date.now() / 1000) },
    project: ticket.project,
    subjects: [subject],
    sbom: writeCycloneDx({ subject, components: options.components ?? [] }) as never,
    source: { kind: 'directory', uri: 'file:///src', dirty: false, treeDigest: '0'.repeat(64) },
    build: {
      command: ['true'],
      startedOn: new Date().toISOString(),
      finishedOn: new Date().toISOString(),
      exitCode: 0,
      sandboxProfileDigest: '0'.repeat(64),
    },
    steps: [],
    ...(options.environment === undefined ? {} : { environment: { sbom: options.environment } }),
  };
  return {
    token: options.token,
    proof: await signSubmission(submission, key.privateKey),
    submission,
  };
}

/**
 * Upload one output's bytes as the job's runner does. A test of a refused submission may hold a
 * key that may not upload for the job; the upload is then refused and the gate refuses the
 * submission by its own checks.
 */
async function uploadOutput(
  cp: ControlPlane,
  jobId: string,
  key: RunnerKeyPair,
  name: string,
  bytes: Uint8Array,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-upload-'));
  try {
    const file = join(dir, 'output');
    await writeFile(file, bytes);
    const request = { jobId, name, sha256: sha256Hex(bytes), size: bytes.byteLength };
    const proof = await signJobRequest(key.privateKey, { act: 'upload', job: jobId, request });
    await cp.uploadOutput(request, file, proof).catch((e: unknown) => {
      if (!isGatehouseError(e, 'UNAUTHORIZED', 'CONFLICT')) throw e;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Register a project centrally as the home's security role does (`gatehouse project register`):
 * by default an unverified-directory project held to the default policy, built by the local pool.
 */
export async function registerProject(
  home: OpenHome,
  name: string,
  content: Partial<ProjectContent> = {},
): Promise<ProjectRegistration> {
  const full = {
    source: { kind: 'unverified-directory' as const },
    policy: 'default',
    pools: [LOCAL_POOL],
    ...content,
  };
  const version = await home.policies.projects.nextVersion(name);
  const signer = await loadSecuritySigner(securityKeyPath(homePaths(home.root).keys), { home: home.root });
  const sig = await signSecurityAct({ kind: 'project', name, version, content: full }, signer);
  return home.policies.projects.register(name, version, full, sig);
}

/**
 * The bundled example advisory (minimist's GHSA-xvch-5gv4-984h) in the home's vulnerability
 * database: a gate with an empty database denies every build.
 */
export async function seedVulnerabilityData(home: OpenHome): Promise<void> {
  await importOsv([new URL('../../examples/advisories', import.meta.url).pathname], home.store);
}
