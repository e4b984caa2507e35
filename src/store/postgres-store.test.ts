/**
 * The PostgreSQL store against a real PostgreSQL started by the test (src/testing/postgres.ts):
 * the store contract every adapter passes, and what only a shared database has to show — several
 * instances (each its own pool, as separate processes would be) racing on one log, one session,
 * one proof, one job, and seeing each other's vulnerability imports.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { Reconciler } from '../control-plane/reconcile.ts';
import { OutputStaging } from '../gate/staging.ts';
import { Orchestrator } from '../orchestrator/orchestrator.ts';
import { OciLayoutRegistry } from '../registry/oci-layout-registry.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { postgresSkip, startPostgres, type TestPostgres } from '../testing/postgres.ts';
import { describeAlertStoreContract, describeStoreContract } from '../testing/store-contract.ts';
import { interiorNodeCount, leafHash, verifyInclusion } from '../tlog/merkle.ts';
import { decisionEntryBody, TransparencyLog } from '../tlog/transparency-log.ts';
import { LiveVulnIndex } from '../vuln/live-index.ts';
import { sqliteMigrations } from './migrations.ts';
import { postgresMigrations } from './postgres-migrations.ts';
import { PostgresStore, parsePostgresUrl } from './postgres-store.ts';

const skip = postgresSkip();

describe('PostgreSQL store', { skip }, () => {
  let pg: TestPostgres | undefined;
  let databases = 0;
  const opened: PostgresStore[] = [];
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    for (const s of opened) await s.close().catch(() => undefined);
    await pg?.stop();
  });
  const cluster = (): TestPostgres => {
    if (pg === undefined) throw new Error('no cluster');
    return pg;
  };
  const freshDatabase = (): string => cluster().createDatabase(`db_${++databases}`);
  /** A store on `url`, as one control-plane instance would open it (its own pool). */
  const instance = async (url: string, maxConnections = 4): Promise<PostgresStore> => {
    const s = await PostgresStore.open({ url, password: cluster().password, maxConnections });
    opened.push(s);
    return s;
  };

  describeStoreContract('PostgreSQL', async () =>
    PostgresStore.open({ url: freshDatabase(), password: cluster().password }),
  );
  describeAlertStoreContract('PostgreSQL', async () =>
    PostgresStore.open({ url: freshDatabase(), password: cluster().password }),
  );

  describe('schema', () => {
    it('mirrors every SQLite migration, version for version and name for name', () => {
      const names = (ms: readonly { version: number; name: string }[]) =>
        ms.map((m) => `${m.version} ${m.name}`).sort();
      assert.deepEqual(names(postgresMigrations), names(sqliteMigrations));
    });

    it('refuses to change, delete or truncate log entries, even with SQL from outside', async () => {
      const url = freshDatabase();
      const s = await instance(url);
      await s.log.append(
        0,
        [{ body: new Uint8Array([1]), leafHash: new Uint8Array(32), integratedTime: 1 }],
        [],
      );
      const db = url.slice(url.lastIndexOf('/') + 1);
      for (const sql of [
        "UPDATE log_entries SET body = '\\x02'",
        'DELETE FROM log_entries',
        'TRUNCATE log_entries',
        'TRUNCATE log_nodes',
        'TRUNCATE security_acts',
      ])
        assert.throws(() => cluster().psql(db, sql), /immutable|permanent/, sql);
      assert.equal(await s.log.size(), 1);
    });

    it('migrates once when two instances start together, and refuses a database from a newer gatehouse', async () => {
      const url = freshDatabase();
      const [a, b] = await Promise.all([instance(url), instance(url)]);
      const newest = Math.max(...postgresMigrations.map((m) => m.version));
      assert.equal(await a.schemaVersion(), newest);
      assert.equal(await b.schemaVersion(), newest);
      const db = url.slice(url.lastIndexOf('/') + 1);
      cluster().psql(db, "INSERT INTO schema_migrations VALUES (999, 'future', 'x')");
      await assert.rejects(instance(url), (e) => isGatehouseError(e, 'MIGRATION_FAILED'));
    });
  });

  describe('several instances on one database', () => {
    it('never fork the log nor lose an entry when two instances race 1,000 appends', async () => {
      const url = freshDatabase();
      const signer = EphemeralSigner.generate();
      const stores = await Promise.all([instance(url, 8), instance(url, 8)]);
      const logs = stores.map(
        (s) => new TransparencyLog({ store: s.log, signer, origin: 'gatehouse.test/log' }),
      );
      const body = (i: number) => decisionEntryBody({ kind: 'race', i });
      // Each instance runs its appends concurrently too, as a busy server does.
      const appended = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => (logs[i % 2] as TransparencyLog).append(body(i))),
      );
      const indices = appended.map((e) => e.index).sort((x, y) => x - y);
      assert.deepEqual(
        indices,
        Array.from({ length: 1000 }, (_, i) => i),
        'every index once, no gap',
      );
      const [a, b] = stores as [PostgresStore, PostgresStore];
      assert.equal(await a.log.size(), 1000);
      // Each entry holds the body its append was given, at the index it was told.
      for (const [i, e] of appended.entries()) {
        const stored = await (i % 3 === 0 ? a : b).log.get(e.index);
        assert.deepEqual(Buffer.from(stored?.body ?? []), Buffer.from(body(i)));
      }
      // One tree: both instances compute the same root, every interior node was stored once,
      // and an entry's inclusion proof from one instance verifies against the other's root.
      const [rootA, rootB] = await Promise.all(logs.map((l) => l.rootHash()));
      assert.deepEqual(rootA, rootB);
      assert.equal(await a.log.nodeCount(), interiorNodeCount(1000));
      for (const index of [0, 1, 511, 998, 999]) {
        const proof = await (logs[0] as TransparencyLog).inclusionProof(index, 1000);
        const entry = await b.log.get(index);
        assert.ok(entry !== undefined);
        verifyInclusion(leafHash(entry.body), index, 1000, proof.hashes, rootB?.rootHash ?? new Uint8Array());
      }
    });

    it('accepts a submission proof through one instance only', async () => {
      const url = freshDatabase();
      const [a, b] = await Promise.all([instance(url), instance(url)]);
      const exp = Math.floor(Date.now() / 1000) + 300;
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).tokens.useOnce('proof:shared', exp)),
      );
      assert.equal(results.filter((x) => x).length, 1);
    });

    it('answers a challenge issued by one instance at another, once', async () => {
      const url = freshDatabase();
      const [a, b] = await Promise.all([instance(url), instance(url)]);
      const session = {
        id: 'cross-instance',
        state: '{"nonce":"x"}',
        expiresAt: Date.now() + 60_000,
        createdAt: new Date().toISOString(),
      };
      await a.attestation.openSession(session, 10_000);
      const taken = await Promise.all([
        b.attestation.takeSession(session.id),
        a.attestation.takeSession(session.id),
      ]);
      assert.deepEqual(taken.map((t) => t.status).sort(), ['spent', 'taken']);
    });

    it('claims a job for one host and keeps one final state when instances race to change it', async () => {
      const url = freshDatabase();
      const [a, b] = await Promise.all([instance(url), instance(url)]);
      const job = await new Orchestrator({ store: a }).createJob('race-app');
      const claims = await Promise.allSettled([a.jobs.claim(job.id, 'h1'), b.jobs.claim(job.id, 'h2')]);
      assert.equal(claims.filter((c) => c.status === 'fulfilled').length, 1);
      const [oa, ob] = [new Orchestrator({ store: a }), new Orchestrator({ store: b })];
      await oa.transition(job.id, 'running');
      await oa.transition(job.id, 'submitted');
      // One instance decides, the other fails the job: exactly one final state wins.
      const ends = await Promise.allSettled([
        oa.transition(job.id, 'allowed', { result: { by: 'a' } }),
        ob.transition(job.id, 'failed', { result: { by: 'b' } }),
      ]);
      assert.equal(ends.filter((e) => e.status === 'fulfilled').length, 1);
      const final = await b.jobs.get(job.id);
      const winner = ends.findIndex((e) => e.status === 'fulfilled');
      assert.equal(final?.state, winner === 0 ? 'allowed' : 'failed');
      assert.equal(final?.result?.by, winner === 0 ? 'a' : 'b');
    });

    it('settles a job abandoned by a dead instance once, whichever instances reconcile it', async () => {
      const url = freshDatabase();
      const stores = await Promise.all([instance(url), instance(url), instance(url)]);
      const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-reconcile-'));
      after(() => rmSync(dir, { recursive: true, force: true }));
      const signer = EphemeralSigner.generate();
      const first = stores[0] as PostgresStore;
      const abandoned = await new Orchestrator({ store: first }).createJob('left-app');
      await first.jobs.update(abandoned.id, { state: 'running' });
      await first.jobs.update(abandoned.id, { state: 'submitted' });
      const reconcilers = stores.map(
        (store) =>
          new Reconciler({
            store,
            orchestrator: new Orchestrator({ store }),
            registry: new OciLayoutRegistry({ root: join(dir, 'registry') }),
            staging: new OutputStaging({ root: join(dir, 'staging') }),
            log: new TransparencyLog({ store: store.log, signer, origin: 'gatehouse.test/log' }),
            submittedGraceSeconds: 1,
            jobDeadlineSeconds: 60,
          }),
      );
      const later = new Date(Date.now() + 5_000);
      const reports = await Promise.all(reconcilers.map((r) => r.run(later)));
      assert.deepEqual(
        reports.flatMap((r) => r.failed),
        [abandoned.id],
        'one instance settled it',
      );
      assert.equal((await first.jobs.get(abandoned.id))?.state, 'failed');
      const entries = await Promise.all(
        Array.from({ length: await first.log.size() }, (_, i) => first.log.get(i)),
      );
      const logged = entries.filter((e) =>
        Buffer.from(e?.body ?? [])
          .toString()
          .includes(abandoned.id),
      );
      assert.equal(logged.length, 1, 'its failure is logged once');
    });

    it('sees a vulnerability import made through another instance at the next decision', async () => {
      const url = freshDatabase();
      const [a, b] = await Promise.all([instance(url), instance(url)]);
      const index = new LiveVulnIndex(b.vulns);
      const before = await index.current();
      const record = {
        id: 'GHSA-shared-0001',
        modified: '2025-01-01T00:00:00Z',
        published: '2025-01-01T00:00:00Z',
        affected: [
          {
            package: { ecosystem: 'npm', name: 'left-pad' },
            ranges: [{ type: 'SEMVER', events: [{ introduced: '0' }] }],
          },
        ],
      };
      await a.vulns.upsert([
        {
          id: record.id,
          modified: record.modified,
          withdrawn: null,
          aliases: [],
          json: JSON.stringify(record),
          packages: [{ ecosystem: 'npm', name: 'left-pad' }],
        },
      ]);
      const after = await index.current();
      assert.notEqual(after, before, 'the index was reloaded');
      assert.equal(await b.vulns.count(), 1);
      assert.equal(index.generation, await a.vulns.generation());
    });
  });

  describe('connection', () => {
    it('refuses a URL that is unsafe or unclear, naming what is wrong', () => {
      const cases: [string, RegExp][] = [
        ['postgres://u:secret@127.0.0.1/db', /must not carry a password/],
        ['postgres://u@db.example.com/db?sslmode=disable', /only a loopback host may go without TLS/],
        ['postgres://u@127.0.0.1/db?sslmode=prefer', /not one of disable, require, verify-full/],
        ['postgres://u@127.0.0.1/db?options=-c%20x', /unknown URL parameter 'options'/],
        ['postgres://u@127.0.0.1/db?sslmode=verify-full&sslrootcert=ca.pem', /absolute path/],
        ['postgres://u@127.0.0.1/db?sslmode=require&sslrootcert=/ca.pem', /needs sslmode=verify-full/],
        ['postgres://u@127.0.0.1/', /names no database/],
        ['postgres://127.0.0.1/db', /names no user/],
        ['mysql://u@127.0.0.1/db', /must start with postgres:\/\//],
        ['not a url', /not a URL/],
      ];
      for (const [url, message] of cases)
        assert.throws(
          () => parsePostgresUrl(url),
          (e) =>
            isGatehouseError(e, 'BAD_CONFIG') && message.test(e.message) && !e.message.includes('secret'),
          url,
        );
      assert.equal(parsePostgresUrl('postgres://u@127.0.0.1/db').ssl, false, 'loopback without TLS');
      assert.equal(
        typeof parsePostgresUrl('postgres://u@db.example.com/db').ssl,
        'object',
        'verify-full off loopback',
      );
    });

    it('fails with STORE_ERROR, never the password, on a wrong password or an unreachable server', async () => {
      const url = freshDatabase();
      await assert.rejects(
        PostgresStore.open({ url, password: 'wrong-password-123' }),
        (e) => isGatehouseError(e, 'STORE_ERROR') && !e.message.includes('wrong-password-123'),
      );
      const closed = url.replace(/:\d+\//, ':1/');
      await assert.rejects(PostgresStore.open({ url: closed, password: cluster().password }), (e) =>
        isGatehouseError(e, 'STORE_ERROR'),
      );
    });
  });
});

