/**
 * The CT log's HTTP API (https://c2sp.org/static-ct-api) under `/ct/<shard>/`: the RFC 6962
 * submission endpoints (`ct/v1/add-pre-chain`, `ct/v1/add-chain`, `ct/v1/get-roots`) and the
 * static read side (`checkpoint`, `tile/…`, `issuer/<fingerprint>`). Submissions need the API
 * token: the log takes chains of the internal CA only, and only the CA submits.
 */
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { type CtLog, parseTilePath } from '../tlog/ct-log.ts';
import { type Handler, type Route, readJson, route } from './http-server.ts';

const chainBody = z.object({
  chain: z
    .array(z.string().max(64 * 1024))
    .min(1)
    .max(8),
});

const IMMUTABLE = { 'cache-control': 'public, max-age=604800, immutable' };

/** The routes of `ct`, whose shard is the last path element of its origin. */
export function ctRoutes(ct: CtLog): Route[] {
  const shard = ct.origin.split('/').at(-1) ?? '';
  const mine = (p: Record<string, string>): void => {
    if (p.shard !== shard) throw new GatehouseError('NOT_FOUND', `no CT log shard '${p.shard ?? ''}' here`);
  };
  const submit =
    (type: 'x509' | 'precert'): Handler =>
    async (req, p) => {
      mine(p);
      const parsed = chainBody.safeParse(await readJson(req));
      if (!parsed.success)
        throw new GatehouseError('BAD_INPUT', 'the body must be {"chain": [base64 DER, …]}');
      const chain = parsed.data.chain.map((c) => Buffer.from(c, 'base64'));
      return { json: await ct.addChainJson(type, chain) };
    };
  const tiles: Route = {
    method: 'GET',
    pattern: /^\/ct\/([^/]+)\/tile\/(.+)$/,
    keys: ['shard', 'path'],
    auth: false,
    handler: async (_r, p) => {
      mine(p);
      return { bytes: await ct.tile(parseTilePath(p.path ?? '')), headers: IMMUTABLE };
    },
  };
  return [
    route('POST', '/ct/:shard/ct/v1/add-pre-chain', true, submit('precert')),
    route('POST', '/ct/:shard/ct/v1/add-chain', true, submit('x509')),
    route('GET', '/ct/:shard/ct/v1/get-roots', false, async (_r, p) => {
      mine(p);
      return { json: ct.roots() };
    }),
    route('GET', '/ct/:shard/checkpoint', false, async (_r, p) => {
      mine(p);
      return {
        text: await ct.checkpoint(),
        contentType: 'text/plain; charset=utf-8',
        headers: { 'cache-control': 'no-store' },
      };
    }),
    route('GET', '/ct/:shard/issuer/:fingerprint', false, async (_r, p) => {
      mine(p);
      return {
        bytes: await ct.issuer(p.fingerprint ?? ''),
        contentType: 'application/pkix-cert',
        headers: IMMUTABLE,
      };
    }),
    tiles,
  ];
}
