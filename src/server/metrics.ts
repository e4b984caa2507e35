/**
 * Prometheus text exposition of what security teams measure: jobs by state, decisions by outcome
 * (blocked artifacts), attestation success rate and latency, log size. Persistent counts come from the store, so they survive restarts and are the same
 * from every instance; the attestation counters are per process.
 */
export class Metrics {
  #attestOk = 0;
  #attestFailed = 0;
  #attestSecondsSum = 0;
  #decisionsSinceStart: Record<string, number> = {};

  attestation(ok: boolean, durationMs: number): void {
    if (ok) this.#attestOk++;
    else this.#attestFailed++;
    this.#attestSecondsSum += durationMs / 1000;
  }

  decision(outcome: string): void {
    this.#decisionsSinceStart[outcome] = (this.#decisionsSinceStart[outcome] ?? 0) + 1;
  }

  render(state: {
    jobsByState: Record<string, number>;
    decisionsByOutcome: Record<string, number>;
    logSize: number;
    vulnerabilityRecords: number;
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
    const states = ['queued', 'running', 'submitted', 'allowed', 'denied', 'quarantined', 'failed'];
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
    metric('gatehouse_log_entries', 'gauge', 'Entries in the transparency log.', [[{}, state.logSize]]);
    metric('gatehouse_vulnerability_records', 'gauge', 'OSV records in the vulnerability database.', [
      [{}, state.vulnerabilityRecords],
    ]);
    return `${lines.join('\n')}\n`;
  }
}
