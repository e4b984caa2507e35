/**
 * Webhook alerts: each event becomes one CloudEvent 1.0 (structured JSON mode), recorded in the
 * store's outbox once per matching endpoint before anything is sent, then POSTed signed
 * (src/alerts/webhook-signature.ts). A failed attempt is retried with exponential backoff and
 * jitter; after the endpoint's last attempt the delivery is a dead letter, kept to list and replay.
 * Delivery is at least once: receivers drop repeats by the CloudEvent `id` (also `webhook-id`).
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import type { AlertDeliveryRecord, AlertStore } from '../store/store.ts';
import { ALERT_TYPES, type AlertEvent, type AlertType } from './alert-event.ts';
import { signWebhook } from './webhook-signature.ts';

/** config.json `alerts`: the webhook endpoints and what each receives. */
export const alertsConfigSchema = z.strictObject({
  webhooks: z
    .array(
      z.strictObject({
        /** A short name, shown by `gatehouse alerts list`. */
        name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/),
        /** `https://…`; plain `http://` only to a loopback address. */
        url: z.url({ protocol: /^https?$/ }),
        /** The HMAC secret, in a file of mode 0600 (relative to the home), never in config.json. */
        secretFile: z.string().min(1),
        /** The CloudEvent types it receives (default: all). */
        events: z.array(z.enum(ALERT_TYPES)).min(1).optional(),
        /** Attempts before a delivery becomes a dead letter (default 6). */
        maxAttempts: z.number().int().min(1).max(50).optional(),
        /** Per-attempt timeout (default 10 s). */
        timeoutSeconds: z.number().int().min(1).max(120).optional(),
      }),
    )
    .max(32),
});

export type AlertsConfig = z.infer<typeof alertsConfigSchema>;

/** One endpoint, its secret read. */
export interface WebhookEndpoint {
  name: string;
  url: string;
  /** The HMAC key (src/alerts/webhook-signature.ts webhookKey). */
  key: Buffer;
  events?: readonly AlertType[];
  maxAttempts?: number;
  timeoutSeconds?: number;
}

/** What one attempt did. */
export interface AttemptResult {
  id: string;
  state: AlertDeliveryRecord['state'];
  attempts: number;
  lastError?: string;
}

export interface WebhookDispatcherOptions {
  store: AlertStore;
  endpoints: readonly WebhookEndpoint[];
  /** The CloudEvents `source`: this control plane, e.g. `https://gatehouse.internal`. */
  source: string;
  /** Backoff of the first retry; doubled each attempt, capped at one hour (default 2 s). */
  baseDelayMs?: number;
  now?: () => number;
}

/** How long a claimed delivery is leased to the dispatcher that claimed it. */
const LEASE_MS = 2 * 60_000;
const MAX_DELAY_MS = 60 * 60_000;