describe('PostgreSQL store over TLS', { skip }, () => {
  let pg: TestPostgres | undefined;
  before(async () => {
    pg = await startPostgres({ tls: true });
  });
  after(async () => {
    await pg?.stop();
  });
  const url = (host: string, query: string) => {
    if (pg === undefined) throw new Error('no cluster');
    return `postgres://${pg.username}@${host}:${pg.port}/gatehouse?${query}`;
  };

  it('connects with sslmode=verify-full to the server its CA certified, by the name certified', async () => {
    const s = await PostgresStore.open({
      url: url('127.0.0.1', `sslmode=verify-full&sslrootcert=${pg?.caFile}`),
      password: pg?.password ?? '',
    });
    assert.ok((await s.schemaVersion()) > 0);
    await s.close();
  });

  it('refuses a server certified by another CA, or for another name, under verify-full', async () => {
    const other = mkdtempSync(join(tmpdir(), 'gatehouse-pg-otherca-'));
    after(() => rmSync(other, { recursive: true, force: true }));
    const otherCa = join(other, 'ca.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
        '-days',
        '1',
        '-subj',
        '/CN=another CA',
        '-keyout',
        join(other, 'ca.key'),
        '-out',
        otherCa,
      ]),
      {
        stdio: 'ignore',
      },
    );
    for (const target of [
      url('127.0.0.1', `sslmode=verify-full&sslrootcert=${otherCa}`),
      // The same server and CA, reached at an address its certificate does not name.
      url('127.0.0.2', `sslmode=verify-full&sslrootcert=${pg?.caFile}`),
      // verify-full with the system's roots: the test CA is not among them.
      url('127.0.0.1', 'sslmode=verify-full'),
    ])
      await assert.rejects(
        PostgresStore.open({ url: target, password: pg?.password ?? '' }),
        (e) => isGatehouseError(e, 'STORE_ERROR'),
        target,
      );
  });

  it('encrypts without checking who answers under sslmode=require', async () => {
    const s = await PostgresStore.open({
      url: url('127.0.0.2', 'sslmode=require'),
      password: pg?.password ?? '',
    });
    assert.ok((await s.schemaVersion()) > 0);
    await s.close();
  });
});
