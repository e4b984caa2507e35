import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, closeServer, examplesDir, listenOnLoopback, tempDir } from '../../../test/helpers.ts';
import { sha256Hex } from '../../common/encoding.ts';
import { isGatehouseError } from '../../common/errors.ts';
import { TRIAGE_ARTIFACT_TYPE } from '../../gate/placement.ts';
import type { GateResult } from '../../gate/submission.ts';
import { buildIdentity } from '../../gate/submission.ts';
import { homePaths, initHome, type OpenHome, openHome } from '../../home/home.ts';
import { loadSecuritySigner, securityKeyPath } from '../../home/security-role.ts';
import { registryFromConfig } from '../../registry/registry-config.ts';
import { createApiServer } from '../../server/http-server.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { parseVsa } from '../../signing/vsa.ts';
import { component } from '../../testing/components.ts';
import { attestedJob, registerProject, submitRequest } from '../../testing/submission.ts';
import { triageAct } from '../../triage/triage-service.ts';
import { loadRevocations } from '../../verify/revocations.ts';
import { importOsv } from '../../vuln/import.ts';
import { writeOutputs } from './run.ts';

/**
 * Triage and revocation end to end: refused builds driven through the real gate (with the real
 * advisory for minimist 1.2.5), then released (signed and promoted), rejected, and revoked.
 */
