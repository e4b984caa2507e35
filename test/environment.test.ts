/**
 * The build environment's packages (the runner image) are one SBOM, handed over once and
 * referenced by digest from every job's SBOM, and still judged: a vulnerable package of the image
 * denies the build as when it was listed. Attacks: a submission that names an environment SBOM the
 * control plane never received, one whose bytes are not its digest, and one handed over before the
 * runner attested. Real builds (sandbox, vTPM, gate) and a real host package database.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type JobOutcome, runJob } from '../src/agent/agent.ts';
import { signJobRequest } from '../src/attestation/request-proof.ts';
import { isGatehouseError } from '../src/common/errors.ts';
import { environmentCacheOf, initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { readCycloneDx } from '../src/sbom/cyclonedx.ts';
import { LocalGitProvider } from '../src/source/local-git-provider.ts';
import {
  attestedJob,
  registerProject,
  seedVulnerabilityData,
  submitRequest,
} from '../src/testing/submission.ts';
import { importOsv } from '../src/vuln/import.ts';
import { copyExample, tempDir } from './helpers.ts';

const hasDpkg = existsSync('/var/lib/dpkg/status');

describe('the build environment SBOM', { skip: hasDpkg ? false : 'no dpkg database on this host' }, () => {
  const tmp = tempDir('environment');
  let home: OpenHome;
  const run = (dir: string): Promise<JobOutcome> =>
    runJob(dir, {
      runner: home.runner,
      attester: home.attester,
      host: home.host,
      controlPlane: home.controlPlane,
      source: new LocalGitProvider(),
      environmentCache: environmentCacheOf(home.root),
    });

  before(async () => {
    const root = join(tmp.path, 'home');
    await initHome(root);
    home = await openHome(root);
    await seedVulnerabilityData(home);
    await registerProject(home, 'demo');
  });
  after(async () => {
    await home.close();
    tmp.cleanup();
  });

  it('is referenced by digest from the signed SBOM, kept once, and attached to the artifact', async () => {
    const first = await run(copyExample('hello-app', join(tmp.path, 'a')));
    assert.equal(first.result?.outcome, 'allow', JSON.stringify(first.result?.reasons ?? first.failure));
    const bundle = first.result?.sbomBundle as { dsseEnvelope: { payload: string } };
    const predicate = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()).predicate;
    const signed = readCycloneDx(predicate, 'signed SBOM');
    assert.ok(signed.environment !== undefined, 'the signed SBOM names the build environment');
    assert.match(signed.environment.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(
      signed.components.filter((c) => c.buildEnvironment === true).length,
      0,
      'the image packages are not listed per job',
    );
    assert.deepEqual(predicate.externalReferences[0].hashes, [
      { alg: 'SHA-256', content: signed.environment.digest.slice(7) },
    ]);
    const kept = await home.store.policies.environmentSbom(signed.environment.digest);
    assert.ok(kept !== undefined);
    assert.ok(
      (readCycloneDx(kept.document, 'kept').components.length ?? 0) > 10,
      'it lists the host packages',
    );
    // Attached to the promoted artifact: a blob whose digest is the one referenced.
    const blobs = readdirSync(join(home.root, 'registry', 'promoted', 'hello-app', 'blobs', 'sha256'));
    assert.ok(blobs.includes(signed.environment.digest.slice(7)));
    // The next job in the same image references the same document, made from the host's cache.
    const second = await run(copyExample('hello-app', join(tmp.path, 'b')));
    const bundle2 = second.result?.sbomBundle as { dsseEnvelope: { payload: string } };
    const signed2 = readCycloneDx(
      JSON.parse(Buffer.from(bundle2.dsseEnvelope.payload, 'base64').toString()).predicate,
      'second',
    );
    assert.equal(signed2.environment?.digest, signed.environment.digest);
  });

  it('denies a submission naming an environment SBOM the control plane never received', async () => {
    const job = await attestedJob(home, 'demo');
    const request = await submitRequest(job, {
      controlPlane: home.controlPlane,
      token: job.token,
      name: 'out',
      bytes: new TextEncoder().encode('x\n'),
      environment: `sha256:${'e'.repeat(64)}`,
    });
    const r = await home.controlPlane.submit(request);
    assert.equal(r.outcome, 'deny');
    assert.equal(r.reasons[0]?.rule, 'sbom');
    assert.match(r.reasons[0]?.message ?? '', /build environment SBOM sha256:e{64} was never handed over/);
  });

  it('keeps an environment SBOM only under its own digest, only from an attested job key', async () => {
    const job = await attestedJob(home, 'demo');
    const text = JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.6', version: 1, components: [] });
    const wrong = { jobId: job.ticket.jobId, digest: `sha256:${'0'.repeat(64)}` };
    const proof = await signJobRequest(job.key.privateKey, {
      act: 'environment',
      job: job.ticket.jobId,
      request: wrong,
    });
    await assert.rejects(home.controlPlane.uploadEnvironmentSbom(wrong, text, proof), (e) =>
      isGatehouseError(e, 'BAD_INPUT'),
    );
    assert.equal(await home.controlPlane.environmentSbomKnown(wrong.digest), false);
    // A proof for one digest does not carry another request.
    const other = { jobId: job.ticket.jobId, digest: `sha256:${'1'.repeat(64)}` };
    await assert.rejects(home.controlPlane.uploadEnvironmentSbom(other, text, proof), (e) =>
      isGatehouseError(e, 'UNAUTHORIZED'),
    );
  });

  it('judges the image packages: an advisory on one of them denies the build', async () => {
    const [source, version] = execFileSync(
      'dpkg-query',
      // dpkg-query's own format syntax, not a template literal.
      ['-W', '-f', String.raw`\${source:Package} \${Version}`.replaceAll('\\', ''), 'bash'],
      {
        encoding: 'utf8',
      },
    ).split(' ');
    const record = {
      schema_version: '1.4.0',
      id: 'TEST-ENV-0001',
      modified: new Date(Date.now() - 86_400_000).toISOString(),
      summary: 'a critical advisory on the runner image, for the test',
      severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
      affected: [
        {
          package: { ecosystem: 'Debian:12', name: source },
          ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: `${version}+zzz` }] }],
        },
      ],
    };
    const file = join(tmp.path, 'TEST-ENV-0001.json');
    writeFileSync(file, JSON.stringify(record));
    // Last in this file: the advisory stays in this home's database.
    await importOsv([file], home.store);
    const r = (await run(copyExample('hello-app', join(tmp.path, 'c')))).result;
    assert.equal(r?.outcome, 'deny');
    assert.ok(
      r?.reasons.some((x) => x.vulnId === 'TEST-ENV-0001'),
      `the image's bash was judged: ${JSON.stringify(r?.reasons)}`,
    );
  });
});
