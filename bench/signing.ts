/**
 * Signing benchmark: approvals per second through the gate's signing path (leaf certificate with
 * its precertificate logged in the CT log and the SCT embedded, DSSE, transparency log append with
 * SET, inclusion proof against the batch's signed checkpoint, RFC 3161 timestamp, bundle), one
 * approval at a time (a lone job's latency) and many at once (a server's throughput: the log's
 * batches then hold many entries under one checkpoint signature and one transaction), with the
 * CPU each part takes; verification time per bundle, gatehouse next to @sigstore/verify on the
 * same bundles in the same run; inclusion and consistency proof time in a log of 1,000,000
 * entries (stored interior nodes), next to the whole-tree computation it replaced.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromJSON, type SerializedBundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { sha256 } from '../src/common/encoding.ts';
import { buildBundle, parseBundle } from '../src/signing/bundle.ts';
import type { PrecertificateLog } from '../src/signing/ct.ts';
import { signEnvelope } from '../src/signing/dsse.ts';
import { EphemeralSigner } from '../src/signing/file-key-signer.ts';
import { type HomeKeys, initHomeKeys, openHomeKeys } from '../src/signing/home-keys.ts';
import { INTOTO_PAYLOAD_TYPE, makeStatement, statementPayload } from '../src/signing/intoto.ts';
import type { Signer } from '../src/signing/signer.ts';
import { buildTrustedRoot, parseTrustedRoot } from '../src/signing/trust-root.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import type { LogStore } from '../src/store/store.ts';
import { CtLog } from '../src/tlog/ct-log.ts';
import {
  leafHash,
  verifyConsistency,
  verifyInclusion,
  inclusionProof as wholeTreeInclusion,
} from '../src/tlog/merkle.ts';
import { appendEntries } from '../src/tlog/stored-tree.ts';
import { decisionEntryBody, dsseEntryBody, TransparencyLog } from '../src/tlog/transparency-log.ts';
import { parseSigstoreBundle } from '../src/verify/sigstore-bundle.ts';
import { verifySigstoreBundle } from '../src/verify/sigstore-verifier.ts';
import { verifyArtifactBundle } from '../src/verify/verify.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const ORIGIN = 'gatehouse.bench/log';
const IDENTITY = 'https://gatehouse.bench/projects/app';
const ISSUER = 'https://gatehouse.bench/attestation';
const APPROVALS = Number(process.env.BENCH_APPROVALS ?? 1500);
/** Approvals in flight at once in the concurrent run, as a busy server has them. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const TARGET_PER_SECOND = 2000;
const VERIFY_BUNDLES = 200;
const LOG_SIZE = 1_000_000;
const PROOFS = 2000;

const stats = (xs: number[]) => ({
  p50: percentile(xs, 50),
  p95: percentile(xs, 95),
  mean: xs.reduce((a, b) => a + b, 0) / xs.length,
});
const ms = (x: number) => x.toFixed(3);
const rnd = (n: number) => randomBytes(4).readUInt32BE() % n;

/** Milliseconds spent in each part of the signing path, added up over approvals. */
type Parts = Map<string, number>;

async function timed<T>(parts: Parts | undefined, name: string, fn: () => Promise<T>): Promise<T> {
  if (parts === undefined) return fn();
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    parts.set(name, (parts.get(name) ?? 0) + performance.now() - t0);
  }
}

/** What the approvals sign with: the home's keys, its log and its CT log. */
interface SigningWorld {
  keys: HomeKeys;
  log: TransparencyLog;
  ctLogs: readonly PrecertificateLog[];
}

/**
 * One approval as the gate signs it (src/gate/sign-build.ts): the decision entry, a leaf (its
 * precertificate logged for an SCT), three attestations each signed, logged, proven, time-stamped
 * and bundled (provenance and SBOM at once, then the VSA). `parts`, when given, adds up the wall
 * time of each part (two parts at once count twice).
 */
