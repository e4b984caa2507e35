import { randomUUID } from 'node:crypto';
/**
 * Test support (not product code): a real docker-registry and a real home whose gate promotes to
 * it, driven the way a runner agent drives the gate but without a build. One allowed artifact
 * (signed provenance, SBOM and VSA attached) and one denied one (quarantined).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureBaseline } from '../attestation/measurement.ts';
import { generateRunnerKey, signSubmission } from '../attestation/token.ts';
import { sha256Hex, toBase64 } from '../common/encoding.ts';
import { OciDistributionClient } from '../registry/oci-client.ts';
import { OciDistributionRegistry } from '../registry/oci-distribution-registry.ts';
import { RUN_PREFIXES } from '../registry/registry-config.ts';
import { startRegistry, type TestRegistry } from '../registry/test-registry.ts';
import { agentFiles, isolationProfile } from '../runner/agent.ts';
import { bubblewrapRunnerFromConfig } from '../runner/from-config.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import { writeCycloneDx } from '../sbom/cyclonedx.ts';
import type { GateResult, Submission, SubmitRequest } from '../server/control-plane.ts';
import { initHome, type OpenHome, openHome } from '../server/home.ts';

export const IDENTITY_BASE = 'https://gatehouse.internal';
export const ISSUER = 'https://gatehouse.internal/attestation';

export interface OciWorld {
  registry: TestRegistry;
  client: OciDistributionClient;
  home: OpenHome;
  homeDir: string;
  trustedRoot: Record<string, unknown>;
  allowed: GateResult;
  denied: GateResult;
  /** `HOST/REPO@sha256:…` of the promoted artifact. */
  allowedRef: string;
  deniedRef: string;
  close(): Promise<void>;
}

async function submit(
  home: OpenHome,
  project: string,
  bytes: Uint8Array,
  tamperToken: boolean,
): Promise<GateResult> {
  const cp = home.controlPlane;
  const ticket = await cp.createJob({ project });
  const key = await generateRunnerKey();
  // The probe the home measures its reference values with (server/home.ts), so the profile matches.
  const config = parseProjectConfig(
    'project: reference\nbuild:\n  command: ["true"]\noutputs: [out]\n',
    'reference',
  );
  const baseline = await measureBaseline({
    sandboxProfile: isolationProfile(await bubblewrapRunnerFromConfig(home.config.runner).profileFor(config)),
    toolchain: ticket.toolchain,
    agentFiles: await agentFiles(),
    jobId: ticket.jobId,
    nonce: ticket.nonce,
  });
  const { token } = await cp.attest({
    jobId: ticket.jobId,
    runnerKey: key.publicJwk,
    evidence: { type: 'software-measurement', events: baseline.events, pcrs: baseline.pcrs },
  });
  const digest = sha256Hex(bytes);
  const submission: Submission = {
    jobId: ticket.jobId,
    proof: { jti: randomUUID().replaceAll('-', ''), iat: Math.floor(Date.now() / 1000) },
    project,
    subjects: [{ name: `${project}.tar`, sha256: digest }],
    sbom: writeCycloneDx({ subject: { name: `${project}.tar`, sha256: digest }, components: [] }) as never,
    source: { kind: 'directory', uri: 'file:///src', dirty: false, treeDigest: '0'.repeat(64) },
    build: {
      command: ['true'],
      startedOn: new Date().toISOString(),
      finishedOn: new Date().toISOString(),
      exitCode: 0,
      sandboxProfileDigest: '0'.repeat(64),
    },
    steps: [],
  };
  const request: SubmitRequest = {
    token: tamperToken ? `${token}x` : token,
    proof: await signSubmission(submission, key.privateKey),
    submission,
    artifacts: [{ name: `${project}.tar`, content: toBase64(bytes) }],
  };
  return cp.submit(request);
}

/** Start a registry, a home promoting to it, and run one allowed and one denied submission. */
export async function makeOciWorld(): Promise<OciWorld> {
  const registry = await startRegistry();
  const homeDir = await mkdtemp(join(tmpdir(), 'gatehouse-oci-home-'));
  let home: OpenHome | undefined;
  let allowed: GateResult;
  let denied: GateResult;
  const client = new OciDistributionClient({ baseUrl: registry.url });
  try {
    await initHome(homeDir);
    home = await openHome(homeDir, { registry: new OciDistributionRegistry({ client, ...RUN_PREFIXES }) });
    allowed = await submit(home, 'hello-app', new TextEncoder().encode('hello, world\n'), false);
    denied = await submit(home, 'shady-app', new TextEncoder().encode('shady\n'), true);
  } catch (e) {
    // Never leave a registry process behind: it would keep the test runner alive.
    await home?.close();
    await registry.stop();
    await rm(homeDir, { recursive: true, force: true });
    throw e;
  }
  const opened = home;
  const ref = (r: GateResult, area: string, project: string): string =>
    `${registry.host}/gatehouse/${area}/${project}@${r.placement.manifestDigest}`;
  return {
    registry,
    client,
    home: opened,
    homeDir,
    trustedRoot: await opened.trustedRoot(),
    allowed,
    denied,
    allowedRef: ref(allowed, 'promoted', 'hello-app'),
    deniedRef: ref(denied, 'quarantine', 'shady-app'),
    close: async () => {
      await opened.close();
      await registry.stop();
      await rm(homeDir, { recursive: true, force: true });
    },
  };
}
