import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seedMetricSeries } from './series.ts';
import { cookieValue, SESSION_SECONDS, SessionKeeper } from './session.ts';

describe('console sessions', () => {
  const keeper = new SessionKeeper('the viewer token of this home');
  const now = Date.UTC(2026, 0, 1);

  it('accepts its own cookie until it expires, with the CSRF token it was issued with', () => {
    const { cookie, session } = keeper.issue(now);
    assert.deepEqual(keeper.check(cookie, now + 1000), session);
    assert.equal(keeper.check(cookie, now + SESSION_SECONDS * 1000), undefined);
    assert.ok(!cookie.includes('the viewer token'));
  });

  it('refuses a cookie changed in any part, of another token, or malformed', () => {
    const { cookie } = keeper.issue(now);
    const [v, exp, csrf, role, who, mac] = cookie.split('.');
    const later = `${v}.${Number(exp) + 86_400}.${csrf}.${role}.${who}.${mac}`;
    const otherCsrf = `${v}.${exp}.${'A'.repeat(32)}.${role}.${who}.${mac}`;
    const other = new SessionKeeper('another viewer token entirely').issue(now).cookie;
    for (const bad of [later, otherCsrf, other, `${cookie}x`, '', 'v2..', cookie.replace('v2', 'v1')])
      assert.equal(keeper.check(bad, now), undefined, bad);
    assert.equal(keeper.check(undefined, now), undefined);
  });

  it("carries the role and who under the MAC: a viewer cannot make its cookie a triager's", () => {
    const { cookie, session } = keeper.issue(now, { role: 'viewer', who: 'ana@example.org (u-1)' });
    assert.equal(session.role, 'viewer');
    assert.deepEqual(keeper.check(cookie, now), session);
    const promoted = cookie.replace('.viewer.', '.triager.');
    assert.equal(keeper.check(promoted, now), undefined);
    const [v, exp, csrf, role, , mac] = cookie.split('.');
    const renamed = `${v}.${exp}.${csrf}.${role}.${Buffer.from('admin').toString('base64url')}.${mac}`;
    assert.equal(keeper.check(renamed, now), undefined);
  });

  it('tells the viewer token from the triager token, and knows neither otherwise', () => {
    const both = new SessionKeeper('the viewer token of this home', 'the triager token of this home');
    assert.equal(both.roleOfToken('the viewer token of this home'), 'viewer');
    assert.equal(both.roleOfToken('the triager token of this home'), 'triager');
    assert.equal(both.roleOfToken('the triager token of this hom'), undefined);
    assert.equal(keeper.roleOfToken('the triager token of this home'), undefined, 'none configured');
  });

  it('compares the viewer token exactly', () => {
    assert.ok(keeper.isViewerToken('the viewer token of this home'));
    for (const bad of [
      '',
      'the viewer token of this hom',
      'the viewer token of this home ',
      'THE VIEWER TOKEN OF THIS HOME',
    ])
      assert.equal(keeper.isViewerToken(bad), false);
  });

  it('reads one cookie of a Cookie header', () => {
    assert.equal(cookieValue('a=1; gatehouse_console=x.y=z; b=2', 'gatehouse_console'), 'x.y=z');
    assert.equal(cookieValue('xgatehouse_console=1', 'gatehouse_console'), undefined);
    assert.equal(cookieValue(undefined, 'gatehouse_console'), undefined);
  });
});

describe('seed metrics over time', () => {
  const now = Date.UTC(2026, 0, 1, 12);
  const iso = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
  const step = (name: string, ok = true) => ({ name, startedAt: iso(10), durationMs: 5, ok });
  const job = (id: string, minutesAgo: number, steps: ReturnType<typeof step>[], state = 'allowed') => ({
    id,
    project: 'p',
    state: state as 'allowed',
    nonce: 'n',
    createdAt: iso(minutesAgo),
    updatedAt: iso(minutesAgo),
    steps,
  });

  it('computes the four numbers from jobs, refusals, decisions and re-evaluations', () => {
    const jobs = [
      job('j1', 30, [step('provision'), step('build'), step('destroy')]),
      job('j2', 20, [step('provision'), step('build'), step('destroy', false)], 'denied'),
      job('j3', 10, [], 'queued'),
    ];
    const decision = (id: string, jobId: string, outcome: 'allow' | 'deny', minutesAgo: number) => ({
      id,
      jobId,
      project: 'p',
      outcome,
      policyDigest: 'd',
      subjects: [],
      reasons: [],
      createdAt: iso(minutesAgo),
      logIndex: 0,
    });
    const { series } = seedMetricSeries(
      {
        jobs,
        decisions: [decision('d1', 'j1', 'allow', 29), decision('d2', 'j2', 'deny', 19)],
        refusals: [{ id: 'r', stage: 'evidence', jobId: 'j3', failedChecks: [], createdAt: iso(10) }],
        reevaluations: [],
      },
      now,
    );
    const by = Object.fromEntries(series.map((s) => [s.name, s.current]));
    assert.equal(by.ephemeral_share, 0.5, 'a runner not destroyed was not ephemeral');
    assert.equal(by.attestation_success, 0.6667, 'two attested, one refused');
    assert.equal(by.time_to_detect, 60, 'the deny came a minute after the job was asked for');
    assert.equal(by.artifacts_blocked, 1);
    for (const s of series) assert.equal(s.points.length, 24);
  });

  it('has nothing to show, not zeros, where nothing was measured', () => {
    const { series } = seedMetricSeries({ jobs: [], decisions: [], refusals: [], reevaluations: [] }, now);
    const by = Object.fromEntries(series.map((s) => [s.name, s.current]));
    assert.equal(by.ephemeral_share, null);
    assert.equal(by.attestation_success, null);
    assert.equal(by.artifacts_blocked, 0);
  });
});
