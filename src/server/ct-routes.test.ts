import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeServer, listenOnLoopback, tempDir } from '../../test/helpers.ts';
import { initHome, type OpenHome, openHome } from '../home/home.ts';
import { embeddedScts, leafIndexOf } from '../signing/ct.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { openHomeKeys } from '../signing/home-keys.ts';
import { tileIndexPath } from '../tlog/ct-log.ts';
import { ctRoutes } from './ct-routes.ts';
import { createApiServer } from './http-server.ts';

describe('the CT log over HTTP (Static CT API routes of a home)', () => {
  const tmp = tempDir('ct-http');
  let home: OpenHome;
  let server: ReturnType<typeof createApiServer>;
  let base = '';
  let leafPem = '';

  before(async () => {
    await initHome(join(tmp.path, 'home'), { examples: false });
    home = await openHome(join(tmp.path, 'home'));
    server = createApiServer({
      controlPlane: home.controlPlane,
      apiToken: home.apiToken,
      extraRoutes: ctRoutes(home.ct),
    });
    const { url } = await listenOnLoopback(server);
    base = `${url}/ct/${home.ct.origin.split('/').at(-1)}`;
    // The home's CA issues a leaf through the home's CT log, as the gate does.
    const keys = await openHomeKeys(home.root, join(home.root, 'keys'), home.config.keys);
    try {
      leafPem = await keys.ca.issueLeaf(
        {
          publicKeySpki: EphemeralSigner.generate().publicKeySpki(),
          identity: 'https://gatehouse.internal/projects/p',
          issuer: 'x',
        },
        [home.ct],
      );
    } finally {
      keys.close();
    }
  });
  after(async () => {
    await closeServer(server);
    await home.close();
    tmp.cleanup();
  });

  it('serves a checkpoint naming the shard, the tiles and the issuers of what was logged', async () => {
    const cp = await fetch(`${base}/checkpoint`);
    assert.equal(cp.status, 200);
    const [origin, size] = (await cp.text()).split('\n');
    assert.equal(origin, home.ct.origin);
    assert.ok(Number(size) >= 1);
    const index =
      leafIndexOf(embeddedScts(new X509Certificate(leafPem).raw)?.[0]?.extensions ?? Buffer.alloc(0)) ?? -1;
    const tile = await fetch(`${base}/tile/0/${tileIndexPath(0)}.p/${size}`);
    assert.equal(tile.status, 200);
    assert.equal((await tile.arrayBuffer()).byteLength, 32 * Number(size));
    const data = Buffer.from(await (await fetch(`${base}/tile/data/000.p/${index + 1}`)).arrayBuffer());
    assert.ok(data.length > 0);
    const issuerFp = data.subarray(data.length - 64, data.length - 32).toString('hex');
    const issuer = await fetch(`${base}/issuer/${issuerFp}`);
    assert.equal(issuer.headers.get('content-type'), 'application/pkix-cert');
    assert.equal(
      new X509Certificate(Buffer.from(await issuer.arrayBuffer())).subject.includes('intermediate'),
      true,
    );
    const roots = (await (await fetch(`${base}/ct/v1/get-roots`)).json()) as { certificates: string[] };
    assert.equal(roots.certificates.length, 1);
    // The root's CT log entry names this shard.
    const root = await home.trustedRoot();
    assert.equal((root.ctlogs as { baseUrl: string }[])[0]?.baseUrl, `https://${home.ct.origin}`);
  });

  it('refuses submissions without the API token, another shard, and a tile beyond the tree', async () => {
    const body = JSON.stringify({ chain: [new X509Certificate(leafPem).raw.toString('base64')] });
    assert.equal((await fetch(`${base}/ct/v1/add-pre-chain`, { method: 'POST', body })).status, 401);
    const authed = await fetch(`${base}/ct/v1/add-pre-chain`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${home.apiToken}` },
    });
    assert.equal(authed.status, 400, 'a final certificate is not a precertificate');
    assert.equal(
      (await fetch(`${base.replace(/[0-9a-f]{16}$/, '0000000000000000')}/checkpoint`)).status,
      404,
    );
    assert.equal((await fetch(`${base}/tile/0/x999/000`)).status, 404);
    assert.equal((await fetch(`${base}/tile/9/000`)).status, 400);
  });
});
