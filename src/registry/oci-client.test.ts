import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { OciDistributionClient } from './oci-client.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A registry that fails the first `failures` requests of each method with `status`, then answers. */
async function flakyRegistry(failures: number, status = 500, blobExists = true) {
  const seen: string[] = [];
  const failed = new Map<string, number>();
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const n = failed.get(req.method ?? '') ?? 0;
    if (n < failures && (blobExists || req.method !== 'HEAD')) {
      failed.set(req.method ?? '', n + 1);
      res.writeHead(status).end();
      return;
    }
    if (req.method === 'HEAD') res.writeHead(blobExists ? 200 : 404, { 'content-length': '7' }).end();
    else res.writeHead(202, { location: '/v2/r/blobs/uploads/u1' }).end();
  });
  const { url } = await listenOnLoopback(server);
  return { url, seen, close: () => closeServer(server) };
}

describe('OCI client retries', () => {
  it('tries a read the registry failed with a server error again, and gets the answer', async () => {
    const r = await flakyRegistry(2);
    try {
      const client = new OciDistributionClient({ baseUrl: r.url });
      assert.equal(await client.blobSize('r', DIGEST), 7);
      assert.equal(r.seen.filter((s) => s.startsWith('HEAD')).length, 3);
    } finally {
      await r.close();
    }
  });

  it('gives up on a read after three server errors, naming the status', async () => {
    const r = await flakyRegistry(5, 503);
    try {
      const client = new OciDistributionClient({ baseUrl: r.url });
      await assert.rejects(
        client.blobSize('r', DIGEST),
        (e) => isGatehouseError(e, 'REGISTRY_ERROR') && /answered 503/.test(e.message),
      );
      assert.equal(r.seen.length, 3);
    } finally {
      await r.close();
    }
  });

  it('never repeats a write', async () => {
    const r = await flakyRegistry(1, 500, false);
    try {
      const client = new OciDistributionClient({ baseUrl: r.url });
      await assert.rejects(client.pushBlob('r', new Uint8Array([1, 2, 3])), (e) =>
        isGatehouseError(e, 'REGISTRY_ERROR'),
      );
      assert.equal(r.seen.filter((s) => s.startsWith('POST') || s.startsWith('PUT')).length, 1);
    } finally {
      await r.close();
    }
  });
});
