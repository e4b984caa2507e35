/**
 * Build logs end to end, with real builds (bubblewrap, a vTPM per runner): the output the runner
 * reads from the sandbox is shown live, kept with the job and served, bounded, with every secret
 * masked everywhere; its digest is the provenance's `build.log`; a failed build shows its last 40
 * lines. Jobs run embedded, through the HTTP control plane, and through `gatehouse run`.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type JobOutcome, runJob } from '../src/agent/agent.ts';
import { signHostRequest, signJobRequest } from '../src/attestation/request-proof.ts';
import { isGatehouseError } from '../src/common/errors.ts';
import type { ControlPlane } from '../src/control-plane/control-plane.ts';
import { HttpControlPlane } from '../src/control-plane/http-control-plane.ts';
import { initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { BUILD_LOG_MAX_BYTES } from '../src/runner/build-log.ts';
import { createApiServer } from '../src/server/http-server.ts';
import { LocalGitProvider } from '../src/source/local-git-provider.ts';
import { attestedJob, openedJob, seedVulnerabilityData } from '../src/testing/submission.ts';
import { cli, closeServer, copyExample, listenOnLoopback, tempDir } from './helpers.ts';

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** The provenance of an allowed job's bundle: its statement's predicate. */
function provenanceOf(outcome: JobOutcome): {
  runDetails: { byproducts?: { name: string; uri: string; digest: { sha256: string } }[] };
} {
  const bundle = outcome.result?.bundle as { dsseEnvelope: { payload: string } } | undefined;
  assert.ok(bundle, 'the job was signed');
  return JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()).predicate;
}

