/**
 * Test support (not product code): a real docker-registry and a real home whose gate promotes to
 * it, driven the way a runner agent drives the gate but without a build. One allowed artifact
 * (signed provenance, SBOM and VSA attached) and one denied one (quarantined).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../../test/helpers.ts';
import type { GateResult } from '../gate/submission.ts';
import { initHome, type OpenHome, openHome } from '../home/home.ts';
import { OciDistributionClient } from '../registry/oci-client.ts';
import { OciDistributionRegistry } from '../registry/oci-distribution-registry.ts';
import { RUN_PREFIXES } from '../registry/registry-config.ts';
import { startRegistry, type TestRegistry } from './registry.ts';
import { attestedJob, registerProject, seedVulnerabilityData, submitRequest } from './submission.ts';

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
  /** The home's revocation-list file (unsigned, as `verify oci://` and `admission` read a file). */
  revocationsPath: string;
  /** Write that file: the allowed artifact revoked for `reason`, or nothing revoked. */
  setRevoked(reason?: string): Promise<void>;
  close(): Promise<void>;
}

async function submit(
  home: OpenHome,
  project: string,
  bytes: Uint8Array,
  tamperToken: boolean,
): Promise<GateResult> {
  const job = await attestedJob(home, project);
  return home.controlPlane.submit(
    await submitRequest(job, {
      controlPlane: home.controlPlane,
      token: tamperToken ? `${job.token}x` : job.token,
      name: `${project}.tar`,
      bytes,
    }),
  );
}

/** Start a registry, a home promoting to it, and run one allowed and one denied submission. */
export async function makeOciWorld(): Promise<OciWorld> {
  const registry = await startRegistry();
  const tmp = tempDir('oci-home');
  const homeDir = tmp.path;
  let home: OpenHome | undefined;
  let allowed: GateResult;
  let denied: GateResult;
  const client = new OciDistributionClient({ baseUrl: registry.url });
  try {
    await initHome(homeDir);
    home = await openHome(homeDir, { registry: new OciDistributionRegistry({ client, ...RUN_PREFIXES }) });
    await registerProject(home, 'shady-app');
    await seedVulnerabilityData(home);
    allowed = await submit(home, 'hello-app', new TextEncoder().encode('hello, world\n'), false);
    denied = await submit(home, 'shady-app', new TextEncoder().encode('shady\n'), true);
  } catch (e) {
    // Never leave a registry process behind: it would keep the test runner alive.
    await home?.close();
    await registry.stop();
    tmp.cleanup();
    throw e;
  }
  const opened = home;
  const ref = (r: GateResult, area: string, project: string): string =>
    `${registry.host}/gatehouse/${area}/${project}@${r.placement.manifestDigest}`;
  const revocationsPath = join(homeDir, 'revocations.json');
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
    revocationsPath,
    setRevoked: async (reason) => {
      const revoked =
        reason === undefined
          ? []
          : [{ digest: allowed.placement.manifestDigest, reason, revokedAt: new Date().toISOString() }];
      await writeFile(revocationsPath, JSON.stringify({ version: 1, revoked }));
    },
    close: async () => {
      await opened.close();
      await registry.stop();
      tmp.cleanup();
    },
  };
}
