import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { answerChallenge, challengeRequest } from '../src/agent/attester.ts';
import { HostAttestation } from '../src/attestation/host-attestation.ts';
import type { HostEnrollment } from '../src/attestation/hosts.ts';
import { generateRunnerKey, jwkThumbprint } from '../src/attestation/token.ts';
import { TpmEvidenceVerifier } from '../src/attestation/tpm-verifier.ts';
import { hostEkTrustOf, trustManufacturerRoot } from '../src/home/host-tpm-home.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { keyIdentifierOf, verifyVtpmEkCertificate } from '../src/tpm/ek-certificate.ts';
import { HostTpm, keyOfTpm2bPublic, manufactureHostTpmStandIn, stopStandIn } from '../src/tpm/host-tpm.ts';
import { HostTpmVtpmCa } from '../src/tpm/host-vtpm-ca.ts';
import { appraiseQuote } from '../src/tpm/quote.ts';
import { HostTpmStateSealer } from '../src/tpm/state-sealer.ts';
import { parseTpm2bPublic } from '../src/tpm/structures.ts';
import { VtpmPool } from '../src/tpm/swtpm.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const run_ = promisify(execFile);
const PCRS = [8, 9, 10, 11];

/**
 * Quote verification: gatehouse's verifier vs `tpm2_checkquote` on the same quotes (one run),
 * end-to-end attestation latency per runner (take a pre-manufactured vTPM whose EK certificate
 * the host TPM issued, extend the baseline, challenge, activate, quote, verify), and host
 * attestation: a host boot-state quote and its appraisal, the per-job chain check (vTPM EK
 * certificate ← host vTPM CA key, host standing) and the full chain from the manufacturer CA
 * (EK path, AK activation, boot quote, certified vTPM CA key). The host TPM is a private stand-in.
 */
