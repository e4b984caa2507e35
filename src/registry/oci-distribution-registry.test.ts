import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';
import { sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import { registrySkip, startRegistry, type TestRegistry } from '../testing/registry.ts';
import { artifactFile, describeRegistryContract } from '../testing/registry-contract.ts';
import { OciDistributionClient } from './oci-client.ts';
import { OciDistributionRegistry } from './oci-distribution-registry.ts';
import { jsonBytes, OCI_INDEX, OCI_MANIFEST, parseImageManifest, parseIndex } from './oci-format.ts';
import { fallbackTag } from './oci-names.ts';
import { parseChallenges } from './registry-auth.ts';

const skip = registrySkip();
const skopeoSkip = existsSync('/usr/bin/skopeo') ? false : 'skopeo is not installed';

if (skip) {
  it('docker-registry contract', { skip }, () => {});
} else {
  describeRegistryContract('docker-registry (distribution 2.8)', async () => {
    const reg = await startRegistry();
    const client = new OciDistributionClient({ baseUrl: reg.url });
    return {
      registry: new OciDistributionRegistry({
        client,
        repositoryPrefix: 'gatehouse/promoted',
        quarantinePrefix: 'gatehouse/quarantine',
      }),
      close: () => reg.stop(),
    };
  });
}

describe('OCI distribution client against docker-registry', { skip }, () => {
  let reg: TestRegistry;
  let client: OciDistributionClient;
  before(async () => {
    reg = await startRegistry();
    client = new OciDistributionClient({ baseUrl: reg.url, chunkSize: 4096 });
  });
  after(() => reg.stop());

  it('uploads a large blob in chunks and reads it back', async () => {
    const big = new Uint8Array(4096 * 3 + 17).map((_, i) => i % 251);
    const d = await client.pushBlob('t/blobs', big);
    assert.equal(d.digest, `sha256:${sha256Hex(big)}`);
    assert.equal(await client.blobSize('t/blobs', d.digest), big.byteLength);
    assert.deepEqual(await client.getBlob('t/blobs', d.digest, big.byteLength), big);
    await assert.rejects(client.getBlob('t/blobs', d.digest, 100), (e) =>
      isGatehouseError(e, 'REGISTRY_ERROR'),
    );
  });

  it('mounts a blob from another repository and says when it cannot', async () => {
    const bytes = new TextEncoder().encode('mount me');
    const d = await client.pushBlob('t/source', bytes);
    assert.equal(await client.mountBlob('t/target', d.digest, 't/source'), true);
    assert.equal(await client.blobSize('t/target', d.digest), bytes.byteLength);
    const absent = `sha256:${sha256Hex('never pushed')}`;
    assert.equal(await client.mountBlob('t/target', absent, 't/source'), false);
    assert.equal(await client.blobSize('t/target', absent), undefined);
  });

  it('lists tags and falls back to the referrers tag where the registry has no referrers API', async () => {
    const registry = new OciDistributionRegistry({ client, repositoryPrefix: 'p', quarantinePrefix: 'q' });
    const placed = await registry.promote({
      project: 'app',
      tag: 'v1',
      files: [artifactFile('a', 'artifact')],
      attachments: [
        {
          artifactType: 'application/x.test',
          mediaType: 'application/x.test',
          bytes: new TextEncoder().encode('x'),
        },
      ],
    });
    const tags = await client.listTags('p/app');
    assert.ok(tags.includes('v1'));
    // distribution 2.8 has no referrers API: the spec's fallback index carries the referrers.
    assert.ok(tags.includes(fallbackTag(placed.manifestDigest)));
    const { manifests, source } = await client.referrers('p/app', placed.manifestDigest);
    assert.equal(source, 'tag');
    assert.deepEqual(
      manifests.map((m) => m.artifactType),
      ['application/x.test'],
    );
    assert.deepEqual(await client.listTags('p/none'), []);
  });

  it('is read by skopeo inspect', { skip: skopeoSkip }, async () => {
    const registry = new OciDistributionRegistry({
      client,
      repositoryPrefix: 'sk/promoted',
      quarantinePrefix: 'sk/quarantine',
    });
    const bytes = new TextEncoder().encode('skopeo reads this');
    const placed = await registry.promote({
      project: 'app',
      tag: 'job-9',
      files: [artifactFile('app.tar', 'skopeo reads this')],
      attachments: [
        {
          artifactType: 'application/x.b',
          mediaType: 'application/x.b',
          bytes: new TextEncoder().encode('{}'),
        },
      ],
      cosign: [
        {
          kind: 'att',
          mediaType: 'application/vnd.dsse.envelope.v1+json',
          bytes: new TextEncoder().encode('{"payloadType":"x","payload":"","signatures":[]}'),
          annotations: { predicateType: 'https://example.com/p' },
        },
      ],
    });
    const skopeo = (ref: string, ...flags: string[]): Record<string, unknown> =>
      JSON.parse(
        execFileSync('skopeo', ['inspect', '--tls-verify=false', ...flags, `docker://${reg.host}/${ref}`], {
          encoding: 'utf8',
        }),
      ) as Record<string, unknown>;
    const image = skopeo('sk/promoted/app:job-9');
    assert.equal(image.Digest, placed.manifestDigest);
    assert.deepEqual(image.Layers, [`sha256:${sha256Hex(bytes)}`]);
    assert.ok((image.RepoTags as string[]).includes(placed.cosignTags[0] ?? ''));
    const att = skopeo(`sk/promoted/app:${placed.cosignTags[0]}`);
    assert.equal((att.Layers as string[]).length, 1);
    const referrer = skopeo(`sk/promoted/app@${placed.referrers[0]?.digest}`, '--raw');
    assert.equal((referrer.subject as { digest: string }).digest, placed.manifestDigest);
  });
});

describe('registry authentication', { skip }, () => {
  it('pushes with HTTP Basic to a registry with an htpasswd file, and refuses a wrong password', async () => {
    const reg = await startRegistry({ kind: 'htpasswd', username: 'builder', password: 'pa55-word' });
    try {
      const good = new OciDistributionClient({
        baseUrl: reg.url,
        credentials: { username: 'builder', password: 'pa55-word' },
      });
      const d = await good.pushBlob('auth/basic', new TextEncoder().encode('basic'));
      assert.equal(await good.blobSize('auth/basic', d.digest), 5);
      const wrong = new OciDistributionClient({
        baseUrl: reg.url,
        credentials: { username: 'builder', password: 'nope' },
      });
      await assert.rejects(wrong.blobSize('auth/basic', d.digest), (e) =>
        isGatehouseError(e, 'REGISTRY_AUTH_FAILED'),
      );
      const anonymous = new OciDistributionClient({ baseUrl: reg.url });
      await assert.rejects(anonymous.ping(), (e) => isGatehouseError(e, 'REGISTRY_AUTH_FAILED'));
    } finally {
      await reg.stop();
    }
  });

  it('follows the bearer challenge to the token service with the scopes it needs', async () => {
    const reg = await startRegistry({ kind: 'token', username: 'builder', password: 's3cret' });
    try {
      const client = new OciDistributionClient({
        baseUrl: reg.url,
        credentials: { username: 'builder', password: 's3cret' },
      });
      const registry = new OciDistributionRegistry({
        client,
        repositoryPrefix: 'tok/promoted',
        quarantinePrefix: 'tok/quarantine',
      });
      const placed = await registry.promote({
        project: 'app',
        tag: 'j',
        files: [artifactFile('a', 'artifact')],
        attachments: [],
      });
      assert.equal((await registry.inspect('promoted', 'app', 'j'))?.manifestDigest, placed.manifestDigest);
      const asked = (reg as { tokenRequests?: string[][] }).tokenRequests ?? [];
      assert.ok(
        asked.some((s) => s.includes('repository:tok/promoted/app:pull,push')),
        JSON.stringify(asked),
      );
      const wrong = new OciDistributionClient({
        baseUrl: reg.url,
        credentials: { username: 'builder', password: 'x' },
      });
      await assert.rejects(wrong.manifestDigest('tok/promoted/app', 'j'), (e) =>
        isGatehouseError(e, 'REGISTRY_AUTH_FAILED'),
      );
    } finally {
      await reg.stop();
    }
  });
});

describe('WWW-Authenticate parsing', () => {
  it('reads a bearer challenge with quoted parameters', () => {
    assert.deepEqual(
      parseChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.example/token',
            service: 'registry.example',
            scope: 'repository:a/b:pull,push',
          },
        },
      ],
    );
  });
  const table: [string, string, unknown][] = [
    ['basic with a realm', 'Basic realm="x"', [{ scheme: 'basic', params: { realm: 'x' } }]],
    [
      'two challenges',
      'Basic realm="a", Bearer realm="b"',
      [
        { scheme: 'basic', params: { realm: 'a' } },
        { scheme: 'bearer', params: { realm: 'b' } },
      ],
    ],
    ['an escaped quote', 'Bearer realm="a\\"b"', [{ scheme: 'bearer', params: { realm: 'a"b' } }]],
    ['an empty header', '', []],
    ['garbage', '=== "', []],
    ['an unterminated quote', 'Bearer realm="abc', [{ scheme: 'bearer', params: { realm: 'abc' } }]],
  ];
  for (const [what, header, want] of table) {
    it(`handles ${what}`, () => assert.deepEqual(parseChallenges(header), want));
  }
});

