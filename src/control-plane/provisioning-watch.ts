/**
 * Unexpected provisioning, as the control plane sees it: a project whose jobs in the last ten
 * minutes are far above its own baseline (the mean ten minutes of the day before), and requests
 * from runner hosts that are not enrolled. Each is told once per subject per quiet period, so an
 * attacker who can reach the API cannot flood the alert channel with it.
 */
import type { AlertEvent } from '../alerts/alert-event.ts';
import type { JobStore } from '../store/store.ts';

const WINDOW_MS = 10 * 60_000;
const BASELINE_MS = 24 * 3600_000;
/** Jobs in a window are a surge when above both this floor and this multiple of the baseline. */
const SURGE_FLOOR = 20;
const SURGE_FACTOR = 5;
/** One alert per subject per hour; at most this many unenrolled-host alerts per hour in all. */
const QUIET_MS = 3600_000;
const MAX_UNENROLLED_PER_QUIET = 20;

export class ProvisioningWatch {
  readonly #jobs: JobStore;
  readonly #now: () => number;
  readonly #told = new Map<string, number>();

  constructor(options: { jobs: JobStore; now?: () => number }) {
    this.#jobs = options.jobs;
    this.#now = options.now ?? Date.now;
  }

  /** Whether `key` was told within the quiet period; records it when not. */
  #quiet(key: string): boolean {
    const now = this.#now();
    for (const [k, at] of this.#told) if (now - at > QUIET_MS) this.#told.delete(k);
    if (this.#told.has(key)) return true;
    this.#told.set(key, now);
    return false;
  }

  /** The surge alert for `project` after one of its jobs was created, if its jobs surge. */
  async afterCreate(project: string): Promise<AlertEvent | undefined> {
    const now = this.#now();
    const recent = await this.#jobs.list({ project, limit: 2000 });
    const times = recent.map((j) => Date.parse(j.createdAt));
    const inWindow = times.filter((t) => now - t <= WINDOW_MS).length;
    if (inWindow <= SURGE_FLOOR) return undefined;
    const before = times.filter((t) => now - t > WINDOW_MS && now - t <= WINDOW_MS + BASELINE_MS).length;
    const baseline = before / (BASELINE_MS / WINDOW_MS);
    if (inWindow <= SURGE_FACTOR * baseline) return undefined;
    if (this.#quiet(`surge:${project}`)) return undefined;
    return {
      type: 'dev.gatehouse.provisioning.surge',
      subject: `projects/${project}`,
      data: {
        project,
        jobsLast10Minutes: inWindow,
        baselinePer10Minutes: Number(baseline.toFixed(3)),
        ...(recent.length >= 2000 ? { truncated: true } : {}),
      },
    };
  }

  /** The alert for a request signed as an unenrolled or revoked host, unless told lately. */
  unenrolled(act: string, message: string): AlertEvent | undefined {
    const told = [...this.#told.keys()].filter((k) => k.startsWith('host:')).length;
    if (told >= MAX_UNENROLLED_PER_QUIET || this.#quiet(`host:${message}`)) return undefined;
    return {
      type: 'dev.gatehouse.runner.unenrolled',
      subject: 'hosts',
      data: { act, refusal: message.slice(0, 200) },
    };
  }
}
