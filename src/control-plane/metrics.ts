/**
 * Prometheus text exposition of what security teams measure: jobs by state, decisions by outcome
 * (blocked artifacts), attestation success rate and latency, log size. Persistent counts come from the store, so they survive restarts and are the same
 * from every instance; the attestation counters are per process.
 */
/** Histogram bucket bounds for runner provisioning and teardown, seconds. */
const RUNNER_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Why a runner's job failed, as a small fixed set of metric labels. */
export function runnerFailureReason(step: string, detail: string): string {
  if (/memory limit/.test(detail)) return 'memory_limit';
  if (/processes|fork/.test(detail) && /limit/.test(detail)) return 'process_limit';
  if (/CPU time limit/.test(detail)) return 'cpu_limit';
  if (/workspace limit/.test(detail)) return 'workspace_limit';
  if (/timeout/.test(detail)) return `${step}_timeout`;
  if (/egress/.test(detail)) return 'egress_refused';
  return `${step}_failed`;
}

class Histogram {
  readonly counts = RUNNER_BUCKETS.map(() => 0);
  count = 0;
  sum = 0;
  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    RUNNER_BUCKETS.forEach((b, i) => {
      if (seconds <= b) this.counts[i] = (this.counts[i] ?? 0) + 1;
    });
  }
}

export class Metrics {
  #buildsStarted = 0;
  #buildsEphemeral = 0;
  #provisioning = new Histogram();
  #teardown = new Histogram();
  #runnerFailures: Record<string, number> = {};
  #attestOk = 0;
  #attestFailed = 0;
  #attestSecondsSum = 0;
  #decisionsSinceStart: Record<string, number> = {};

  #attestFailedChecks: Record<string, number> = {};

  /** Record an attestation attempt; a refusal counts once per distinct failed check. */
  attestation(ok: boolean, durationMs: number, failedChecks: readonly { check: string }[] = []): void {
    if (ok) this.#attestOk++;
    else this.#attestFailed++;
    this.#attestSecondsSum += durationMs / 1000;
    for (const check of new Set(failedChecks.map((f) => f.check))) {
      this.#attestFailedChecks[check] = (this.#attestFailedChecks[check] ?? 0) + 1;
    }
  }

  /** Record a finished runner job from its lifecycle steps (and its failure, if it failed). */
  runnerJob(
    steps: readonly { name: string; durationMs: number; ok: boolean; detail?: string }[],
    failure?: string,
  ): void {
    const provision = steps.find((s) => s.name === 'provision');
    const destroy = steps.find((s) => s.name === 'destroy');
    if (provision?.ok === true) this.#provisioning.observe(provision.durationMs / 1000);
    if (destroy !== undefined) this.#teardown.observe(destroy.durationMs / 1000);
    if (steps.some((s) => s.name === 'build')) {
      this.#buildsStarted++;
      // Ephemeral: provisioned for this job and destroyed after it.
      if (provision?.ok === true && destroy?.ok === true) this.#buildsEphemeral++;
    }
    if (failure !== undefined) {
      const failed = steps.find((s) => !s.ok && s.name !== 'destroy' && s.name !== 'revoke');
      const reason = runnerFailureReason(failed?.name ?? 'job', failed?.detail ?? failure);
      this.#runnerFailures[reason] = (this.#runnerFailures[reason] ?? 0) + 1;
    }
  }

  decision(outcome: string): void {
    this.#decisionsSinceStart[outcome] = (this.#decisionsSinceStart[outcome] ?? 0) + 1;
  }

