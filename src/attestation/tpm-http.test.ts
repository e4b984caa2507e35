import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { closeServer, copyExample, listenOnLoopback, missingTools, tempDir } from '../../test/helpers.ts';
import { runJob } from '../agent/agent.ts';
import { quoteHostBootState } from '../agent/host-quote.ts';
import { HttpControlPlane } from '../control-plane/http-control-plane.ts';
import { initHome, type OpenHome, openHome } from '../home/home.ts';
import { hostVtpmIssuer, openHostTpm } from '../home/host-tpm-home.ts';
import { loadSecuritySigner, securityKeyPath } from '../home/security-role.ts';
import { createApiServer } from '../server/http-server.ts';
import { EphemeralSigner, FileKeySigner } from '../signing/file-key-signer.ts';
import { signSecurityAct } from '../signing/security-act.ts';
import { LocalGitProvider } from '../source/local-git-provider.ts';
import { registerProject, seedVulnerabilityData } from '../testing/submission.ts';
import { ensurePlatformCa, readPlatformCaCert } from '../tpm/platform-ca.ts';
import type { VirtualTpm } from '../tpm/swtpm.ts';
import { VtpmPool } from '../tpm/swtpm.ts';
import type { ReferenceValues } from './baseline.ts';
import { jobBindingDigest, PCR_ALLOCATION } from './measurement.ts';
import { signReferenceValues, signSecurityPayload } from './reference-values.ts';
import { signHostRequest } from './request-proof.ts';
import { generateRunnerKey } from './token.ts';
import { attestationPaths, EK_CA_PAYLOAD_TYPE, ekCaTrustPayload, trustedEkCasLoader } from './trust-store.ts';

const CLIENT = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/tpm-attest.sh');