describe('malformed registry documents', () => {
  const index: [string, unknown][] = [
    ['not JSON', '{'],
    ['schemaVersion 1', { schemaVersion: 1, manifests: [] }],
    ['manifests not an array', { schemaVersion: 2, manifests: {} }],
    [
      'a descriptor with a bad digest',
      { schemaVersion: 2, manifests: [{ mediaType: 'x', digest: 'md5:00', size: 1 }] },
    ],
    [
      'a negative size',
      { schemaVersion: 2, manifests: [{ mediaType: 'x', digest: `sha256:${'0'.repeat(64)}`, size: -1 }] },
    ],
    [
      'non-string annotations',
      {
        schemaVersion: 2,
        manifests: [{ mediaType: 'x', digest: `sha256:${'0'.repeat(64)}`, size: 1, annotations: { a: 1 } }],
      },
    ],
  ];
  for (const [what, doc] of index) {
    it(`refuses an index with ${what}`, () => {
      const bytes = typeof doc === 'string' ? new TextEncoder().encode(doc) : jsonBytes(doc);
      assert.throws(
        () => parseIndex(bytes, 'test'),
        (e) => isGatehouseError(e, 'REGISTRY_ERROR'),
      );
    });
  }
  const d = { mediaType: 'x', digest: `sha256:${'0'.repeat(64)}`, size: 1 };
  const manifests: [string, unknown][] = [
    ['no config', { schemaVersion: 2, layers: [] }],
    ['layers not an array', { schemaVersion: 2, config: d, layers: 'x' }],
    ['an index media type', { schemaVersion: 2, mediaType: OCI_INDEX, config: d, layers: [] }],
    ['a malformed subject', { schemaVersion: 2, config: d, layers: [], subject: { digest: 'x' } }],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
  ];
  for (const [what, doc] of manifests) {
    it(`refuses a manifest with ${what}`, () => {
      const bytes = doc instanceof Uint8Array ? doc : jsonBytes(doc);
      assert.throws(
        () => parseImageManifest(bytes, 'test'),
        (e) => isGatehouseError(e, 'REGISTRY_ERROR'),
      );
    });
  }
});

