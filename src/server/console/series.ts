/**
 * The four seed metrics over time, from what the store keeps (so the same from every instance and
 * after a restart): share of builds on ephemeral runners, attestation success rate, time to detect
 * a policy violation, artifacts blocked. `/metrics` has the live counters; this is their history.
 */
import type {
  AttestationRefusalRecord,
  DecisionRecord,
  JobRecord,
  ReevaluationRecord,
} from '../../store/store.ts';

export interface SeriesPoint {
  /** Start of the bucket (ISO 8601). */
  t: string;
  /** The value, or null where the bucket has nothing to measure. */
  v: number | null;
  /** How many things the value is made of. */
  n: number;
}

export interface MetricSeries {
  name: string;
  title: string;
  unit: 'ratio' | 'seconds' | 'count';
  /** The value over the whole window. */
  current: number | null;
  points: SeriesPoint[];
}

const STEP_CHOICES_MS = [60_000, 5 * 60_000, 15 * 60_000, 3600_000, 6 * 3600_000, 86_400_000];

/** Whether a job's build ran on a runner made for it and destroyed after it. */
function ephemeral(job: JobRecord): boolean | undefined {
  if (!job.steps.some((s) => s.name === 'build')) return undefined;
  const provision = job.steps.find((s) => s.name === 'provision');
  const destroy = job.steps.find((s) => s.name === 'destroy');
  return provision?.ok === true && destroy?.ok === true;
}

/** Whether a job's runner attested (it got past `queued`). */
function attested(job: JobRecord): boolean {
  return job.runnerKey !== undefined || !['queued', 'cancelled'].includes(job.state);
}

/**
 * Bucket the store's records into at most `buckets` steps ending now.
 * @param now ms since the epoch
 */
export function seedMetricSeries(
  input: {
    jobs: readonly JobRecord[];
    decisions: readonly DecisionRecord[];
    refusals: readonly AttestationRefusalRecord[];
    reevaluations: readonly ReevaluationRecord[];
  },
  now: number,
  buckets = 24,
): { stepMs: number; series: MetricSeries[] } {
  const times = [
    ...input.jobs.map((j) => Date.parse(j.createdAt)),
    ...input.decisions.map((d) => Date.parse(d.createdAt)),
    ...input.refusals.map((r) => Date.parse(r.createdAt)),
  ].filter(Number.isFinite);
  const earliest = times.length === 0 ? now : Math.min(...times);
  const stepMs =
    STEP_CHOICES_MS.find((s) => s * buckets >= now - earliest) ??
    STEP_CHOICES_MS[STEP_CHOICES_MS.length - 1] ??
    1;
  const start = Math.floor(now / stepMs) * stepMs - (buckets - 1) * stepMs;
  const bucketOf = (iso: string): number => {
    const i = Math.floor((Date.parse(iso) - start) / stepMs);
    return i >= 0 && i < buckets ? i : -1;
  };
  const make = () => Array.from({ length: buckets }, () => ({ sum: 0, n: 0 }));
  const eph = make();
  const att = make();
  const detect = make();
  const blocked = make();
  const jobsById = new Map(input.jobs.map((j) => [j.id, j]));
  let ephAll = { sum: 0, n: 0 };
  let attAll = { sum: 0, n: 0 };
  let detAll = { sum: 0, n: 0 };
  let blockedAll = 0;
  for (const j of input.jobs) {
    const i = bucketOf(j.createdAt);
    const e = ephemeral(j);
    if (e !== undefined) {
      ephAll = { sum: ephAll.sum + (e ? 1 : 0), n: ephAll.n + 1 };
      const b = eph[i];
      if (b !== undefined) {
        b.sum += e ? 1 : 0;
        b.n++;
      }
    }
    if (attested(j)) {
      attAll = { sum: attAll.sum + 1, n: attAll.n + 1 };
      const b = att[i];
      if (b !== undefined) {
        b.sum += 1;
        b.n++;
      }
    }
  }
  for (const r of input.refusals) {
    attAll = { sum: attAll.sum, n: attAll.n + 1 };
    const b = att[bucketOf(r.createdAt)];
    if (b !== undefined) b.n++;
  }
  for (const d of input.decisions) {
    if (d.outcome === 'allow') continue;
    blockedAll++;
    const i = bucketOf(d.createdAt);
    const b = blocked[i];
    if (b !== undefined) {
      b.sum++;
      b.n++;
    }
    // Time to detect at the gate: from the job's request to the decision that blocked it.
    const job = jobsById.get(d.jobId);
    if (job !== undefined) {
      const s = Math.max(0, (Date.parse(d.createdAt) - Date.parse(job.createdAt)) / 1000);
      detAll = { sum: detAll.sum + s, n: detAll.n + 1 };
      const x = detect[i];
      if (x !== undefined) {
        x.sum += s;
        x.n++;
      }
    }
  }
  // After the gate: from a vulnerability import to re-evaluation flagging a promoted artifact.
  for (const r of input.reevaluations) {
    const s = r.detectionMs / 1000;
    detAll = { sum: detAll.sum + s, n: detAll.n + 1 };
    const x = detect[bucketOf(r.createdAt)];
    if (x !== undefined) {
      x.sum += s;
      x.n++;
    }
  }
  const t = (i: number) => new Date(start + i * stepMs).toISOString();
  const mean = (b: { sum: number; n: number }) => (b.n === 0 ? null : Number((b.sum / b.n).toFixed(4)));
  return {
    stepMs,
    series: [
      {
        name: 'ephemeral_share',
        title: 'Builds on ephemeral runners',
        unit: 'ratio',
        current: mean(ephAll),
        points: eph.map((b, i) => ({ t: t(i), v: mean(b), n: b.n })),
      },
      {
        name: 'attestation_success',
        title: 'Attestation success rate',
        unit: 'ratio',
        current: mean(attAll),
        points: att.map((b, i) => ({ t: t(i), v: mean(b), n: b.n })),
      },
      {
        name: 'time_to_detect',
        title: 'Time to detect a policy violation',
        unit: 'seconds',
        current: mean(detAll),
        points: detect.map((b, i) => ({ t: t(i), v: mean(b), n: b.n })),
      },
      {
        name: 'artifacts_blocked',
        title: 'Artifacts blocked',
        unit: 'count',
        current: blockedAll,
        points: blocked.map((b, i) => ({ t: t(i), v: b.sum, n: b.n })),
      },
    ],
  };
}
