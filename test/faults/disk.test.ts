/**
 * A full disk under the home: a job that cannot write its outputs, log entry or decision fails
 * with one line and exit 1, nothing already stored is lost or changed, and once there is room
 * again the home opens, its log audits and the next job is allowed. The home lives on a small
 * tmpfs the test mounts (so nothing else on the machine fills up) and unmounts at the end.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, examplesDir, tempDir } from '../helpers.ts';

function canMount(): string | false {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  return false;
}

describe('a full disk under the home', { skip: canMount() }, () => {
  const tmp = tempDir('disk');
  const mnt = join(tmp.path, 'mnt');
  const home = join(mnt, 'home');
  const env = { GATEHOUSE_HOME: home, GATEHOUSE_BACKGROUND_FILL: '0' };
  let mounted = false;

  before(async () => {
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'gatehouse-disk-test', mnt]);
    mounted = true;
    for (const args of [
      ['init'],
      ['vulndb', 'import', join(examplesDir, 'advisories')],
      ['attestation', 'vtpm-pool', 'fill', '4'],
    ]) {
      const r = await cli(args, { env });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
  });
  after(() => {
    if (mounted) execFileSync('umount', ['-l', mnt]);
    tmp.cleanup();
  });

  const logSize = async (): Promise<number> => {
    const r = await cli(['log', 'checkpoint', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    // The signed note's second line is the tree size.
    return Number((JSON.parse(r.stdout) as { checkpoint: string }).checkpoint.split('\n')[1]);
  };

  it('fails a job cleanly when the disk is full, and loses nothing', async () => {
    const first = await cli(['run', join(examplesDir, 'hello-app'), '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const before = await logSize();

    // Fill the file system to the last few kilobytes at three depths: too full to open the
    // database, full once the job has started, full at the gate's writes.
    const filler = join(mnt, 'filler');
    for (const leaveKiB of [16, 64, 256]) {
      const { bavail, bsize } = statfsSync(mnt);
      execFileSync('fallocate', ['-l', String(Math.max(0, bavail * bsize - leaveKiB * 1024)), filler]);
      try {
        const full = await cli(['run', join(examplesDir, 'hello-app')], { env });
        const said = `${full.stdout}${full.stderr}`;
        assert.equal(full.code, 1, `a full disk (${leaveKiB} KiB left) is an error, exit 1: ${said}`);
        assert.doesNotMatch(full.stdout, /^ALLOWED/m, 'nothing is signed without its records');
        assert.doesNotMatch(full.stderr, /\n\s+at /, 'no stack trace');
        assert.match(full.stderr, /^gatehouse run: .+$/m);
      } finally {
        rmSync(filler, { force: true });
      }
    }

    // Room again: the home opens (integrity checked), its log only grew, the next job is allowed.
    const again = await cli(['run', join(examplesDir, 'hello-app'), '--json'], { env });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.ok((await logSize()) > before, 'the log grew from where it was; nothing was lost');
    const audit = await cli(['log', 'audit', '--state', join(tmp.path, 'audit.json')], { env });
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
  });
});