/** A hostile registry on loopback: each path answers something wrong. */
describe('a registry that answers wrongly', () => {
  let url = '';
  let close = async (): Promise<void> => {};
  const blob = `sha256:${sha256Hex('expected')}`;
  before(async () => {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = req.url ?? '';
      if (path.includes('/blobs/uploads/')) {
        res.writeHead(202, { location: 'http://attacker.invalid/upload' }).end();
      } else if (path.startsWith('/v2/bad/blobs/')) {
        res.writeHead(200).end('not the expected bytes');
      } else if (path.startsWith('/v2/big/manifests/')) {
        res.writeHead(200, { 'content-type': OCI_MANIFEST });
        res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
      } else if (path.startsWith('/v2/swap/manifests/')) {
        res.writeHead(200, { 'content-type': OCI_MANIFEST }).end('{"schemaVersion":2}');
      } else if (path.startsWith('/v2/ref/referrers/')) {
        res
          .writeHead(200, { 'content-type': OCI_INDEX })
          .end('{"schemaVersion":2,"manifests":[{"digest":1}]}');
      } else if (path.startsWith('/v2/auth/')) {
        res
          .writeHead(401, { 'www-authenticate': 'Bearer realm="http://attacker.invalid/token",service="x"' })
          .end();
      } else if (path.startsWith('/v2/weird/')) {
        res.writeHead(401, { 'www-authenticate': 'Negotiate abc' }).end();
      } else {
        res.writeHead(404).end();
      }
    });
    ({ url } = await listenOnLoopback(server));
    close = () => closeServer(server);
  });
  after(() => close());

  const cases: [string, (c: OciDistributionClient) => Promise<unknown>, string][] = [
    ['a blob that does not match its digest', (c) => c.getBlob('bad', blob, 1024), 'REGISTRY_ERROR'],
    ['a manifest larger than 4 MiB', (c) => c.getManifest('big', 'latest'), 'REGISTRY_ERROR'],
    [
      'a manifest that does not match the digest asked for',
      (c) => c.getManifest('swap', blob),
      'REGISTRY_ERROR',
    ],
    [
      'an upload location on another origin',
      (c) => c.pushBlob('up', new TextEncoder().encode('x')),
      'REGISTRY_ERROR',
    ],
    ['a malformed referrers index', (c) => c.referrers('ref', blob), 'REGISTRY_ERROR'],
    ['a token realm over plain HTTP off loopback', (c) => c.blobSize('auth', blob), 'REGISTRY_AUTH_FAILED'],
    ['an authentication scheme it does not speak', (c) => c.blobSize('weird', blob), 'REGISTRY_AUTH_FAILED'],
  ];
  for (const [what, run, code] of cases) {
    it(`refuses ${what}`, async () => {
      const client = new OciDistributionClient({
        baseUrl: url,
        timeoutMs: 5000,
        credentials: { username: 'u', password: 'p' },
      });
      await assert.rejects(run(client), (e) => isGatehouseError(e, code as 'REGISTRY_ERROR'));
    });
  }

  it('refuses a registry URL with credentials or a path', () => {
    for (const bad of ['http://u:p@127.0.0.1:1', 'http://127.0.0.1:1/v2/', 'ftp://127.0.0.1', 'not a url']) {
      assert.throws(
        () => new OciDistributionClient({ baseUrl: bad }),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    }
  });
});
