/**
 * Reading a gatehouse transparency log over the control plane's open HTTP API, for monitors that
 * run away from the server (`gatehouse log audit --server URL`). Responses are bounded in size
 * and time; nothing read here is trusted until the monitor verifies it.
 */
import { GatehouseError } from '../common/errors.ts';
import type { AuditedLog } from './monitor.ts';

const MAX_BYTES = 1 << 20;

/** The log of a gatehouse server at `url`. */
export class HttpLogReader implements AuditedLog {
  readonly #base: string;
  readonly #timeoutMs: number;

  constructor(options: { url: string; timeoutMs?: number }) {
    this.#base = options.url.replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #get(path: string): Promise<string> {
    const url = `${this.#base}${path}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', 'cannot reach the log', { where: url, cause: e });
    }
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_BYTES)
      throw new GatehouseError('BAD_INPUT', 'the log answered with too much data', { where: url });
    if (!res.ok)
      throw new GatehouseError('UNREACHABLE', `the log answered HTTP ${res.status}`, { where: url });
    return body.toString('utf8');
  }

  checkpoint(): Promise<string> {
    return this.#get('/v1/log/checkpoint');
  }

  async consistencyProof(first: number, second: number): Promise<Record<string, unknown>> {
    const text = await this.#get(`/v1/log/proof/consistency?first=${first}&second=${second}`);
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new GatehouseError('LOG_INCONSISTENT', 'the consistency proof is not JSON', { cause: e });
    }
  }
}