describe('build logs', () => {
  const tmp = tempDir('build-log');
  const root = join(tmp.path, 'home');
  let home: OpenHome;
  let server: ReturnType<typeof createApiServer>;
  let url = '';
  const env = { GATEHOUSE_BACKGROUND_FILL: '0' };

  before(async () => {
    await initHome(root);
    home = await openHome(root);
    await seedVulnerabilityData(home);
    server = createApiServer({ controlPlane: home.controlPlane, apiToken: home.apiToken });
    ({ url } = await listenOnLoopback(server));
  });
  after(async () => {
    await closeServer(server);
    await home.close();
    tmp.cleanup();
  });

  /** hello-app with its build script replaced (the same output, after the given commands). */
  const project = async (name: string, script: string): Promise<string> => {
    const dir = copyExample('hello-app', join(tmp.path, name));
    const build = `#!/bin/sh\nset -eu\nmkdir -p dist\ntar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf dist/hello-app.tar package.json\n${script}\n`;
    await writeFile(join(dir, 'build.sh'), build);
    return dir;
  };
  const run = (
    dir: string,
    options: { controlPlane?: ControlPlane; secrets?: string[]; onOutput?: (b: Buffer) => void } = {},
  ): Promise<JobOutcome> =>
    runJob(dir, {
      runner: home.runner,
      attester: home.attester,
      host: home.host,
      controlPlane: options.controlPlane ?? home.controlPlane,
      source: new LocalGitProvider(),
      ...(options.secrets === undefined ? {} : { secrets: options.secrets }),
      ...(options.onOutput === undefined ? {} : { onOutput: options.onOutput }),
    });
  const served = async (jobId: string, headers: Record<string, string> = {}) => {
    const r = await fetch(`${url}/v1/jobs/${jobId}/log`, { headers });
    return { status: r.status, headers: r.headers, bytes: Buffer.from(await r.arrayBuffer()) };
  };

  it('masks a secret the build prints split across writes: live, kept, served, and in the provenance digest', async () => {
    const secret = 'deploy-key-7f3a9c21e5';
    // The operator's token, which the agent is not told about here: the control plane masks it.
    const operator = home.apiToken;
    const dir = await project(
      'secret',
      [
        `printf 'key=${secret.slice(0, 9)}'`,
        'sleep 0.3',
        `printf '${secret.slice(9)} (twice: ${secret})\\n'`,
        // Another pipe: its bytes come after the first line only if written after they arrived.
        'sleep 0.2',
        `printf 'operator=${operator}\\n' >&2`,
        `echo done`,
      ].join('\n'),
    );
    const live: Buffer[] = [];
    const outcome = await run(dir, {
      controlPlane: new HttpControlPlane({ url }),
      secrets: [secret],
      onOutput: (b) => live.push(b),
    });
    assert.equal(
      outcome.result?.outcome,
      'allow',
      JSON.stringify(outcome.failure ?? outcome.result?.reasons),
    );
    assert.ok(live.length >= 2, 'the output came in pieces');
    const shown = Buffer.concat(live).toString();
    assert.match(shown, /^key=\*\*\* \(twice: \*\*\*\)$/m);
    assert.ok(!shown.includes(secret.slice(0, 9)) && !shown.includes(secret.slice(9)));

    const kept = await home.store.jobs.getLog(outcome.jobId);
    assert.ok(kept);
    const text = Buffer.from(kept.content).toString();
    assert.match(text, /^key=\*\*\* \(twice: \*\*\*\)\noperator=\*\*\*\ndone\n$/);
    assert.ok(!text.includes(secret) && !text.includes(operator));

    const r = await served(outcome.jobId);
    assert.equal(r.status, 200);
    assert.deepEqual(r.bytes, Buffer.from(kept.content));
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('gatehouse-log-sha256'), sha256(r.bytes));

    // The provenance names the log the control plane kept and serves, not the runner's copy.
    const log = provenanceOf(outcome).runDetails.byproducts?.find((b) => b.name === 'build.log');
    assert.equal(log?.digest.sha256, sha256(r.bytes));
    assert.match(log?.uri ?? '', new RegExp(`/jobs/${outcome.jobId}/log$`));
    assert.equal(outcome.log?.sha256, sha256(r.bytes));
    assert.equal(outcome.log?.stored, true);
  });

  it('keeps at most 1 MiB of a flood: the start and the end, with the cut marked', async () => {
    const dir = await project(
      'flood',
      'i=0; while [ $i -lt 30000 ]; do echo "line $i ................................................"; i=$((i+1)); done',
    );
    const outcome = await run(dir);
    assert.equal(
      outcome.result?.outcome,
      'allow',
      JSON.stringify(outcome.failure ?? outcome.result?.reasons),
    );
    const r = await served(outcome.jobId);
    assert.equal(r.status, 200);
    assert.ok(r.bytes.length <= BUILD_LOG_MAX_BYTES, `${r.bytes.length} bytes kept`);
    assert.equal(r.headers.get('gatehouse-log-truncated'), 'true');
    const text = r.bytes.toString();
    assert.ok(text.startsWith('line 0 ...'));
    assert.ok(text.endsWith('line 29999 ................................................\n'));
    assert.match(
      text,
      /\n\[gatehouse: \d+ bytes of build output left out here; the log keeps the first \d+ and the last \d+ bytes\]\n/,
    );
    assert.equal(outcome.log?.truncated, true);
    const log = provenanceOf(outcome).runDetails.byproducts?.find((b) => b.name === 'build.log');
    assert.equal(log?.digest.sha256, sha256(r.bytes));
  });

  it('keeps the log of a failed build and serves it like any job read', async () => {
    // The last line quotes the operator's token, which this agent was not told about.
    const dir = await project(
      'failing',
      `i=1; while [ $i -le 100 ]; do echo "step $i"; i=$((i+1)); done; sleep 0.1; echo "fatal: ${home.apiToken}" >&2; exit 3`,
    );
    const outcome = await run(dir);
    assert.equal(outcome.failure?.code, 'BUILD_FAILED');
    const record = await home.controlPlane.getJob(outcome.jobId);
    assert.equal(record.state, 'failed');
    assert.deepEqual(outcome.log?.lastLines, [
      ...Array.from({ length: 39 }, (_, i) => `step ${i + 62}`),
      `fatal: ${home.apiToken}`,
    ]);
    // The job record quotes the failure: the control plane masked its own secret in it.
    assert.match(String(record.result?.error), /exited with code 3: fatal: \*\*\*$/);
    assert.ok(!JSON.stringify(record).includes(home.apiToken));
    const token = { authorization: `Bearer ${home.apiToken}` };
    const job = await fetch(`${url}/v1/jobs/${outcome.jobId}`);
    // Reads of a job's log are as open as reads of the job: with or without the operator's token.
    for (const headers of [{}, token, { authorization: 'Bearer wrong' }]) {
      const r = await served(outcome.jobId, headers);
      assert.equal(r.status, job.status);
      assert.equal(r.status, 200);
      assert.match(r.bytes.toString(), /^step 1\n[\s\S]*\nstep 100\nfatal: \*\*\*\n$/);
    }
    assert.equal((await served('job-no-such')).status, 404);
    // A job that never built has no log.
    const { ticket } = await openedJob(home, 'hello-app');
    const none = await served(ticket.jobId);
    assert.equal(none.status, 404);
    assert.match(JSON.parse(none.bytes.toString()).error.message, /no build log/);
  });

  it('takes a log only from the job key, once, as the bytes its request names, within the bound', async () => {
    const { ticket, key } = await attestedJob(home, 'hello-app');
    const jobId = ticket.jobId;
    const content = Buffer.from(`printed by a runner that masks nothing: ${home.apiToken}\n`);
    const request = { jobId, sha256: sha256(content), size: content.length, truncated: false };
    const body = (c: Buffer, r = request) =>
      JSON.stringify({
        sha256: r.sha256,
        size: r.size,
        truncated: r.truncated,
        content: c.toString('base64'),
      });
    const post = (proof: string | undefined, c = content, r = request) =>
      fetch(`${url}/v1/jobs/${jobId}/log`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(proof === undefined ? {} : { 'gatehouse-proof': proof }),
        },
        body: body(c, r),
      });
    const jobProof = (r = request) => signJobRequest(key.privateKey, { act: 'log', job: jobId, request: r });

    // No proof; the operator's token; the host's proof once the job key speaks for the job.
    assert.equal((await post(undefined)).status, 401);
    const withToken = await fetch(`${url}/v1/jobs/${jobId}/log`, {
      method: 'POST',
      headers: { authorization: `Bearer ${home.apiToken}`, 'content-type': 'application/json' },
      body: body(content),
    });
    assert.equal(withToken.status, 401);
    const hostProof = await signHostRequest(home.host.signer, home.host.name, {
      act: 'log',
      job: jobId,
      request,
    });
    assert.equal((await post(hostProof)).status, 401);
    // A proof for other bytes: the digest is checked against what arrives.
    const other = Buffer.from('something else\n');
    assert.equal((await post(await jobProof(), other)).status, 400);
    // Content that is not canonical base64.
    const garbled = await fetch(`${url}/v1/jobs/${jobId}/log`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'gatehouse-proof': await jobProof() },
      body: body(content).replace(/"content":"[^"]*"/, '"content":"bm90IGJhc2U2NA"'),
    });
    assert.equal(garbled.status, 400);
    // Over the bound.
    const big = Buffer.alloc(BUILD_LOG_MAX_BYTES + 1, 0x61);
    const bigRequest = { ...request, sha256: sha256(big), size: big.length };
    assert.equal((await post(await jobProof(bigRequest), big, bigRequest)).status, 400);
    assert.equal(await home.store.jobs.getLog(jobId), undefined, 'nothing refused was kept');

    const ok = await post(await jobProof());
    assert.equal(ok.status, 201);
    const kept = (await ok.json()) as { sha256: string; size: number };
    // The control plane masked its own secret although the runner did not, and digests what it kept.
    const servedLog = await served(jobId);
    assert.equal(servedLog.bytes.toString(), 'printed by a runner that masks nothing: ***\n');
    assert.equal(kept.sha256, sha256(servedLog.bytes));
    assert.notEqual(kept.sha256, request.sha256);

    // Once: a second log (a rewrite of what a provenance may name) is refused, over HTTP and embedded.
    const again = Buffer.from('a rewritten history\n');
    const againRequest = { ...request, sha256: sha256(again), size: again.length };
    assert.equal((await post(await jobProof(againRequest), again, againRequest)).status, 409);
    await assert.rejects(
      home.controlPlane.uploadLog(againRequest, again, await jobProof(againRequest)),
      (e) => isGatehouseError(e, 'CONFLICT'),
    );
    assert.equal((await served(jobId)).bytes.toString(), servedLog.bytes.toString());
  });

  it('`gatehouse run --server` streams the output under its step with the secrets it holds masked', async () => {
    const dir = await project(
      'cli-live',
      [
        `printf 'token: ${home.apiToken.slice(0, 20)}'`,
        'sleep 0.2',
        `printf '${home.apiToken.slice(20)}\\n'`,
        'echo "built it"',
      ].join('\n'),
    );
    const r = await cli(['run', dir, '--server', url, '--home', root], {
      env: { ...env, GATEHOUSE_API_TOKEN: home.apiToken },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(home.apiToken.slice(0, 20)) && !r.stdout.includes(home.apiToken.slice(20)));
    // Under the fetch step, before the build step's line.
    assert.match(r.stdout, /✓ fetch[^\n]*\n {4}│ token: \*\*\*\n {4}│ built it\n {2}✓ build /);
    assert.match(r.stdout, /build log: sha256:[0-9a-f]{12} {2}\d+ bytes/);

    const quiet = await cli(['run', dir, '--server', url, '--home', root, '--quiet'], { env });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stdout, /│|built it/);
    assert.match(quiet.stdout, /✓ build /);
  });

  it('`gatehouse run --json` prints one document naming the log by its digest, and no output', async () => {
    const dir = await project('cli-json', 'echo "{ not json"');
    const r = await cli(['run', dir, '--json', '--home', root], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as {
      jobId: string;
      log: { sha256: string; size: number; stored: boolean };
    };
    assert.equal(doc.log.stored, true);
    const log = await served(doc.jobId);
    assert.equal(doc.log.sha256, sha256(log.bytes));
    assert.equal(log.bytes.toString(), '{ not json\n');
  });

  it('a failed `gatehouse run` shows the last 40 lines on stderr, then the one line naming the failure', async () => {
    const dir = await project(
      'cli-failing',
      'i=1; while [ $i -le 100 ]; do echo "step $i"; i=$((i+1)); done; printf "\\033]0;owned\\007\\033[2Jbye\\n" >&2; exit 3',
    );
    const r = await cli(['run', dir, '--quiet', '--home', root], { env });
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stdout, /step \d+/, '--quiet');
    const all = r.stderr.trimEnd().split('\n');
    assert.match(all.at(-1) ?? '', /^gatehouse run: the build exited with code 3: /);
    const lines = all.slice(
      all.findIndex((l) => l.startsWith('gatehouse run: the last 40 lines of the build log')),
    );
    assert.equal(lines.length, 42, r.stderr);
    assert.deepEqual(
      lines.slice(1, 40),
      Array.from({ length: 39 }, (_, i) => `  step ${i + 62}`),
    );
    // What a build prints cannot drive the terminal: escapes are shown, not sent.
    assert.equal(lines[40], '  ?]0;owned??[2Jbye');
    assert.ok(!r.stderr.includes('\u001b'));

    const json = await cli(['run', dir, '--json', '--home', root], { env });
    assert.equal(json.code, 1);
    const doc = JSON.parse(json.stdout) as { outcome: string; log: { lastLines: string[] } };
    assert.equal(doc.outcome, 'failed');
    assert.equal(doc.log.lastLines.length, 40);
    assert.match(json.stderr, /\n {2}step 100\n/);
  });
});