export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gh-bench-attest-'));
  try {
    await manufactureHostTpmStandIn(join(dir, 'host-tpm'));
    const hostTpm = await HostTpm.open({ kind: 'stand-in', dir: join(dir, 'host-tpm') });
    await trustManufacturerRoot(
      join(dir, 'home'),
      hostTpm.manufacturerRoot() ?? '',
      hostTpm.manufacturerCrls(),
    );
    const store = SqliteStore.open(join(dir, 'db.sqlite'));
    const hostAttestation = new HostAttestation({
      store: store.attestation,
      trust: hostEkTrustOf(join(dir, 'home')),
    });
    // As a home's pool: EK certificates from the host TPM's key, states sealed to the host TPM.
    const pool = new VtpmPool(join(dir, 'pool'), {
      ekIssuer: await HostTpmVtpmCa.open(hostTpm),
      stateSealer: new HostTpmStateSealer(hostTpm),
    });
    const runners = 8;
    const t0 = performance.now();
    await pool.fill(runners + 1);
    const manufactureMs = (performance.now() - t0) / (runners + 1);

    // 1. The same quotes, verified both ways.
    const tpm = await pool.take();
    const akPub = await tpm.akPublic();
    const ak = parseTpm2bPublic(akPub);
    await writeFile(join(dir, 'ak.pub'), akPub);
    const quotes = 30;
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < quotes; i++) {
      const qd = randomBytes(32);
      const { attest, signature } = await tpm.quote(qd, PCRS);
      const values = await tpm.readPcrs(PCRS);
      const reported = new Map(Object.entries(values).map(([k, v]) => [Number(k), Buffer.from(v, 'hex')]));
      await writeFile(join(dir, 'q.msg'), attest);
      await writeFile(join(dir, 'q.sig'), signature);
      await tpm.tool('tpm2_quote', [
        '-c',
        '0x81008001',
        '-l',
        `sha256:${PCRS.join(',')}`,
        '-q',
        qd.toString('hex'),
        '-m',
        join(dir, 'q2.msg'),
        '-s',
        join(dir, 'q2.sig'),
        '-o',
        join(dir, 'q2.pcrs'),
        '-g',
        'sha256',
      ]);
      const s = performance.now();
      const r = appraiseQuote(attest, signature, { ak, qualifyingData: qd, pcrs: PCRS, reported });
      ours.push(performance.now() - s);
      if (r.failures.length > 0) throw new Error(`verification failed: ${JSON.stringify(r.failures)}`);
      // tpm2_checkquote needs the PCR file of tpm2_quote -o, so it checks a second quote of the
      // same PCRs; both are the same size and shape.
      const c = performance.now();
      await run_('tpm2_checkquote', [
        '-u',
        join(dir, 'ak.pub'),
        '-m',
        join(dir, 'q2.msg'),
        '-s',
        join(dir, 'q2.sig'),
        '-f',
        join(dir, 'q2.pcrs'),
        '-g',
        'sha256',
        '-q',
        qd.toString('hex'),
      ]);
      theirs.push(performance.now() - c);
    }
    await tpm.destroy();

    // 2. Host attestation: the full chain from the manufacturer CA (enrollment), host quotes.
    const thumb = jwkThumbprint('A'.repeat(43), 'B'.repeat(43));
    const full: number[] = [];
    let record: Awaited<ReturnType<HostAttestation['appraiseForEnrollment']>>['tpm'] | undefined;
    for (let i = 0; i < 10; i++) {
      const s = performance.now();
      record = (await hostAttestation.appraiseForEnrollment(hostTpm, thumb)).tpm;
      full.push(performance.now() - s);
    }
    if (record === undefined) throw new Error('no enrollment');
    const host: HostEnrollment = {
      name: 'bench-host',
      version: 1,
      publicKey: { kty: 'EC', crv: 'P-256', x: 'A'.repeat(43), y: 'B'.repeat(43) },
      pool: 'local',
      attestation: 'tpm',
      tpm: record,
      actor: 'bench',
      enrolledAt: new Date().toISOString(),
    };
    const hostQuotes: number[] = [];
    for (let i = 0; i < 30; i++) {
      const s = performance.now();
      const r = await hostAttestation.requote(host, hostTpm, { force: true });
      hostQuotes.push(performance.now() - s);
      if (r.status !== 'trusted') throw new Error(`host quote refused: ${r.reason}`);
    }
    const caKey = keyOfTpm2bPublic(Buffer.from(record.vtpmCaPublic, 'base64'), 'vTPM CA key');
    const issuers = [{ host: host.name, keyId: keyIdentifierOf(caKey), publicKey: caKey }];
    const hostChain = {
      issuers: async () => issuers,
      standing: (name: string) => hostAttestation.standing(host, name),
    };
    const sample = await pool.take();
    const vtpmEk = await sample.ekCertificate();
    await sample.destroy();
    const perJob: number[] = [];
    for (let i = 0; i < 200; i++) {
      const s = performance.now();
      const ek = verifyVtpmEkCertificate(vtpmEk, await hostChain.issuers(), new Date());
      const standing = await hostChain.standing(ek.host);
      perJob.push(performance.now() - s);
      if (standing.problem !== undefined) throw new Error(standing.problem);
    }

    // 3. End to end per runner.
    const verifier = new TpmEvidenceVerifier({ trustedEkCas: () => [], hostChain });
    const e2e: number[] = [];
    const events = PCRS.map((pcr) => ({
      pcr,
      digest: createHash('sha256').update(String(pcr)).digest('hex'),
    }));
    for (let i = 0; i < runners; i++) {
      const key = await generateRunnerKey();
      const s = performance.now();
      const t = await pool.take();
      await t.extend(events);
      const challenge = await verifier.challenge(await challengeRequest(t, key.publicJwk, `job-${i}`));
      const log = events.map((e, k) => ({
        ...e,
        type: (['sandbox-profile', 'toolchain', 'agent', 'job'] as const)[k],
        name: 'x',
      }));
      const ev = await verifier.verify(await answerChallenge(t, challenge, key.publicJwk, log));
      e2e.push(performance.now() - s);
      if (ev.failures.length > 0) throw new Error(`attestation failed: ${JSON.stringify(ev.failures)}`);
      await t.destroy();
    }
    const row = (measurement: string, xs: number[]) => ({
      measurement,
      n: xs.length,
      'p50 ms': percentile(xs, 50).toFixed(3),
      'p95 ms': percentile(xs, 95).toFixed(3),
    });
    printTable('attestation', [
      row('quote verification: gatehouse (in process)', ours),
      row('quote verification: tpm2_checkquote (one process each)', theirs),
      row('end-to-end attestation per runner (pooled vTPM)', e2e),
      row('host boot-state quote + appraisal (PCRs 0-7, event log replay)', hostQuotes),
      row('per-job chain check (vTPM EK cert <- host vTPM CA key, host standing)', perJob),
      row('full chain from manufacturer CA (EK path, AK activation, boot quote, certify)', full),
      {
        measurement: 'vTPM manufacture (swtpm_setup, EK cert signed in the host TPM, AK), per state',
        n: runners + 1,
        'p50 ms': manufactureMs.toFixed(1),
        'p95 ms': '',
      },
    ]);
    await writeResult('attestation', {
      quoteVerification: {
        gatehouse: { p50: percentile(ours, 50), p95: percentile(ours, 95) },
        tpm2_checkquote: { p50: percentile(theirs, 50), p95: percentile(theirs, 95) },
        quotes,
      },
      endToEnd: { p50: percentile(e2e, 50), p95: percentile(e2e, 95), runners },
      hostQuoteAppraisal: {
        p50: percentile(hostQuotes, 50),
        p95: percentile(hostQuotes, 95),
        n: hostQuotes.length,
      },
      perJobChainCheck: { p50: percentile(perJob, 50), p95: percentile(perJob, 95), n: perJob.length },
      fullChainCheck: { p50: percentile(full, 50), p95: percentile(full, 95), n: full.length },
      manufactureMsPerState: manufactureMs,
    });
    await store.close();
  } finally {
    await stopStandIn(join(dir, 'host-tpm'));
    await rm(dir, { recursive: true, force: true });
  }
}