/** Whether a URL is plain http to anything but loopback. */
function insecureUrl(url: string): boolean {
  const u = new URL(url);
  if (u.protocol === 'https:') return false;
  return !['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && !/^127\./.test(u.hostname);
}

/** The webhook outbox and its sender. */
export class WebhookDispatcher {
  readonly #store: AlertStore;
  readonly #endpoints: Map<string, WebhookEndpoint>;
  readonly #source: string;
  readonly #baseDelayMs: number;
  readonly #now: () => number;
  readonly #inFlight = new Set<Promise<unknown>>();
  #timer: NodeJS.Timeout | undefined;

  /** @throws GatehouseError BAD_CONFIG for an endpoint on plain http off loopback, or a name twice */
  constructor(options: WebhookDispatcherOptions) {
    this.#store = options.store;
    this.#endpoints = new Map();
    for (const e of options.endpoints) {
      if (insecureUrl(e.url))
        throw new GatehouseError(
          'BAD_CONFIG',
          `alerts webhook ${e.name}: plain http is allowed only to loopback`,
        );
      if (this.#endpoints.has(e.name))
        throw new GatehouseError('BAD_CONFIG', `alerts webhook ${e.name} is named twice`);
      this.#endpoints.set(e.name, e);
    }
    this.#source = options.source;
    this.#baseDelayMs = options.baseDelayMs ?? 2000;
    this.#now = options.now ?? Date.now;
  }

  /** Whether any endpoint is configured. */
  get enabled(): boolean {
    return this.#endpoints.size > 0;
  }

  /**
   * Record `event` for each endpoint that takes its type, then try to send it at once. Never
   * rejects: a store failure is reported on stderr, and the decision it is about stands.
   */
  readonly emit = async (event: AlertEvent): Promise<void> => {
    const targets = [...this.#endpoints.values()].filter(
      (e) => e.events === undefined || e.events.includes(event.type),
    );
    if (targets.length === 0) return;
    const now = new Date(this.#now()).toISOString();
    const eventId = randomUUID();
    const cloudEvent = JSON.stringify({
      specversion: '1.0',
      id: eventId,
      source: this.#source,
      type: event.type,
      subject: event.subject,
      time: now,
      datacontenttype: 'application/json',
      data: event.data,
    });
    try {
      await this.#store.enqueue(
        targets.map((e) => ({
          id: randomUUID(),
          eventId,
          endpoint: e.name,
          type: event.type,
          event: cloudEvent,
          state: 'pending' as const,
          attempts: 0,
          nextAttemptAt: now,
          createdAt: now,
          updatedAt: now,
        })),
      );
    } catch (e) {
      process.stderr.write(`gatehouse: cannot record the ${event.type} alert: ${String(e)}\n`);
      return;
    }
    this.#track(this.deliverDue());
  };

  /** Send every delivery that is due; resolves when they are settled. */
  async deliverDue(limit = 50): Promise<AttemptResult[]> {
    const now = this.#now();
    const claimed = await this.#store.claimDue(
      new Date(now).toISOString(),
      new Date(now + LEASE_MS).toISOString(),
      limit,
    );
    return Promise.all(claimed.map((d) => this.#attempt(d)));
  }

  /**
   * Send a delivery again now (a dead letter, or a delivered one a receiver lost), with a fresh
   * count of attempts; it follows the retry schedule again if this attempt fails.
   * @throws GatehouseError NOT_FOUND (no such delivery, or its endpoint is no longer configured),
   *   CONFLICT (it is pending: the dispatcher is already on it)
   */
  async replay(id: string): Promise<AttemptResult> {
    const d = await this.#store.get(id);
    if (d === undefined) throw new GatehouseError('NOT_FOUND', `no alert delivery ${id}`);
    if (d.state === 'pending')
      throw new GatehouseError('CONFLICT', `alert delivery ${id} is pending; it is retried on its own`);
    if (!this.#endpoints.has(d.endpoint))
      throw new GatehouseError('NOT_FOUND', `alert webhook ${d.endpoint} is not configured any more`);
    return this.#attempt({ ...d, attempts: 0 });
  }

  /** Send due deliveries every `everyMs` until `stop()`. */
  start(everyMs = 5000): void {
    if (this.#timer !== undefined || !this.enabled) return;
    this.#timer = setInterval(() => this.#track(this.deliverDue()), everyMs);
    this.#timer.unref();
  }

  /** Stop the timer and wait for the attempts under way. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.idle();
  }

  /** Resolves when no attempt is under way. */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.catch((e: unknown) => {
      process.stderr.write(`gatehouse: alert delivery: ${String(e)}\n`);
    });
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
  }

  async #attempt(d: AlertDeliveryRecord): Promise<AttemptResult> {
    const endpoint = this.#endpoints.get(d.endpoint);
    const attempts = d.attempts + 1;
    let error: string | undefined;
    if (endpoint === undefined) {
      error = `webhook ${d.endpoint} is not configured`;
    } else {
      error = await this.#post(endpoint, d);
    }
    const now = this.#now();
    const max = endpoint?.maxAttempts ?? 6;
    const state: AlertDeliveryRecord['state'] =
      error === undefined ? 'delivered' : attempts >= max || endpoint === undefined ? 'dead' : 'pending';
    // Exponential backoff with full jitter on the upper half: receivers that came back are not
    // hit by every instance's retries at the same instant.
    const delay = Math.min(MAX_DELAY_MS, this.#baseDelayMs * 2 ** (attempts - 1));
    const next = state === 'pending' ? now + delay / 2 + Math.random() * (delay / 2) : now;
    const result = {
      state,
      attempts,
      nextAttemptAt: new Date(next).toISOString(),
      updatedAt: new Date(now).toISOString(),
      ...(error === undefined ? {} : { lastError: error }),
    };
    await this.#store.settle(d.id, result);
    return { id: d.id, state, attempts, ...(error === undefined ? {} : { lastError: error }) };
  }

  /** One POST; the error text, or undefined on a 2xx. Redirects are not followed. */
  async #post(endpoint: WebhookEndpoint, d: AlertDeliveryRecord): Promise<string | undefined> {
    const timestamp = Math.floor(this.#now() / 1000);
    try {
      const res = await fetch(endpoint.url, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          'content-type': 'application/cloudevents+json; charset=utf-8',
          'user-agent': 'gatehouse-alerts/1',
          ...signWebhook(endpoint.key, d.eventId, timestamp, d.event),
        },
        body: d.event,
        signal: AbortSignal.timeout((endpoint.timeoutSeconds ?? 10) * 1000),
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return undefined;
      return `HTTP ${res.status}`;
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      return (e as Error).name === 'TimeoutError'
        ? `no answer within ${endpoint.timeoutSeconds ?? 10} s`
        : `cannot reach the endpoint${cause === undefined ? '' : ` (${cause})`}`;
    }
  }
}
