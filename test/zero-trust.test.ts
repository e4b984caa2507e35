/**
 * Zero trust at the control plane, tried as an attacker would (docs/trust-model.md): a client that
 * holds the operator's API token and can read every public endpoint, but has no enrolled host key,
 * no TPM and no job key, against a real `gatehouse server` on a home made by `gatehouse init`.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobCredentials } from '../src/agent/credentials.ts';
import { signHostRequest } from '../src/attestation/request-proof.ts';
import { generateRunnerKey } from '../src/attestation/token.ts';
import { isGatehouseError } from '../src/common/errors.ts';
import { HttpControlPlane } from '../src/control-plane/http-control-plane.ts';
import { initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { loadSecuritySigner, securityKeyPath } from '../src/home/security-role.ts';
import { EphemeralSigner } from '../src/signing/file-key-signer.ts';
import { signSecurityAct } from '../src/signing/security-act.ts';
import type { PolicyVersionRecord } from '../src/store/store.ts';
import {
  attestedJob,
  baselineFor,
  evidenceFor,
  openedJob,
  registerProject,
  seedVulnerabilityData,
  submitRequest,
} from '../src/testing/submission.ts';
import { cli, copyExample, examplesDir, startServer, tempDir } from './helpers.ts';

describe('zero trust: the operator token and public reads get nothing signed', () => {
  const tmp = tempDir('zero-trust');
  const root = join(tmp.path, 'home');
  let home: OpenHome;
  let server: { url: string; child: ChildProcess };
  let apiToken: string;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  const asOperator = () => ({ authorization: `Bearer ${apiToken}` });

  before(async () => {
    await initHome(root);
    home = await openHome(root);
    await seedVulnerabilityData(home);
    apiToken = home.apiToken;
    server = await startServer(root);
  });
  after(async () => {
    server?.child.kill('SIGTERM');
    await home?.close();
    tmp.cleanup();
  });

  it('lets the operator open a job, but not claim, attest, fail or finish it', async () => {
    const created = await post('/v1/jobs', { project: 'hello-app' }, asOperator());
    assert.equal(created.status, 201);
    const ticket = (await created.json()) as { jobId: string; nonce: string; toolchain: string[] };
    const key = await generateRunnerKey();
    const evidence = await evidenceFor(home, { ...ticket, project: 'hello-app', attestation: 'tpm' });
    for (const [path, body] of [
      [`/v1/jobs/${ticket.jobId}/claim`, {}],
      [`/v1/jobs/${ticket.jobId}/attest`, { runnerKey: key.publicJwk, evidence }],
      ['/v1/attestation/challenge', { job_id: ticket.jobId }],
      [`/v1/jobs/${ticket.jobId}/fail`, { reason: 'forged', steps: [] }],
      [`/v1/jobs/${ticket.jobId}/finish`, { steps: [] }],
    ] as const) {
      const r = await post(path, body, asOperator());
      assert.equal(r.status, 401, `${path} answered ${r.status}`);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    }
    const job = (await (await fetch(`${server.url}/v1/jobs/${ticket.jobId}`)).json()) as { state: string };
    assert.equal(job.state, 'queued', 'nothing the operator sent moved the job');
  });

  it('refuses a host proof made with a key the security role never enrolled, whatever host it names', async () => {
    const forger = EphemeralSigner.generate();
    const request = { project: 'hello-app' };
    const cp = new HttpControlPlane({ url: server.url });
    for (const name of [home.host.name, 'nobody']) {
      const proof = await signHostRequest(forger, name, { act: 'create', request });
      await assert.rejects(cp.createJob(request, proof), (e) => isGatehouseError(e, 'UNAUTHORIZED'));
    }
  });

  it('refuses a replayed host request and one signed for another request', async () => {
    const cp = new HttpControlPlane({ url: server.url });
    const request = { project: 'hello-app' };
    const proof = await signHostRequest(home.host.signer, home.host.name, { act: 'create', request });
    await cp.createJob(request, proof);
    await assert.rejects(cp.createJob(request, proof), (e) => isGatehouseError(e, 'UNAUTHORIZED'));
    const other = await signHostRequest(home.host.signer, home.host.name, {
      act: 'create',
      request: { project: 'vulnerable-app' },
    });
    await assert.rejects(cp.createJob(request, other), (e) => isGatehouseError(e, 'UNAUTHORIZED'));
  });

  it('refuses software evidence on a TPM control plane, even from the enrolled host, over HTTP and embedded', async () => {
    const cp = new HttpControlPlane({ url: server.url });
    for (const plane of [cp, home.controlPlane]) {
      const key = await generateRunnerKey();
      const credentials = new JobCredentials(home.host, plane, key);
      const request = { project: 'hello-app' };
      const ticket = await plane.createJob(request, await credentials.host('create', undefined, request));
      const attest = {
        jobId: ticket.jobId,
        runnerKey: key.publicJwk,
        evidence: await evidenceFor(home, ticket),
      };
      await assert.rejects(
        plane.attest(attest, await credentials.host('attest', ticket.jobId, attest)),
        (e) => {
          assert.ok(isGatehouseError(e, 'EVIDENCE_REJECTED'), String(e));
          assert.match((e as Error).message, /ATTESTATION_MODE/);
          return true;
        },
      );
    }
  });

  it('denies a submission without a token: bytes posted by the operator are logged as a deny, never signed', async () => {
    const job = await openedJob(home, 'hello-app');
    const bytes = new TextEncoder().encode('arbitrary bytes\n');
    const r = await post(
      `/v1/jobs/${job.ticket.jobId}/submit`,
      await submitRequest(job, {
        controlPlane: home.controlPlane,
        token: undefined,
        name: 'dist/hello-app.tar',
        bytes,
      }),
      asOperator(),
    );
    assert.equal(r.status, 409, 'an unattested job is not waiting for the gate');
    const attested = await attestedJob(home, 'hello-app');
    const stolen = await submitRequest(attested, {
      controlPlane: home.controlPlane,
      token: undefined,
      name: 'dist/hello-app.tar',
      bytes,
    });
    const decided = (await (await post(`/v1/jobs/${attested.ticket.jobId}/submit`, stolen)).json()) as {
      outcome: string;
      bundle?: unknown;
      reasons: { rule: string }[];
    };
    assert.equal(decided.outcome, 'deny');
    assert.equal(decided.bundle, undefined);
    assert.equal(decided.reasons[0]?.rule, 'attestation-token');
  });

  it("refuses to fail or finish another host's job, and an attested job for anyone but its job key", async () => {
    const other = EphemeralSigner.generate();
    const jwk = { kty: 'EC', crv: 'P-256', ...exportXY(other) };
    const content = { publicKey: jwk, pool: 'local', attestation: 'tpm' };
    const security = await loadSecuritySigner(securityKeyPath(join(root, 'keys')));
    const act = { kind: 'host', name: 'other-host', version: 1, content } as const;
    await home.hosts.enroll('other-host', 1, content, await signSecurityAct(act, security));
    const cp = new HttpControlPlane({ url: server.url });
    const queued = await openedJob(home, 'hello-app');
    const fail = { jobId: queued.ticket.jobId, reason: 'sabotage', steps: [] };
    const foreign = await signHostRequest(other, 'other-host', {
      act: 'fail',
      job: fail.jobId,
      request: fail,
    });
    await assert.rejects(cp.fail(fail, foreign), (e) => isGatehouseError(e, 'UNAUTHORIZED'));
    const attested = await attestedJob(home, 'hello-app');
    const end = { jobId: attested.ticket.jobId, reason: 'sabotage', steps: [] };
    const byHost = await signHostRequest(home.host.signer, home.host.name, {
      act: 'fail',
      job: end.jobId,
      request: end,
    });
    await assert.rejects(cp.fail(end, byHost), (e) => isGatehouseError(e, 'UNAUTHORIZED'));
    for (const id of [queued.ticket.jobId, attested.ticket.jobId])
      assert.notEqual((await cp.getJob(id)).state, 'failed');
  });

  it('refuses a second runner key for an attested job: one job, one runner', async () => {
    const job = await attestedJob(home, 'hello-app');
    const intruder = await generateRunnerKey();
    const credentials = new JobCredentials(home.host, home.controlPlane, intruder);
    const attester = home.attester();
    try {
      await assert.rejects(
        attester.attest({
          jobId: job.ticket.jobId,
          baseline: await baselineFor(home, job.ticket, { agent: false }),
          runnerKey: intruder.publicJwk,
          endpoints: credentials.endpoints(job.ticket.jobId),
        }),
        (e) => isGatehouseError(e, 'EVIDENCE_REJECTED') && /another runner key/.test((e as Error).message),
      );
    } finally {
      await attester.destroy();
    }
  });

  it('refuses a rolled-back policy: the readable version 1 re-posted with its own signature', async () => {
    const v1 = (await (
      await fetch(`${server.url}/v1/policies/default?version=1`)
    ).json()) as PolicyVersionRecord;
    const replay = await post(
      '/v1/policies',
      { text: v1.text, version: 1, signature: v1.signature, keyId: v1.keyId },
      asOperator(),
    );
    assert.equal(replay.status, 409);
    const next = await post(
      '/v1/policies',
      { text: v1.text, version: 2, signature: v1.signature, keyId: v1.keyId },
      asOperator(),
    );
    assert.equal(next.status, 422);
    const current = (await (await fetch(`${server.url}/v1/policies/default`)).json()) as PolicyVersionRecord;
    assert.equal(current.version, 1);
  });

  it('registers a project over the API only with the security signature, and refuses the act replayed', async () => {
    const content = { source: { kind: 'unverified-directory' }, policy: 'default', pools: ['local'] };
    const security = await loadSecuritySigner(securityKeyPath(join(root, 'keys')));
    const act = { kind: 'project', name: 'api-app', version: 1, content } as const;
    const body = { name: 'api-app', version: 1, content, ...(await signSecurityAct(act, security)) };
    assert.equal((await post('/v1/projects', body)).status, 401, 'the bearer admits the act');
    const forged = { ...body, ...(await signSecurityAct(act, EphemeralSigner.generate())) };
    assert.equal((await post('/v1/projects', forged, asOperator())).status, 422);
    assert.equal((await post('/v1/projects', body, asOperator())).status, 201);
    assert.equal((await post('/v1/projects', body, asOperator())).status, 409);
    const listed = (await (await fetch(`${server.url}/v1/projects`)).json()) as {
      projects: { name: string }[];
    };
    assert.ok(listed.projects.some((p) => p.name === 'api-app'));
  });

  it('refuses a job for a project nobody registered', async () => {
    const r = await post('/v1/jobs', { project: 'prod-payments' }, asOperator());
    assert.equal(r.status, 404);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /not registered/);
  });

  it('never gives a directory build the identity of a project registered to a repository', async () => {
    await registerProject(home, 'prod-payments', {
      source: { kind: 'git', repository: 'https://git.example/payments' },
    });
    const app = copyExample('hello-app', join(tmp.path, 'elsewhere'));
    const r = await cli(['run', app, '--project', 'prod-payments', '--json', '--home', root]);
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout) as { decision: { reasons: { rule: string; message: string }[] } };
    assert.equal(doc.decision.reasons[0]?.rule, 'project-source');
    assert.match(doc.decision.reasons[0]?.message ?? '', /registered to https:\/\/git\.example\/payments/);
  });

  it('runs `gatehouse run --server` through the server, attested by a pooled vTPM, and allows it', async () => {
    const r = await cli(
      ['run', join(examplesDir, 'hello-app'), '--server', server.url, '--json', '--home', root],
      {
        env: { GATEHOUSE_API_TOKEN: '' },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { outcome: string; steps: { name: string; detail?: string }[] };
    assert.equal(doc.outcome, 'allow');
    assert.equal(doc.steps.find((s) => s.name === 'attest')?.detail, 'tpm');
  });
});

describe('zero trust: what the gate computes rather than believes', () => {
  const tmp = tempDir('zero-trust-gate');

  after(() => tmp.cleanup());

  it('denies every build while the vulnerability database is empty, naming the cause', async () => {
    const root = join(tmp.path, 'empty-db');
    assert.equal((await cli(['init', '--home', root])).code, 0);
    const r = await cli(['run', join(examplesDir, 'hello-app'), '--json', '--home', root]);
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout) as { decision: { reasons: { rule: string; message: string }[] } };
    assert.equal(doc.decision.reasons[0]?.rule, 'vulnerability-database');
    assert.match(doc.decision.reasons[0]?.message ?? '', /empty.*gatehouse vulndb import/);
  });

  it('gives a software-measured runner Build L2 at most, which the default policy refuses', async () => {
    const root = join(tmp.path, 'software');
    await initHome(root, { examples: false });
    const configPath = join(root, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { runner: { attestation: string } };
    config.runner.attestation = 'software';
    await writeFile(configPath, JSON.stringify(config));
    const home = await openHome(root);
    try {
      await seedVulnerabilityData(home);
      await registerProject(home, 'hello-app');
    } finally {
      await home.close();
    }
    // The host stays enrolled for TPM: the security role, not the config, declares software pools.
    const stillTpm = await cli(['run', join(examplesDir, 'hello-app'), '--json', '--home', root]);
    assert.equal(stillTpm.code, 3, stillTpm.stderr); // refused, like any failed verification
    assert.match(stillTpm.stderr, /ATTESTATION_MODE: runner host .* is enrolled for TPM attestation/);
    // Declared by the security role as a software pool, the host is believed — for an L2 build.
    const again = await openHome(root);
    try {
      const home = again;
      const current = await home.hosts.get(home.host.name);
      assert.ok(current);
      const content = { publicKey: current.publicKey, pool: current.pool, attestation: 'software' };
      const act = { kind: 'host', name: current.name, version: current.version + 1, content } as const;
      const security = await loadSecuritySigner(securityKeyPath(join(root, 'keys')));
      await home.hosts.enroll(current.name, act.version, content, await signSecurityAct(act, security));
    } finally {
      await again.close();
    }
    const r = await cli(['run', join(examplesDir, 'hello-app'), '--json', '--home', root]);
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout) as {
      steps: { name: string; detail?: string }[];
      decision: { reasons: { rule: string }[] };
    };
    assert.equal(doc.steps.find((s) => s.name === 'attest')?.detail, 'software-measurement');
    assert.deepEqual(doc.decision.reasons.map((x) => x.rule).sort(), [
      'attested-runner',
      'slsa-build-level-3',
    ]);
  });
});

function exportXY(signer: EphemeralSigner): { x: string; y: string } {
  const jwk = createPublicKey({
    key: Buffer.from(signer.publicKeySpki()),
    format: 'der',
    type: 'spki',
  }).export({
    format: 'jwk',
  });
  return { x: jwk.x ?? '', y: jwk.y ?? '' };
}