async function approve(w: SigningWorld, n: number, parts?: Parts): Promise<SerializedBundle[]> {
  const { keys, log } = w;
  const artifact = Buffer.from(`artifact ${n}`);
  const subject = [{ name: `app-${n}.tgz`, digest: { sha256: sha256(artifact).toString('hex') } }];
  await timed(parts, 'decision entry (log append + SET)', () =>
    log.append(decisionEntryBody({ outcome: 'allow', subject: subject[0], policyDigest: 'bench' })),
  );
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await timed(parts, 'leaf certificate (CT precertificate + SCT)', () =>
    keys.ca.issueLeaf(
      { publicKeySpki: leafKey.publicKeySpki(), identity: IDENTITY, issuer: ISSUER },
      w.ctLogs,
    ),
  );
  const bundleOf = async (predicateType: string): Promise<SerializedBundle> => {
    const envelope = await timed(parts, 'DSSE signature ×3', () =>
      signEnvelope(
        INTOTO_PAYLOAD_TYPE,
        statementPayload(makeStatement(subject, predicateType, { n })),
        leafKey,
      ),
    );
    const body = dsseEntryBody(envelope, certificatePem);
    const entry = await timed(parts, 'log append + SET ×3', () => log.append(body));
    const proof = await timed(parts, 'inclusion proof + checkpoint ×3', () =>
      log.inclusionProof(entry.index),
    );
    const stamp = await timed(parts, 'RFC 3161 timestamp ×3', () =>
      (keys.tsa as NonNullable<HomeKeys['tsa']>).timestamp(
        Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'),
      ),
    );
    return timed(parts, 'bundle ×3', async () =>
      buildBundle({ envelope, certificatePem, entry: { ...entry, body, proof }, rfc3161Timestamps: [stamp] }),
    );
  };
  // As the gate signs them: provenance and SBOM attestation at once, then the VSA that names both.
  const out = await Promise.all([
    bundleOf('https://slsa.dev/provenance/v1'),
    bundleOf('https://cyclonedx.org/bom'),
  ]);
  out.push(await bundleOf('https://slsa.dev/verification_summary/v1'));
  return out;
}

type Rows = Record<string, string | number>[];

/** A signer that counts its signatures (the log key's: SETs and checkpoints). */
class CountingSigner implements Signer {
  readonly algorithm = 'ecdsa-p256-sha256' as const;
  readonly #inner: Signer;
  signatures = 0;
  constructor(inner: Signer) {
    this.#inner = inner;
  }
  publicKeySpki(): Uint8Array {
    return this.#inner.publicKeySpki();
  }
  publicKeyPem(): string {
    return this.#inner.publicKeyPem();
  }
  sign(data: Uint8Array): Promise<Uint8Array> {
    this.signatures++;
    return this.#inner.sign(data);
  }
}

/** Time spent in the store's log appends (one write transaction each, synced to disk), and how many. */
class CommitClock {
  ms = 0;
  commits = 0;
  /** `store` with its `append` timed. */
  timed(store: LogStore): LogStore {
    return new Proxy(store, {
      get: (target, property) => {
        const value = Reflect.get(target, property) as unknown;
        if (property !== 'append' || typeof value !== 'function') {
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return async (...args: Parameters<LogStore['append']>) => {
          const t0 = performance.now();
          try {
            return await target.append(...args);
          } finally {
            this.ms += performance.now() - t0;
            this.commits++;
          }
        };
      },
    });
  }
}

/**
 * The signatures alone, measured here: an approval signs 13 times with P-256 (the precertificate
 * and the leaf, the SCT, 3 DSSE envelopes, 4 SETs, 3 RFC 3161 tokens) plus its batches'
 * checkpoints, and generates one leaf key. Milliseconds per approval.
 */
async function signatureFloorMs(keys: HomeKeys): Promise<number> {
  const data = randomBytes(300);
  const signer = EphemeralSigner.generate();
  const rounds = 300;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    EphemeralSigner.generate();
    for (let k = 0; k < 13; k++) await (k % 2 === 0 ? signer : keys.logSigner).sign(data);
  }
  return (performance.now() - t0) / rounds;
}

