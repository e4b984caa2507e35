/** `gatehouse doctor` on a healthy home, a drifted one, one without its database, and no home. */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DoctorCheck } from '../src/home/doctor.ts';
import { cli, copyExample, tempDir } from './helpers.ts';

const doctor = async (home: string) => {
  const r = await cli(['doctor', '--home', home, '--json']);
  const doc = JSON.parse(r.stdout) as { ok: boolean; checks: DoctorCheck[] };
  const byName = new Map(doc.checks.map((c) => [c.name, c]));
  return { code: r.code, doc, byName };
};

describe('gatehouse doctor', () => {
  const tmp = tempDir('doctor');
  const home = join(tmp.path, 'home');

  before(async () => {
    assert.equal((await cli(['init', '--home', home])).code, 0);
  });
  after(() => tmp.cleanup());

  it('finds nothing wrong with a fresh home on this machine', async () => {
    const { code, doc, byName } = await doctor(home);
    assert.deepEqual(
      doc.checks.filter((c) => c.status === 'fail'),
      [],
    );
    assert.equal(code, 0);
    assert.equal(byName.get('reference values')?.status, 'ok');
    assert.equal(byName.get('sandbox')?.status, 'ok');
    assert.match(byName.get('database')?.detail ?? '', /matches its anchor/);
    const human = await cli(['doctor', '--home', home]);
    assert.match(human.stdout, /✓ reference values/);
  });

  it('names drifted reference values and the command that makes the current state the reference', async () => {
    const values = JSON.parse(readFileSync(join(home, 'reference-values.json'), 'utf8'));
    values.toolchain['/usr/bin/tar'] = ['0'.repeat(64)];
    const stale = join(tmp.path, 'stale.json');
    writeFileSync(stale, JSON.stringify(values));
    assert.equal((await cli(['attestation', 'reference-values', 'publish', stale, '--home', home])).code, 0);
    const { code, byName } = await doctor(home);
    assert.equal(code, 1);
    const drift = byName.get('reference values');
    assert.equal(drift?.status, 'fail');
    assert.match(
      drift?.detail ?? '',
      /toolchain \/usr\/bin\/tar digest [0-9a-f]{64} is not a reference value/,
    );
    assert.ok(
      drift?.fix?.some((l) => /^cause: the build tool \/usr\/bin\/tar changed \(package tar/.test(l)),
    );
    assert.ok(drift?.fix?.some((l) => l.includes(`gatehouse init --update-reference-values --home ${home}`)));
    // Following the advice clears it.
    assert.equal((await cli(['init', '--update-reference-values', '--home', home])).code, 0);
    assert.equal((await doctor(home)).byName.get('reference values')?.status, 'ok');
  });

  it('says how to recover a home whose database is gone, and changes nothing', async () => {
    const other = join(tmp.path, 'lost');
    assert.equal((await cli(['init', '--home', other])).code, 0);
    // A log with entries (a job's decision), so that its anchor knows the database is not new.
    await cli(['run', copyExample('hello-app', tmp.path), '--home', other]);
    assert.ok(JSON.parse(readFileSync(join(other, 'log-anchor.json'), 'utf8')).treeSize > 0);
    rmSync(join(other, 'gatehouse.db'), { force: true });
    const { code, byName } = await doctor(other);
    assert.equal(code, 1);
    const db = byName.get('database');
    assert.equal(db?.status, 'fail');
    assert.match(db?.detail ?? '', /missing/);
    assert.ok(db?.fix?.some((l) => l.startsWith('gatehouse restore BACKUP')));
    assert.ok(db?.fix?.some((l) => l.startsWith('gatehouse init --new-log')));
    assert.throws(() => readFileSync(join(other, 'gatehouse.db')), 'doctor did not recreate the database');
  });

  it('points a missing home at init', async () => {
    const { code, byName } = await doctor(join(tmp.path, 'absent'));
    assert.equal(code, 1);
    assert.deepEqual(byName.get('home')?.fix, [`gatehouse init --home ${join(tmp.path, 'absent')}`]);
  });
});
