import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { decideAdmission, type ImageVerifier, reviewUid } from './admission.ts';

export interface AdmissionWebhookOptions {
  host: string;
  port: number;
  certPem: string;
  keyPem: string;
  verifyImage: ImageVerifier;
  /** Largest request body read; the API server's objects are far smaller. */
  maxBodyBytes?: number;
  /** Answer before the API server's webhook timeout (default 10 s). */
  deadlineMs?: number;
  onDecision?: (d: { uid: string; allowed: boolean; message?: string }) => void;
}

export interface RunningWebhook {
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let total = 0;
  // Past the limit, keep draining (memory stays bounded, requestTimeout bounds the time) so the
  // client reads a 413 rather than a reset connection.
  for await (const chunk of req) {
    total += (chunk as Buffer).byteLength;
    if (total <= max) parts.push(chunk as Buffer);
  }
  return total > max ? undefined : Buffer.concat(parts);
}

/**
 * Serve the ValidatingAdmissionWebhook over TLS: `POST /validate` takes an AdmissionReview v1
 * and answers one; `GET /healthz` is liveness. A body that is not an AdmissionReview gets a 400,
 * which the API server, with `failurePolicy: Fail`, turns into a rejection.
 */
export async function startAdmissionWebhook(options: AdmissionWebhookOptions): Promise<RunningWebhook> {
  const max = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const server: Server = createServer(
    { cert: options.certPem, key: options.keyPem, minVersion: 'TLSv1.2' },
    (req, res) => {
      void (async () => {
        const path = (req.url ?? '').split('?')[0];
        if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
        if (path !== '/validate') return send(res, 404, { error: 'not found' });
        if (req.method !== 'POST') return send(res, 405, { error: 'POST an AdmissionReview' });
        const body = await readBody(req, max);
        if (body === undefined) return send(res, 413, { error: `the request is larger than ${max} bytes` });
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          return send(res, 400, { error: 'the request is not JSON' });
        }
        const uid = reviewUid(parsed);
        if (uid === undefined)
          return send(res, 400, { error: 'the request is not an admission.k8s.io/v1 AdmissionReview' });
        const review = await decideAdmission(
          parsed as Record<string, unknown>,
          options.verifyImage,
          options.deadlineMs,
        );
        options.onDecision?.({
          uid,
          allowed: review.response.allowed,
          ...(review.response.status === undefined ? {} : { message: review.response.status.message }),
        });
        send(res, 200, review);
      })().catch(() => {
        // Whatever went wrong, the answer is not an allow.
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    },
  );
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : options.port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