/** Seconds of wall time and of this process's CPU while `fn` runs. */
async function measured(fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

/**
 * 1. Approvals per second (file-backed SQLite, WAL, synchronous FULL: every acknowledged entry
 * survives a power cut): one at a time, then {@link CONCURRENCY} at once.
 */
async function benchApprovals(
  w: SigningWorld,
  counter: CountingSigner,
  clock: CommitClock,
): Promise<{ approvalRows: Rows; partRows: Rows; bundles: SerializedBundle[]; verdict: string }> {
  for (let i = 0; i < 20; i++) await approve(w, -i);
  const bundles: SerializedBundle[] = [];
  const parts: Parts = new Map();
  const sequentialCount = Math.max(1, Math.floor(APPROVALS / 3));
  const s0 = counter.signatures;
  const sequential = await measured(async () => {
    for (let i = 0; i < sequentialCount; i++) bundles.push(...(await approve(w, i, parts)));
  });
  const sequentialLogSignatures = counter.signatures - s0;
  const c0 = counter.signatures;
  const size0 = await w.log.size();
  const commitMs0 = clock.ms;
  const commits0 = clock.commits;
  let next = 0;
  const concurrent = await measured(async () => {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < APPROVALS) {
          const n = 1_000_000 + next++;
          bundles.push(...(await approve(w, n)));
        }
      }),
    );
  });
  const entries = (await w.log.size()) - size0;
  const commitSeconds = (clock.ms - commitMs0) / 1000;
  const commits = clock.commits - commits0;
  const logSignatures = counter.signatures - c0;
  // Every entry has its SET; the rest of the log key's signatures are checkpoints, one per batch.
  const checkpoints = logSignatures - entries;
  const perSecond = APPROVALS / concurrent.wall;
  const floor = await signatureFloorMs(w.keys);
  const row = (
    label: string,
    count: number,
    m: { wall: number; cpu: number },
    checkpointsSigned: number,
  ) => ({
    measure: label,
    approvals: count,
    seconds: m.wall.toFixed(2),
    'per second': (count / m.wall).toFixed(0),
    'CPU ms / approval': ((m.cpu * 1000) / count).toFixed(2),
    'checkpoint signatures / approval': (checkpointsSigned / count).toFixed(2),
  });
  const approvalRows = [
    row(
      'one at a time (a lone job)',
      sequentialCount,
      sequential,
      sequentialLogSignatures - sequentialCount * 4,
    ),
    row(`${CONCURRENCY} at once (a busy server)`, APPROVALS, concurrent, checkpoints),
  ];
  printTable(
    `approvals (decision entry + leaf with SCT + 3 bundles), keys sealed at rest, SQLite synchronous=FULL; log ${await w.log.size()} entries`,
    approvalRows,
  );
  process.stdout.write(
    `${CONCURRENCY} at once: ${entries} log entries in ${checkpoints} batches (${(entries / Math.max(1, checkpoints)).toFixed(1)} entries per checkpoint signature)\n`,
  );
  const verdict =
    perSecond >= TARGET_PER_SECOND
      ? `target ≥ ${TARGET_PER_SECOND}/s met: ${perSecond.toFixed(0)}/s`
      : `target ≥ ${TARGET_PER_SECOND}/s missed by ${(TARGET_PER_SECOND - perSecond).toFixed(0)}/s (${perSecond.toFixed(0)}/s): ${((concurrent.cpu * 1000) / APPROVALS).toFixed(2)} ms of CPU per approval (one core's worth: ${(1000 / ((concurrent.cpu * 1000) / APPROVALS)).toFixed(0)}/s; the gate's work runs on one event loop), ${((concurrent.cpu / concurrent.wall) * 100).toFixed(0)}% of one core busy; ${commitSeconds.toFixed(2)} s of the ${concurrent.wall.toFixed(2)} s spent in ${commits} log and CT write transactions (synchronous=FULL: ${((commitSeconds * 1000) / Math.max(1, commits)).toFixed(1)} ms each, the disk's sync holding the event loop); the 13 P-256 signatures and the leaf key alone take ${floor.toFixed(2)} ms per approval here (at most ${(1000 / floor).toFixed(0)}/s on one core, ${(2000 / floor).toFixed(0)}/s on both); the parts (one at a time) below`;
  process.stdout.write(`${verdict}\n`);
  const total = [...parts.values()].reduce((a, b) => a + b, 0);
  const partRows = [...parts]
    .sort((a, b) => b[1] - a[1])
    .map(([part, msTotal]) => ({
      part,
      'ms / approval': (msTotal / sequentialCount).toFixed(3),
      share: `${((msTotal / total) * 100).toFixed(0)}%`,
    }));
  printTable('one approval at a time, wall time per part', partRows);
  return { approvalRows, partRows, bundles, verdict };
}