function runClient(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile('sh', [CLIENT, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      res({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('the documented HTTP protocol, spoken by the shell client with tpm2-tools', {
  skip: missingTools('swtpm', 'tpm2_quote', 'curl', 'jq', 'openssl'),
}, () => {
  const tmp = tempDir('tpm-http');
  const dir = tmp.path;
  let home: OpenHome;
  let url: string;
  let tpm: VirtualTpm;
  let server: ReturnType<typeof createApiServer>;
  let shellHost: FileKeySigner;

  before(async () => {
    await initHome(join(dir, 'home'));
    home = await openHome(join(dir, 'home'));
    server = createApiServer({ controlPlane: home.controlPlane, apiToken: home.apiToken });
    ({ url } = await listenOnLoopback(server));
    const paths = attestationPaths(join(dir, 'home'));
    // A vTPM of the home's pool: its EK certificate issued by the host TPM's key.
    tpm = await new VtpmPool(paths.vtpmPool, { ekIssuer: hostVtpmIssuer() }).take();
    // The shell client is a runner host of its own: a plain PEM key, enrolled by the security role.
    shellHost = await FileKeySigner.generate(join(dir, 'shell-host.key.pem'));
    const spki = Buffer.from(shellHost.publicKeySpki());
    const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
    const content = {
      publicKey: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y },
      pool: 'local',
      attestation: 'tpm',
    };
    const security = await loadSecuritySigner(securityKeyPath(join(dir, 'home', 'keys')));
    await home.hosts.enroll(
      'shell-client',
      1,
      content,
      await signSecurityAct({ kind: 'host', name: 'shell-client', version: 1, content }, security),
    );
    await registerProject(home, 'tpm-http');
    await seedVulnerabilityData(home);
  });

  after(async () => {
    await tpm?.destroy();
    if (server !== undefined) await closeServer(server);
    await home?.close();
    tmp.cleanup();
  });

  async function eventLogFor(jobId: string, nonce: string): Promise<unknown[]> {
    const ref = JSON.parse(await readFile(join(dir, 'home', 'reference-values.json'), 'utf8')) as {
      agent: string[];
      sandboxProfile: string[];
      toolchain: Record<string, string[]>;
    };
    return [
      {
        pcr: PCR_ALLOCATION['sandbox-profile'],
        type: 'sandbox-profile',
        name: 'bubblewrap',
        digest: ref.sandboxProfile[0],
      },
      ...Object.entries(ref.toolchain)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([name, ds]) => ({ pcr: PCR_ALLOCATION.toolchain, type: 'toolchain', name, digest: ds[0] })),
      { pcr: PCR_ALLOCATION.agent, type: 'agent', name: 'agent', digest: ref.agent[0] },
      { pcr: PCR_ALLOCATION.job, type: 'job', name: jobId, digest: jobBindingDigest(jobId, nonce) },
    ];
  }

  it('attests a genuine runner, and lists the failed checks of a refused one', async () => {
    // The operator opens the job; the shell client's host claims it (--claim) before attesting.
    const ticket = await home.controlPlane.createJob({ project: 'tpm-http' });
    const events = await eventLogFor(ticket.jobId, ticket.nonce);
    const key = await generateRunnerKey();
    await writeFile(join(dir, 'events.json'), JSON.stringify(events));
    await writeFile(join(dir, 'runner.jwk'), JSON.stringify(key.publicJwk));
    const env = {
      ...process.env,
      GATEHOUSE_URL: url,
      GATEHOUSE_HOST: 'shell-client',
      GATEHOUSE_HOST_KEY: join(dir, 'shell-host.key.pem'),
      TPM2TOOLS_TCTI: tpm.tcti,
    };
    const args = [
      '--job',
      ticket.jobId,
      '--event-log',
      join(dir, 'events.json'),
      '--runner-key',
      join(dir, 'runner.jwk'),
    ];
    const ok = await runClient([...args, '--claim', '--extend'], env);
    assert.equal(ok.code, 0, `client: ${ok.stderr}`);
    const claims = decodeJwt((JSON.parse(ok.stdout) as { token: string }).token);
    assert.equal(claims.sub, ticket.jobId);
    assert.deepEqual((claims.cnf as { jkt: string }).jkt, key.thumbprint);
    assert.deepEqual(Object.keys(claims.submods as object).sort(), ['image', 'tpm']);
    assert.equal((await home.controlPlane.getJob(ticket.jobId)).state, 'running');

    // The same TPM with an event log that claims another agent: refused, every check listed.
    const forged = events.map((e) =>
      (e as { type: string }).type === 'agent' ? { ...(e as object), digest: 'ab'.repeat(32) } : e,
    );
    await writeFile(join(dir, 'forged.json'), JSON.stringify(forged));
    const bad = await runClient(
      [
        '--job',
        ticket.jobId,
        '--event-log',
        join(dir, 'forged.json'),
        '--runner-key',
        join(dir, 'runner.jwk'),
      ],
      env,
    );
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /EVENT_LOG_REPLAY: /);
    assert.match(bad.stderr, /REFERENCE_VALUES: agent digest/);

    const unknownSession = {
      session: 'x'.repeat(24),
      secret: '',
      quote: '',
      signature: '',
      pcrs: { sha256: {} },
      event_log: events,
    };
    const res = await fetch(`${url}/v1/attestation/evidence`, {
      method: 'POST',
      headers: {
        'gatehouse-proof': await signHostRequest(shellHost, 'shell-client', {
          act: 'evidence',
          request: unknownSession,
        }),
        'content-type': 'application/json',
      },
      body: JSON.stringify(unknownSession),
    });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { error: { code: string }; failed_checks: { check: string }[] };
    assert.equal(body.error.code, 'EVIDENCE_REJECTED');
    assert.deepEqual(
      body.failed_checks.map((f) => f.check),
      ['SESSION_UNKNOWN'],
    );

    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /gatehouse_attestation_failed_checks_total\{check="REFERENCE_VALUES"\} 1/);
    assert.match(metrics, /gatehouse_attestations_total\{result="success"\} 1/);

    // Every refusal is kept with its failed checks, and the token named the bundle in force.
    const refusals = (await (await fetch(`${url}/v1/attestation/refusals`)).json()) as {
      refusals: { stage: string; jobId?: string; failedChecks: { check: string }[] }[];
    };
    assert.deepEqual(
      refusals.refusals.map((r) => [r.stage, r.jobId, r.failedChecks.map((f) => f.check).sort()]),
      [
        ['evidence', undefined, ['SESSION_UNKNOWN']],
        ['evidence', ticket.jobId, ['EVENT_LOG_REPLAY', 'REFERENCE_VALUES']],
      ],
    );
    const inForce = (await (await fetch(`${url}/v1/reference-values`)).json()) as { policyId: string };
    for (const sub of Object.values(claims.submods as Record<string, Record<string, unknown>>))
      assert.equal(sub['ear.appraisal-policy-id'], inForce.policyId);
  });

  it('re-attests with a fresh quote when a job outlives its token (continuous authentication)', async () => {
    const outcome = await runJob(copyExample('hello-app', join(dir, 'hello-app')), {
      runner: home.runner,
      controlPlane: home.controlPlane,
      source: new LocalGitProvider(),
      attester: home.attester,
      host: home.host,
      // Every token is "about to expire" for this job, so the agent proves itself again.
      reattestMarginSeconds: 24 * 3600,
    });
    assert.equal(outcome.failure, undefined, JSON.stringify(outcome.failure));
    const names = outcome.steps.map((s) => s.name);
    assert.ok(names.indexOf('reattest') > names.indexOf('collect'), names.join(' '));
    assert.equal(outcome.steps.find((s) => s.name === 'reattest')?.detail, 'tpm');
    assert.equal(outcome.result?.outcome, 'allow');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /gatehouse_attestations_total\{result="success"\} 3/);
  });

  it('takes a host boot-state quote over the API when one is due, once per challenge', async () => {
    const cp = new HttpControlPlane({ url });
    // init quoted the home's host a moment ago: nothing is due, the TPM is not opened.
    assert.equal(
      await quoteHostBootState(cp, home.host, () => Promise.reject(new Error('not opened'))),
      undefined,
    );
    // Its last quote made old: a quote is due, taken and appraised against the enrollment.
    const last = await home.store.attestation.hostAttestation(home.host.name);
    assert.ok(last);
    await home.store.attestation.putHostAttestation({ ...last, quotedAt: last.quotedAt - 3_600_000 });
    const result = await quoteHostBootState(cp, home.host, openHostTpm);
    assert.equal(result?.status, 'trusted');
    assert.match(await home.controlPlane.metricsText(), /^gatehouse_runner_hosts\{standing="trusted"\} 1$/m);
    assert.match(
      await home.controlPlane.metricsText(),
      /^gatehouse_runner_hosts\{standing="quarantined"\} 0$/m,
    );
    assert.ok((result?.quotedAt ?? 0) > last.quotedAt);
    // A host enrolled without a TPM has nothing to quote; an unsigned request is refused.
    await assert.rejects(
      quoteHostBootState(cp, { name: 'shell-client', signer: shellHost }, openHostTpm),
      /not enrolled with a TPM/,
    );
    await assert.rejects(cp.hostQuoteChallenge('not-a-proof'), { code: 'UNAUTHORIZED' });
  });

  it('trusts an EK CA over the API only with the security role signature', async () => {
    await ensurePlatformCa(join(dir, 'vendor-ca'), 'a TPM vendor EK CA');
    const pem = await readPlatformCaCert(join(dir, 'vendor-ca'));
    const der = new X509Certificate(pem).raw;
    const post = (body: unknown) =>
      fetch(`${url}/v1/attestation/trusted-cas`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${home.apiToken}` },
        body: JSON.stringify(body),
      });
    const trustedCount = () => trustedEkCasLoader(join(dir, 'home'))().length;
    const before = trustedCount();
    const payload = ekCaTrustPayload(der);
    const stranger = await signSecurityPayload(EK_CA_PAYLOAD_TYPE, payload, EphemeralSigner.generate());
    assert.equal((await post({ certificate: pem, ...stranger })).status, 422);
    const security = await loadSecuritySigner(securityKeyPath(join(dir, 'home', 'keys')));
    // A signature over one certificate does not trust another.
    const other = await signSecurityPayload(EK_CA_PAYLOAD_TYPE, ekCaTrustPayload(Buffer.from('x')), security);
    assert.equal((await post({ certificate: pem, ...other })).status, 422);
    const junk = Buffer.from('not a certificate');
    const junkSig = await signSecurityPayload(EK_CA_PAYLOAD_TYPE, ekCaTrustPayload(junk), security);
    assert.equal((await post({ certificate: junk.toString('base64'), ...junkSig })).status, 400);
    assert.equal(trustedCount(), before);
    const signed = await signSecurityPayload(EK_CA_PAYLOAD_TYPE, payload, security);
    const res = await post({ certificate: pem, ...signed });
    assert.equal(res.status, 201);
    assert.match(((await res.json()) as { subject: string }).subject, /vendor EK CA/);
    assert.equal(trustedCount(), before + 1);
    // The same signed act replayed is refused and changes nothing.
    assert.equal((await post({ certificate: pem, ...signed })).status, 409);
    assert.equal(trustedCount(), before + 1);
  });

  it('publishes reference values over the API only with the security role signature', async () => {
    const current = (await (await fetch(`${url}/v1/reference-values`)).json()) as {
      version: number;
      values: ReferenceValues;
    };
    const values = { ...current.values, agent: [...current.values.agent, 'c'.repeat(64)] };
    const post = (body: unknown, auth = true) =>
      fetch(`${url}/v1/reference-values`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(auth ? { authorization: `Bearer ${home.apiToken}` } : {}),
        },
        body: JSON.stringify(body),
      });
    const version = current.version + 1;
    const stranger = await signReferenceValues(version, values, EphemeralSigner.generate());
    assert.equal((await post({ version, values, ...stranger })).status, 422);
    const security = await loadSecuritySigner(securityKeyPath(join(dir, 'home', 'keys')));
    const signed = await signReferenceValues(version, values, security);
    assert.equal((await post({ version, values, ...signed }, false)).status, 401);
    assert.equal((await post({ version, values: { agent: [] }, ...signed })).status, 400);
    const res = await post({ version, values, ...signed });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { version: number }).version, version);
    assert.equal((await post({ version, values, ...signed })).status, 409);
    const history = (await (await fetch(`${url}/v1/reference-values/history`)).json()) as {
      versions: { version: number; valid: boolean }[];
    };
    assert.deepEqual(
      history.versions.map((v) => [v.version, v.valid]),
      [
        [version, true],
        [current.version, true],
      ],
    );
  });
});
