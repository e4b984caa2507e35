/**
 * The witness's HTTP service (https://c2sp.org/tlog-witness): `POST /add-checkpoint` and
 * `GET /<origin hash>/checkpoint`, with the protocol's own statuses (400, 403, 404, 409 with the
 * witness's size as `text/x.tlog.size`, 422). No authentication: the checkpoint's signature is
 * the only credential, as the protocol says.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { MAX_ADD_CHECKPOINT_BYTES, type Witness, WitnessRefusal } from '../tlog/witness.ts';

const STATUS = {
  'bad-request': 400,
  'bad-signature': 403,
  'unknown-log': 404,
  conflict: 409,
  inconsistent: 422,
} as const;

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_ADD_CHECKPOINT_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function reply(
  res: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The witness server over `witness`. */
export function createWitnessServer(
  witness: Witness,
  options: { onError?: (e: unknown) => void } = {},
): Server {
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    try {
      if (path === '/add-checkpoint') {
        if (req.method !== 'POST') return reply(res, 405, 'add-checkpoint takes POST\n');
        const body = await readBody(req);
        if (body === undefined) return reply(res, 400, 'the request is too large\n');
        return reply(res, 200, await witness.addCheckpoint(body));
      }
      const m = /^\/([0-9a-f]{64})\/checkpoint$/.exec(path);
      if (m !== null && req.method === 'GET') return reply(res, 200, await witness.latest(m[1] ?? ''));
      return reply(res, 404, 'not found\n');
    } catch (e) {
      if (e instanceof WitnessRefusal) {
        if (e.kind === 'conflict') return reply(res, 409, `${e.size ?? 0}\n`, 'text/x.tlog.size');
        return reply(res, STATUS[e.kind], `${e.message}\n`);
      }
      if (e instanceof Error && 'code' in e && e.code === 'NOT_FOUND')
        return reply(res, 404, `${e.message}\n`);
      options.onError?.(e);
      return reply(res, 500, 'internal error\n');
    }
  }
  return createServer((req, res) => {
    void handle(req, res);
  });
}