/** The SHA-256 of a bundle's first subject. */
const subjectOf = (b: SerializedBundle) =>
  Buffer.from(
    (
      JSON.parse(Buffer.from(b.dsseEnvelope?.payload ?? '', 'base64').toString()) as {
        subject: { digest: { sha256: string } }[];
      }
    ).subject[0]?.digest.sha256 ?? '',
    'hex',
  );

/** Milliseconds of `fn` on each bundle of the sample, after a warm-up on its first 20. */
const timeEach = (sample: SerializedBundle[], fn: (b: SerializedBundle) => void): number[] => {
  for (const b of sample.slice(0, 20)) fn(b);
  return sample.map((b) => {
    const s = performance.now();
    fn(b);
    return performance.now() - s;
  });
};

/** 2. Verification per bundle, same bundles, same run. */
function benchVerification(
  sample: SerializedBundle[],
  trustedRootJson: ReturnType<typeof buildTrustedRoot>,
  trustedRoot: ReturnType<typeof parseTrustedRoot>,
): Rows {
  const sigstoreJs = new Verifier(
    toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(JSON.stringify(trustedRootJson)))),
    {
      ctlogThreshold: 0,
      tlogThreshold: 1,
      timestampThreshold: 2,
    },
  );
  const ours = timeEach(sample, (b) =>
    verifyArtifactBundle({
      artifactDigest: subjectOf(b),
      bundle: parseBundle(b),
      trustedRoot,
      identity: IDENTITY,
      issuer: ISSUER,
    }),
  );
  const general = timeEach(sample, (b) =>
    verifySigstoreBundle({
      bundle: parseSigstoreBundle(b),
      trustedRoot,
      artifact: { sha256: subjectOf(b) },
      identity: IDENTITY,
      issuer: ISSUER,
    }),
  );
  const theirs = timeEach(sample, (b) =>
    sigstoreJs.verify(toSignedEntity(bundleFromJSON(b)), {
      subjectAlternativeName: IDENTITY,
      extensions: { issuer: ISSUER },
    }),
  );
  const verifyRows = [
    { verifier: 'gatehouse verify (verifyArtifactBundle)', bundles: sample.length, ...fmt(stats(ours)) },
    {
      verifier: 'gatehouse verify-bundle (any Sigstore bundle)',
      bundles: sample.length,
      ...fmt(stats(general)),
    },
    { verifier: '@sigstore/verify (Verifier.verify)', bundles: sample.length, ...fmt(stats(theirs)) },
  ];
  printTable(
    'verification per bundle, ms (SET + RFC 3161 timestamp + chain + identity + DSSE + subject)',
    verifyRows,
  );
  return verifyRows;
}

