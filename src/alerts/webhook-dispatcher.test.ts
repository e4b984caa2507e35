import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SqliteStore } from '../store/sqlite-store.ts';
import { WebhookDispatcher } from './webhook-dispatcher.ts';
import { signWebhook, verifyWebhook, webhookKey } from './webhook-signature.ts';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback that answers with the statuses it is given, in turn, then 204. */
async function receiver(): Promise<{ url: string; got: Received[]; answers: number[]; server: Server }> {
  const got: Received[] = [];
  const answers: number[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      const status = answers.shift() ?? 204;
      res.writeHead(status, status === 302 ? { location: 'http://127.0.0.1:1/' } : {});
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, answers, server };
}

describe('webhook alerts', () => {
  const key = webhookKey(`whsec_${Buffer.from('a test secret of 32 bytes!!!!!!!').toString('base64')}`);
  let rx: Awaited<ReturnType<typeof receiver>>;
  let store: SqliteStore;
  let clock = Date.UTC(2026, 0, 1);
  let dispatcher: WebhookDispatcher;
  before(async () => {
    rx = await receiver();
    store = SqliteStore.open(':memory:');
    dispatcher = new WebhookDispatcher({
      store: store.alerts,
      endpoints: [
        { name: 'soc', url: rx.url, key, maxAttempts: 3 },
        { name: 'chat', url: rx.url, key, events: ['dev.gatehouse.triage.released'] },
      ],
      source: 'https://gatehouse.internal',
      baseDelayMs: 1000,
      now: () => clock,
    });
  });
  after(async () => {
    await dispatcher.stop();
    await store.close();
    rx.server.closeAllConnections();
    await new Promise<void>((r) => rx.server.close(() => r()));
  });

  it('posts a signed CloudEvent 1.0 to each endpoint that takes the type', async () => {
    await dispatcher.emit({
      type: 'dev.gatehouse.decision.denied',
      subject: 'decisions/dec-1',
      data: { decisionId: 'dec-1', reasons: [{ rule: 'vuln', message: 'CVE' }] },
    });
    await dispatcher.idle();
    assert.equal(rx.got.length, 1, 'the chat endpoint takes only releases');
    const [m] = rx.got;
    assert.ok(m !== undefined);
    assert.equal(m.headers['content-type'], 'application/cloudevents+json; charset=utf-8');
    const event = JSON.parse(m.body);
    assert.equal(event.specversion, '1.0');
    assert.equal(event.type, 'dev.gatehouse.decision.denied');
    assert.equal(event.source, 'https://gatehouse.internal');
    assert.equal(event.subject, 'decisions/dec-1');
    assert.equal(event.datacontenttype, 'application/json');
    assert.equal(event.data.decisionId, 'dec-1');
    assert.equal(typeof event.id, 'string');
    assert.equal(m.headers['webhook-id'], event.id);
    const now = Math.floor(clock / 1000);
    assert.equal(verifyWebhook(key, m.headers, m.body, { now }), event.id);
    const [d] = await store.alerts.list({ limit: 10 });
    assert.equal(d?.state, 'delivered');
    assert.equal(d?.attempts, 1);
  });

  it('refuses, as a receiver, a body changed in transit, a stale timestamp and another secret', () => {
    const [m] = rx.got;
    assert.ok(m !== undefined);
    const now = Math.floor(clock / 1000);
    const tampered = m.body.replace('dec-1', 'dec-2');
    assert.throws(() => verifyWebhook(key, m.headers, tampered, { now }), { code: 'SIGNATURE_INVALID' });
    assert.throws(() => verifyWebhook(key, m.headers, m.body, { now: now + 3600 }), /tolerance/);
    assert.throws(() => verifyWebhook(webhookKey('another secret entirely!'), m.headers, m.body, { now }), {
      code: 'SIGNATURE_INVALID',
    });
    // A replay under a new timestamp needs a new MAC, which only the secret's holder can make.
    const moved = { ...m.headers, 'webhook-timestamp': String(now + 10) };
    assert.throws(() => verifyWebhook(key, moved, m.body, { now: now + 10 }), /no webhook-signature/);
    const forged = signWebhook(webhookKey('guess'), String(m.headers['webhook-id']), now, m.body);
    assert.throws(() => verifyWebhook(key, forged, m.body, { now }), /no webhook-signature/);
  });

  it('retries a failed delivery with backoff, and keeps it as a dead letter after the last attempt', async () => {
    rx.got.length = 0;
    rx.answers.push(500, 302, 503);
    await dispatcher.emit({ type: 'dev.gatehouse.artifact.revoked', subject: 'revocations/x', data: {} });
    await dispatcher.idle();
    let [d] = await store.alerts.list({ state: 'pending', limit: 10 });
    assert.equal(d?.attempts, 1);
    assert.equal(d?.lastError, 'HTTP 500');
    assert.deepEqual(await dispatcher.deliverDue(), [], 'not due before its backoff');
    clock += 1000;
    assert.equal((await dispatcher.deliverDue()).length, 1);
    [d] = await store.alerts.list({ state: 'pending', limit: 10 });
    assert.equal(d?.lastError, 'HTTP 302', 'a redirect is not followed');
    clock += 2000;
    const [last] = await dispatcher.deliverDue();
    assert.equal(last?.state, 'dead');
    const dead = await store.alerts.list({ state: 'dead', limit: 10 });
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.attempts, 3);
    assert.equal(rx.got.length, 3);
    // Each attempt is signed afresh under its own timestamp, over the same CloudEvent.
    assert.equal(new Set(rx.got.map((g) => g.body)).size, 1);

    const replayed = await dispatcher.replay(dead[0]?.id ?? '');
    assert.equal(replayed.state, 'delivered');
    assert.equal(rx.got.length, 4);
    assert.equal(
      verifyWebhook(key, rx.got[3]?.headers ?? {}, rx.got[3]?.body ?? '', { now: Math.floor(clock / 1000) }),
      JSON.parse(rx.got[3]?.body ?? '{}').id,
    );
    await assert.rejects(dispatcher.replay('no-such'), { code: 'NOT_FOUND' });
  });

  it('refuses plain http to anything but loopback', () => {
    assert.throws(
      () =>
        new WebhookDispatcher({
          store: store.alerts,
          endpoints: [{ name: 'x', url: 'http://alerts.example.com/hook', key }],
          source: 's',
        }),
      { code: 'BAD_CONFIG' },
    );
  });
});