  render(state: {
    jobsByState: Record<string, number>;
    decisionsByOutcome: Record<string, number>;
    logSize: number;
    vulnerabilityRecords: number;
    /** Enrolled runner hosts by standing (host attestation): trusted, quarantined, stale, revoked. */
    hostsByStanding?: Record<string, number>;
    /** Promoted artifacts found affected after a vulnerability database change (from the store). */
    reevaluation?: {
      flagged: number;
      revoked: number;
      detectionSecondsSum: number;
      lastDetectionSeconds: number;
    };
  }): string {
    const lines: string[] = [];
    const metric = (
      name: string,
      type: string,
      help: string,
      samples: [Record<string, string>, number][],
    ): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) {
        const l = Object.entries(labels)
          .map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, '_')}"`)
          .join(',');
        lines.push(`${name}${l === '' ? '' : `{${l}}`} ${v}`);
      }
    };
    const states = [
      'queued',
      'running',
      'submitted',
      'allowed',
      'denied',
      'quarantined',
      'failed',
      'cancelled',
    ];
    metric(
      'gatehouse_jobs',
      'gauge',
      'Jobs by state.',
      states.map((s) => [{ state: s }, state.jobsByState[s] ?? 0]),
    );
    metric(
      'gatehouse_decisions',
      'gauge',
      'Gate decisions by outcome, all time.',
      ['allow', 'deny', 'quarantine'].map((o) => [{ outcome: o }, state.decisionsByOutcome[o] ?? 0]),
    );
    if (state.hostsByStanding !== undefined)
      // The alert a drifted host raises: a quarantined host is a page, not a log line.
      metric(
        'gatehouse_runner_hosts',
        'gauge',
        'Enrolled runner hosts with a TPM by standing (quarantined: boot state left its reference values).',
        ['trusted', 'quarantined', 'stale', 'revoked'].map((s) => [
          { standing: s },
          state.hostsByStanding?.[s] ?? 0,
        ]),
      );
    metric('gatehouse_artifacts_blocked', 'gauge', 'Artifacts denied or quarantined, all time.', [
      [{}, (state.decisionsByOutcome.deny ?? 0) + (state.decisionsByOutcome.quarantine ?? 0)],
    ]);
    metric('gatehouse_attestations_total', 'counter', 'Attestation requests since start, by result.', [
      [{ result: 'success' }, this.#attestOk],
      [{ result: 'failure' }, this.#attestFailed],
    ]);
    metric(
      'gatehouse_attestation_duration_seconds_sum',
      'counter',
      'Time spent appraising evidence since start.',
      [[{}, Number(this.#attestSecondsSum.toFixed(6))]],
    );
    const attempts = this.#attestOk + this.#attestFailed;
    metric(
      'gatehouse_attestation_success_ratio',
      'gauge',
      'Share of attestation attempts since start that succeeded.',
      [[{}, attempts === 0 ? 0 : Number((this.#attestOk / attempts).toFixed(6))]],
    );
    metric(
      'gatehouse_attestation_failed_checks_total',
      'counter',
      'Refused attestation attempts since start, by failed check.',
      Object.entries(this.#attestFailedChecks)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([check, n]) => [{ check }, n]),
    );
    metric('gatehouse_builds_started_total', 'counter', 'Builds started since start.', [
      [{}, this.#buildsStarted],
    ]);
    metric(
      'gatehouse_builds_ephemeral_total',
      'counter',
      'Builds on a runner made for the job and destroyed after it.',
      [[{}, this.#buildsEphemeral]],
    );
    metric(
      'gatehouse_builds_ephemeral_share',
      'gauge',
      'Share of started builds that ran on ephemeral runners.',
      [
        [
          {},
          this.#buildsStarted === 0 ? 1 : Number((this.#buildsEphemeral / this.#buildsStarted).toFixed(6)),
        ],
      ],
    );
    for (const [name, h, help] of [
      ['gatehouse_runner_provisioning_seconds', this.#provisioning, 'Time to provision a runner.'],
      ['gatehouse_runner_teardown_seconds', this.#teardown, 'Time to destroy a runner.'],
    ] as const) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
      for (const [i, b] of RUNNER_BUCKETS.entries())
        lines.push(`${name}_bucket{le="${b}"} ${h.counts[i] ?? 0}`);
      lines.push(
        `${name}_bucket{le="+Inf"} ${h.count}`,
        `${name}_sum ${Number(h.sum.toFixed(6))}`,
        `${name}_count ${h.count}`,
      );
    }
    metric(
      'gatehouse_runner_failures_total',
      'counter',
      'Runner jobs that failed before a decision, by reason.',
      Object.entries(this.#runnerFailures).map(([reason, n]) => [{ reason }, n]),
    );
    metric('gatehouse_log_entries', 'gauge', 'Entries in the transparency log.', [[{}, state.logSize]]);
    metric('gatehouse_vulnerability_records', 'gauge', 'OSV records in the vulnerability database.', [
      [{}, state.vulnerabilityRecords],
    ]);
    if (state.reevaluation !== undefined) {
      const r = state.reevaluation;
      metric('gatehouse_reevaluation_flagged', 'gauge', 'Artifacts flagged by re-evaluation, all time.', [
        [{ revoked: 'false' }, r.flagged - r.revoked],
        [{ revoked: 'true' }, r.revoked],
      ]);
      metric(
        'gatehouse_reevaluation_detection_seconds_sum',
        'counter',
        'Time from the end of a vulnerability import to the detection of each newly affected artifact, summed.',
        [[{}, Number(r.detectionSecondsSum.toFixed(6))]],
      );
      metric('gatehouse_reevaluation_detection_seconds_count', 'counter', 'Detections timed.', [
        [{}, r.flagged],
      ]);
      metric(
        'gatehouse_reevaluation_last_detection_seconds',
        'gauge',
        'Import-to-detection time of the latest detection.',
        [[{}, Number(r.lastDetectionSeconds.toFixed(6))]],
      );
    }
    return `${lines.join('\n')}\n`;
  }
}