/** The public-good conformance bundle, where the shared data is present. */
function benchPublicGood(): Rows {
  const conformanceRows: Record<string, string | number>[] = [];
  const caseDir = join(import.meta.dirname, '../../shared/data/sigstore-conformance/bundle-verify');
  try {
    const pg = JSON.parse(readFileSync(join(caseDir, '../public-good-trusted_root.json'), 'utf8'));
    const raw = JSON.parse(readFileSync(join(caseDir, 'happy-path-v0.3/bundle.sigstore.json'), 'utf8'));
    const artifact = readFileSync(join(caseDir, 'a.txt'));
    const pgRoot = parseTrustedRoot(pg);
    const pgJs = new Verifier(toTrustMaterial(TrustedRoot.fromJSON(pg)));
    const times = (fn: () => void) =>
      Array.from({ length: 120 }, (_, i) => {
        const s = performance.now();
        fn();
        return i < 20 ? Number.NaN : performance.now() - s;
      }).filter((x) => !Number.isNaN(x));
    const a = times(() =>
      verifySigstoreBundle({
        bundle: parseSigstoreBundle(raw),
        trustedRoot: pgRoot,
        artifact: { bytes: artifact },
      }),
    );
    const b = times(() => pgJs.verify(toSignedEntity(bundleFromJSON(raw), artifact)));
    conformanceRows.push({
      verifier: 'gatehouse verify-bundle',
      bundle: 'happy-path-v0.3 (public good, SCT)',
      ...fmt(stats(a)),
    });
    conformanceRows.push({
      verifier: '@sigstore/verify',
      bundle: 'happy-path-v0.3 (public good, SCT)',
      ...fmt(stats(b)),
    });
    printTable('verification of a public-good bundle, ms', conformanceRows);
  } catch {
    process.stdout.write('\n(public-good comparison skipped: ../shared/data is absent)\n');
  }
  return conformanceRows;
}

/** Fill a log of {@link LOG_SIZE} entries in large transactions; returns the seconds it took. */
async function fillBigLog(big: SqliteStore): Promise<number> {
  const t1 = performance.now();
  const BATCH = 20_000;
  for (let start = 0; start < LOG_SIZE; start += BATCH) {
    const entries = Array.from({ length: Math.min(BATCH, LOG_SIZE - start) }, (_, i) => {
      const body = Buffer.from(`{"i":${start + i}}`);
      return { body, leafHash: leafHash(body), integratedTime: 1_700_000_000 };
    });
    await big.transaction(() => appendEntries(big.log, entries));
  }
  return (performance.now() - t1) / 1000;
}

/** Inclusion and consistency proofs of random entries and sizes, and client verification, ms each. */
async function sampleProofs(
  big: SqliteStore,
  bigLog: TransparencyLog,
): Promise<{ inclusion: number[]; consistency: number[]; verifyTimes: number[] }> {
  const inclusion: number[] = [];
  const consistency: number[] = [];
  const verifyTimes: number[] = [];
  for (let i = 0; i < PROOFS; i++) {
    const idx = rnd(LOG_SIZE);
    const s = performance.now();
    const p = await bigLog.inclusionProof(idx);
    inclusion.push(performance.now() - s);
    const v = performance.now();
    const leaf = (await big.log.get(idx))?.leafHash as Uint8Array;
    verifyInclusion(leaf, idx, p.treeSize, p.hashes, p.rootHash);
    verifyTimes.push(performance.now() - v);
    const first = 1 + rnd(LOG_SIZE - 1);
    const c0 = performance.now();
    const c = await bigLog.consistencyProof(first, LOG_SIZE);
    consistency.push(performance.now() - c0);
    verifyConsistency(first, LOG_SIZE, c.hashes, c.firstRoot, c.secondRoot);
  }
  return { inclusion, consistency, verifyTimes };
}

