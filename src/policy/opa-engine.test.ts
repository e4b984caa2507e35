import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { CombinedPolicyEngine, OpaPolicyEngine } from './opa-engine.ts';
import { parsePolicy } from './policy.ts';
import type { PolicyInput } from './policy-engine.ts';

// OPA itself does not run here; this loopback server answers its data API in the documented
// shape (POST /v1/data/<path> with {"input": …} → {"result": …}), as recorded from OPA.
type Answer = { status?: number; body?: unknown; delayMs?: number; raw?: string };
const answers: Record<string, Answer> = {
  '/v1/data/gatehouse/allow': { body: { result: { outcome: 'allow' } } },
  '/v1/data/gatehouse/deny': {
    body: {
      result: {
        outcome: 'deny',
        reasons: [{ rule: 'no-friday', message: 'no releases on Friday' }, 'plain reason'],
      },
    },
  },
  '/v1/data/gatehouse/bool': { body: { result: false } },
  '/v1/data/gatehouse/quarantine': { body: { result: { outcome: 'quarantine' } } },
  '/v1/data/gatehouse/undefined': { body: {} },
  '/v1/data/gatehouse/odd': { body: { result: { outcome: 'maybe' } } },
  '/v1/data/gatehouse/error': { status: 500, body: { code: 'internal_error' } },
  '/v1/data/gatehouse/slow': { delayMs: 500, body: { result: true } },
  '/v1/data/gatehouse/garbage': { raw: '{not json' },
};

describe('OPA as an external decision point', () => {
  let server: Server;
  let url = '';
  const seen: unknown[] = [];
  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        seen.push(JSON.parse(body || 'null'));
        const a = answers[req.url ?? ''] ?? { status: 404, body: {} };
        const send = () => {
          if (res.destroyed) return;
          res.writeHead(a.status ?? 200, { 'content-type': 'application/json' });
          res.end(a.raw ?? JSON.stringify(a.body));
        };
        if (a.delayMs === undefined) send();
        else setTimeout(send, a.delayMs).unref();
      });
    });
    ({ url } = await listenOnLoopback(server));
  });
  after(() => closeServer(server));

  const opa = (path: string, timeoutMs = 200) =>
    new OpaPolicyEngine({ url, path, timeoutMs, policyDigest: 'digest' });
  const input: PolicyInput = { project: 'app', components: [], findings: [] };

  it('sends the facts as input and follows an allow', async () => {
    const d = await opa('gatehouse/allow').evaluate(input);
    assert.deepEqual(d, { outcome: 'allow', policyDigest: 'digest', reasons: [], warnings: [] });
    assert.deepEqual(seen.at(-1), { input });
  });

  it('carries OPA reasons into a deny', async () => {
    const d = await opa('gatehouse/deny').evaluate(input);
    assert.equal(d.outcome, 'deny');
    assert.deepEqual(
      d.reasons.map((r) => [r.rule, r.message]),
      [
        ['opa:no-friday', 'no releases on Friday'],
        ['opa', 'plain reason'],
      ],
    );
  });

  const failures: [string, string, RegExp][] = [
    ['a false decision', 'gatehouse/bool', /OPA decided deny/],
    ['an undefined decision', 'gatehouse/undefined', /no decision at gatehouse\/undefined/],
    ['a decision that is not a gatehouse decision', 'gatehouse/odd', /not a gatehouse decision document/],
    ['an error status', 'gatehouse/error', /HTTP 500/],
    ['a timeout', 'gatehouse/slow', /did not answer within 200 ms/],
    ['an answer that is not JSON', 'gatehouse/garbage', /unreachable|not JSON|Unexpected|JSON/],
  ];
  for (const [what, path, why] of failures)
    it(`fails closed on ${what}`, async () => {
      const d = await opa(path).evaluate(input);
      assert.equal(d.outcome, 'deny');
      assert.match(d.reasons[0]?.message ?? '', why);
    });

  it('fails closed when OPA is unreachable', async () => {
    const d = await new OpaPolicyEngine({
      url: 'http://127.0.0.1:1',
      path: 'x',
      timeoutMs: 500,
      policyDigest: 'd',
    }).evaluate(input);
    assert.equal(d.outcome, 'deny');
    assert.match(d.reasons[0]?.message ?? '', /unreachable/);
  });

  it('can only make the embedded decision stricter', async () => {
    const embedded = new EmbeddedPolicyEngine({
      policy: parsePolicy('apiVersion: gatehouse.dev/v1\nkind: Policy\nname: p\nrules: []\n', 'p'),
    });
    assert.equal(
      (await new CombinedPolicyEngine([embedded, opa('gatehouse/quarantine')]).evaluate(input)).outcome,
      'quarantine',
    );
    assert.equal(
      (await new CombinedPolicyEngine([embedded, opa('gatehouse/allow')]).evaluate(input)).outcome,
      'allow',
    );
    const combined = await new CombinedPolicyEngine([embedded, opa('gatehouse/deny')]).evaluate(input);
    assert.equal(combined.policyDigest, embedded.policyDigest);
    assert.equal(combined.outcome, 'deny');
  });
});
