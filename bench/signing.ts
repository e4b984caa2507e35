/**
 * Signing benchmark: approvals per second through the gate's signing path (leaf certificate,
 * DSSE, transparency log append with SET, inclusion proof with signed checkpoint, RFC 3161
 * timestamp, bundle); verification time per bundle, gatehouse next to @sigstore/verify on the
 * same bundles in the same run; inclusion and consistency proof time in a log of 1,000,000
 * entries (stored interior nodes), next to the whole-tree computation it replaced.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromJSON, type SerializedBundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { sha256 } from '../src/common/encoding.ts';
import { buildBundle, parseBundle } from '../src/signing/bundle.ts';
import { signEnvelope } from '../src/signing/dsse.ts';
import { EphemeralSigner } from '../src/signing/file-key-signer.ts';
import { type HomeKeys, initHomeKeys, openHomeKeys } from '../src/signing/home-keys.ts';
import { INTOTO_PAYLOAD_TYPE, makeStatement, statementPayload } from '../src/signing/intoto.ts';
import { buildTrustedRoot, parseTrustedRoot } from '../src/signing/trust-root.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
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
const APPROVALS = 600;
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

/** One approval as the gate signs it: a leaf, three attestations (provenance, SBOM, VSA) and the decision. */
async function approve(keys: HomeKeys, log: TransparencyLog, n: number): Promise<SerializedBundle[]> {
  const artifact = Buffer.from(`artifact ${n}`);
  const subject = [{ name: `app-${n}.tgz`, digest: { sha256: sha256(artifact).toString('hex') } }];
  await log.append(decisionEntryBody({ outcome: 'allow', subject: subject[0], policyDigest: 'bench' }));
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await keys.ca.issueLeaf({
    publicKeySpki: leafKey.publicKeySpki(),
    identity: IDENTITY,
    issuer: ISSUER,
  });
  const out: SerializedBundle[] = [];
  for (const predicateType of [
    'https://slsa.dev/provenance/v1',
    'https://cyclonedx.org/bom',
    'https://slsa.dev/verification_summary/v1',
  ]) {
    const envelope = await signEnvelope(
      INTOTO_PAYLOAD_TYPE,
      statementPayload(makeStatement(subject, predicateType, { n })),
      leafKey,
    );
    const body = dsseEntryBody(envelope, certificatePem);
    const entry = await log.append(body);
    const proof = await log.inclusionProof(entry.index);
    const stamp = await (keys.tsa as NonNullable<HomeKeys['tsa']>).timestamp(
      Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'),
    );
    out.push(
      buildBundle({ envelope, certificatePem, entry: { ...entry, body, proof }, rfc3161Timestamps: [stamp] }),
    );
  }
  return out;
}

type Rows = Record<string, string | number>[];

/** 1. Approvals per second, sequential as the gate runs them (file-backed SQLite, WAL). */
async function benchApprovals(
  keys: HomeKeys,
  log: TransparencyLog,
): Promise<{ approvalRows: Rows; bundles: SerializedBundle[] }> {
  for (let i = 0; i < 20; i++) await approve(keys, log, -i);
  const bundles: SerializedBundle[] = [];
  const t0 = performance.now();
  for (let i = 0; i < APPROVALS; i++) bundles.push(...(await approve(keys, log, i)));
  const elapsed = (performance.now() - t0) / 1000;
  const approvalRows = [
    {
      measure: 'gate approvals (leaf + 3 bundles + decision entry)',
      count: APPROVALS,
      seconds: elapsed.toFixed(2),
      'per second': (APPROVALS / elapsed).toFixed(0),
    },
    {
      measure: 'signed bundles (DSSE + log + proof + TSA + bundle)',
      count: APPROVALS * 3,
      seconds: elapsed.toFixed(2),
      'per second': ((APPROVALS * 3) / elapsed).toFixed(0),
    },
  ];
  printTable(
    `approvals through sign + log + bundle (keys sealed at rest, log ${await log.size()} entries)`,
    approvalRows,
  );
  return { approvalRows, bundles };
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
    const log = new TransparencyLog({ store: store.log, signer: keys.logSigner, origin: ORIGIN });
    const trustedRootJson = buildTrustedRoot(keys.trustedRootInput(`https://${ORIGIN}`));
    const trustedRoot = parseTrustedRoot(trustedRootJson);

    const { approvalRows, bundles } = await benchApprovals(keys, log);
    const verifyRows = benchVerification(bundles.slice(0, VERIFY_BUNDLES), trustedRootJson, trustedRoot);
    const conformanceRows = benchPublicGood();
    await store.close();
    keys.close();

    const { proofRows, fill } = await benchProofs(join(dir, 'million.db'));
    const path = writeResult('signing', {
      approvals: approvalRows,
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