/** 3. Proofs at a million entries. */
async function benchProofs(path: string): Promise<{ proofRows: Rows; fill: number }> {
  const big = SqliteStore.open(path);
  const fill = await fillBigLog(big);
  const bigLog = new TransparencyLog({
    store: big.log,
    signer: EphemeralSigner.generate(),
    origin: ORIGIN,
  });
  const { inclusion, consistency, verifyTimes } = await sampleProofs(big, bigLog);
  // The whole-tree computation the stored nodes replaced, once, for scale.
  const w0 = performance.now();
  const all = await big.log.leafHashes(0, LOG_SIZE);
  wholeTreeInclusion(all, rnd(LOG_SIZE));
  const whole = performance.now() - w0;
  const proofRows = [
    {
      proof: 'inclusion (with signed checkpoint)',
      entries: LOG_SIZE,
      samples: PROOFS,
      ...fmt(stats(inclusion)),
    },
    {
      proof: 'consistency (random first size)',
      entries: LOG_SIZE,
      samples: PROOFS,
      ...fmt(stats(consistency)),
    },
    {
      proof: 'inclusion verification (client)',
      entries: LOG_SIZE,
      samples: PROOFS,
      ...fmt(stats(verifyTimes)),
    },
    {
      proof: 'inclusion from every leaf (before)',
      entries: LOG_SIZE,
      samples: 1,
      p50: ms(whole),
      p95: ms(whole),
      mean: ms(whole),
    },
  ];
  printTable(
    `proofs at ${LOG_SIZE.toLocaleString('en')} entries, ms (log filled in ${fill.toFixed(1)} s)`,
    proofRows,
  );
  await big.close();
  return { proofRows, fill };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-signing-'));
  try {
    const config = { kind: 'file' as const, encryption: { kind: 'kek-file' as const, path: 'kek' } };
    await initHomeKeys(dir, join(dir, 'keys'), config, new Date(Date.now() - 60_000));
    const keys = await openHomeKeys(dir, join(dir, 'keys'), config);
    const store = SqliteStore.open(join(dir, 'approvals.db'));
    const counter = new CountingSigner(keys.logSigner);
    // BENCH_LOG_TICK_MS: the busy log's tick (default: the log's own, src/tlog/group-commit.ts).
    const tick = process.env.BENCH_LOG_TICK_MS;
    const batching = tick === undefined ? {} : { tickMs: Number(tick) };
    const clock = new CommitClock();
    const log = new TransparencyLog({
      store: clock.timed(store.log),
      signer: counter,
      origin: ORIGIN,
      batching,
    });
    const ctOrigin = 'gatehouse.bench/ct';
    const input = keys.trustedRootInput(`https://${ORIGIN}`, () => `https://${ctOrigin}`);
    const ct = new CtLog({
      // The CT log's shard, its appends timed like the log's.
      store: new Proxy(store.ct, {
        get: (target, property) =>
          property === 'shard'
            ? (shard: string) => clock.timed(target.shard(shard))
            : ((v: unknown) => (typeof v === 'function' ? v.bind(target) : v))(Reflect.get(target, property)),
      }),
      signer: keys.ctSigner,
      origin: ctOrigin,
      acceptedRoots: () => [input.ca].flat().map((c) => new X509Certificate(c.rootPem).raw),
      batching,
    });
    const trustedRootJson = buildTrustedRoot(input);
    const trustedRoot = parseTrustedRoot(trustedRootJson);

    const { approvalRows, partRows, bundles, verdict } = await benchApprovals(
      { keys, log, ctLogs: [ct] },
      counter,
      clock,
    );
    // BENCH_SIGNING=approvals: only the approvals (for profiling the signing path).
    if (process.env.BENCH_SIGNING === 'approvals') {
      await store.close();
      keys.close();
      return;
    }
    const verifyRows = benchVerification(bundles.slice(0, VERIFY_BUNDLES), trustedRootJson, trustedRoot);
    const conformanceRows = benchPublicGood();
    await store.close();
    keys.close();

    const { proofRows, fill } = await benchProofs(join(dir, 'million.db'));
    const path = writeResult('signing', {
      approvals: approvalRows,
      approvalParts: partRows,
      approvalVerdict: verdict,
      concurrency: CONCURRENCY,
      verification: verifyRows,
      publicGood: conformanceRows,
      proofs: proofRows,
      logFillSeconds: fill,
    });
    process.stdout.write(`\nwrote ${path}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fmt(s: { p50: number; p95: number; mean: number }): Record<string, string> {
  return { p50: ms(s.p50), p95: ms(s.p95), mean: ms(s.mean) };
}