describe('triage release and reject, and revocation, end to end', () => {
  const tmp = tempDir('triage');
  const h = ['--home', tmp.path];
  let home: OpenHome;

  before(async () => {
    await initHome(tmp.path);
    home = await openHome(tmp.path);
    await registerProject(home, 'demo');
    await importOsv([join(examplesDir, 'advisories')], home.store);
  });
  after(async () => {
    await home.close();
    tmp.cleanup();
  });

  /** A build of `bytes` with minimist 1.2.5 in its SBOM, submitted with or without a token. */
  async function refusedBuild(
    text: string,
    withToken = true,
  ): Promise<{ result: GateResult; bytes: Uint8Array }> {
    const bytes = new TextEncoder().encode(text);
    const job = await attestedJob(home, 'demo');
    const result = await home.controlPlane.submit(
      await submitRequest(job, {
        controlPlane: home.controlPlane,
        token: withToken ? job.token : undefined,
        name: 'out.tar',
        bytes,
        components: [component('pkg:npm/minimist@1.2.5')],
      }),
    );
    assert.notEqual(result.outcome, 'allow');
    assert.equal(result.bundle, undefined);
    assert.equal(result.vsaBundle, undefined);
    return { result, bytes };
  }

  async function triage(decisionId: string, action: 'release' | 'reject', reason: string) {
    const act = { decisionId, action, reason };
    const signer = await loadSecuritySigner(securityKeyPath(homePaths(tmp.path).keys));
    return home.triage.triage(act, await signSecurityAct(triageAct(act), signer));
  }

  it('releases a refused build: signed like an allow, promoted, the release in the VSA and the log', async () => {
    const { result, bytes } = await refusedBuild('released artifact\n');
    const registry = registryFromConfig(home.config.registry, tmp.path);
    assert.equal(await registry.inspect('promoted', 'demo', result.jobId), undefined);
    const r = await cli([
      'triage',
      'release',
      result.decisionId,
      '--reason',
      'false positive: not reachable',
      ...h,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const released = JSON.parse(r.stdout);
    assert.equal(released.action, 'release');
    assert.equal(released.placement.area, 'promoted');
    assert.ok(released.bundle && released.sbomBundle && released.vsaBundle);

    // The VSA names the release: who, why, the refusal, the policy digest, the triage log entry.
    const vsaStatement = JSON.parse(
      Buffer.from(released.vsaBundle.dsseEnvelope.payload, 'base64').toString('utf8'),
    );
    const vsa = parseVsa(vsaStatement.predicate, 'vsa');
    assert.equal(vsa.passed, true);
    assert.equal(vsa.policyDigest, result.policyDigest);
    assert.equal(vsa.release?.decisionId, result.decisionId);
    assert.equal(vsa.release?.reason, 'false positive: not reachable');
    assert.equal(vsa.release?.logIndex, released.logIndex);
    const entry = await home.store.log.get(released.logIndex);
    const logged = JSON.parse(new TextDecoder().decode(entry?.body)).spec;
    assert.equal(logged.kind, 'triage');
    assert.equal(logged.action, 'release');
    assert.equal(logged.actor, vsa.release?.actor);
    assert.equal(logged.policyDigest, result.policyDigest);

    // The provenance bundle verifies like any allowed build's, against the artifact's bytes.
    const art = join(tmp.path, 'out.tar');
    const bundle = join(tmp.path, 'out.tar.sigstore.json');
    writeFileSync(art, bytes);
    writeFileSync(bundle, JSON.stringify(released.bundle));
    const identity = buildIdentity(home.config.identityBase, 'demo');
    const v = await cli([
      'verify',
      art,
      '--bundle',
      bundle,
      '--identity',
      identity,
      '--issuer',
      home.config.issuer,
      ...h,
    ]);
    assert.equal(v.code, 0, v.stderr);

    // Promoted from quarantine: the same files in the promoted area; the quarantined copy marked.
    const promoted = await registry.inspect('promoted', 'demo', result.jobId);
    assert.deepEqual(
      promoted?.files.map((f) => f.sha256),
      [sha256Hex(bytes)],
    );
    assert.equal(promoted?.manifestDigest, released.placement.manifestDigest);
    assert.equal(promoted?.referrers.length, 5, 'three bundles, the SBOM and the release record');
    const quarantined = await registry.inspect('quarantine', 'demo', result.jobId);
    const mark = quarantined?.referrers.find((x) => x.artifactType === TRIAGE_ARTIFACT_TYPE);
    assert.ok(mark);
    const marked = JSON.parse(
      new TextDecoder().decode(await registry.attachment('quarantine', 'demo', mark.digest)),
    );
    assert.equal(marked.action, 'release');
    assert.equal(marked.promoted, released.placement.reference);
    const again = await cli(['triage', 'release', result.decisionId, '--reason', 'twice', ...h]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already been triaged \(released/);
    assert.equal(again.stderr.trim().split('\n').length, 1);
  });

  it('writes the VSA bundle next to the other bundles of an allowed build (run --out)', async () => {
    const { result, bytes } = await refusedBuild('out written\n');
    const released = await triage(result.decisionId, 'release', 'for run --out');
    const dir = join(tmp.path, 'out');
    // The agent copies an allowed build's outputs into --out; writeOutputs adds the bundles.
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'out.tar'), bytes);
    const written = await writeOutputs(dir, {
      jobId: result.jobId,
      project: 'demo',
      steps: [],
      result: { ...result, outcome: 'allow', ...released, placement: released.placement ?? result.placement },
      outputs: [{ name: 'dist/out.tar', sha256: sha256Hex(bytes), size: bytes.length }],
    });
    assert.deepEqual(
      written.map((w) => w.slice(dir.length + 1)),
      ['out.tar', 'out.tar.sigstore.json', 'out.tar.sbom.sigstore.json', 'out.tar.vsa.sigstore.json'],
    );
    const vsa = JSON.parse(readFileSync(join(dir, 'out.tar.vsa.sigstore.json'), 'utf8'));
    assert.deepEqual(vsa, released.vsaBundle);
  });

  it('rejects a refused build: it stays in quarantine, marked rejected, and never reaches promoted', async () => {
    const { result } = await refusedBuild('rejected artifact\n');
    const record = await triage(result.decisionId, 'reject', 'really vulnerable');
    assert.equal(record.action, 'reject');
    assert.equal(record.placement, undefined);
    const registry = registryFromConfig(home.config.registry, tmp.path);
    assert.equal(await registry.inspect('promoted', 'demo', result.jobId), undefined);
    const q = await registry.inspect('quarantine', 'demo', result.jobId);
    const mark = q?.referrers.find((x) => x.artifactType === TRIAGE_ARTIFACT_TYPE);
    assert.equal(mark?.annotations['dev.gatehouse.triage'], 'reject');
    await assert.rejects(triage(result.decisionId, 'release', 'changed my mind'), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    const status = await home.controlPlane.getJob(result.jobId);
    assert.notEqual(status.state, 'allowed');
  });

  it('refuses to release a build whose submission never verified, and logs nothing', async () => {
    const { result } = await refusedBuild('unverified artifact\n', false);
    const size = await home.log.size();
    await assert.rejects(
      triage(result.decisionId, 'release', 'trust me'),
      (e) => isGatehouseError(e, 'CONFLICT') && /never verified/.test((e as Error).message),
    );
    assert.equal(await home.log.size(), size);
  });

  it('revokes a digest: logged, listed in the file and at GET /v1/revocations signed by the log key', async () => {
    const digest = `sha256:${'c'.repeat(64)}`;
    const r = await cli(['revoke', digest, '--reason', 'key compromise', ...h, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const record = JSON.parse(r.stdout);
    const body = JSON.parse(new TextDecoder().decode((await home.store.log.get(record.logIndex))?.body)).spec;
    assert.equal(body.kind, 'revoke');
    assert.equal(body.digest, digest);
    const file = JSON.parse(readFileSync(join(tmp.path, 'revocations.json'), 'utf8'));
    assert.ok(file.revoked.some((x: { digest: string }) => x.digest === digest));
    const twice = await cli(['revoke', digest, '--reason', 'again', ...h]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /already revoked/);
    const bad = await cli(['revoke', 'sha256:nothex', '--reason', 'x', ...h]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a sha256 digest/);

    const server = createApiServer({ controlPlane: home.controlPlane, apiToken: home.apiToken });
    const { url: base } = await listenOnLoopback(server);
    try {
      const url = `${base}/v1/revocations`;
      const trustedRoot = await home.trustedRoot();
      const list = await loadRevocations(url, { trustedRoot });
      assert.deepEqual(
        list.revoked.find((x) => x.digest === digest),
        { digest, reason: 'key compromise', revokedAt: record.revokedAt, logIndex: record.logIndex },
      );
      // A list altered on the way, stale, or signed by another key is refused.
      const signed = (await (await fetch(url)).json()) as Record<string, unknown>;
      const tampered = { ...signed, revoked: [] };
      const path = join(tmp.path, 'tampered.json');
      writeFileSync(path, JSON.stringify(tampered));
      await assert.rejects(loadRevocations(path, { trustedRoot }), (e) =>
        isGatehouseError(e, 'VERIFICATION_FAILED'),
      );
      await assert.rejects(
        loadRevocations(url, { trustedRoot, now: new Date(Date.now() + 3_600_000) }),
        (e) => isGatehouseError(e, 'VERIFICATION_FAILED') && /more than/.test((e as Error).message),
      );
      const other = tempDir('triage-other');
      try {
        await initHome(other.path);
        const foreign = await openHome(other.path);
        const foreignRoot = await foreign.trustedRoot();
        await foreign.close();
        await assert.rejects(loadRevocations(url, { trustedRoot: foreignRoot }), (e) =>
          isGatehouseError(e, 'VERIFICATION_FAILED'),
        );
      } finally {
        other.cleanup();
      }
    } finally {
      await closeServer(server);
    }
  });
});
