import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { explainReferenceDrift, packageChanges } from './drift.ts';

describe('explaining measurements that are no longer reference values', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-drift-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const dpkgLog = join(dir, 'dpkg.log');
  writeFileSync(
    dpkgLog,
    [
      '2026-01-01 09:00:00 startup archives unpack',
      '2026-01-01 09:00:01 install oldtool:amd64 <none> 1.0',
      '2026-03-02 10:00:00 upgrade tar:amd64 1.34+dfsg-1.2 1.34+dfsg-1.2+deb12u1',
      '2026-03-02 10:00:01 status installed tar:amd64 1.34+dfsg-1.2+deb12u1',
      '2026-03-02 10:00:02 install chromium:amd64 <none> 156.0-1',
      '2026-03-02 10:00:03 remove oldtool:amd64 1.0 <none>',
      '',
    ].join('\n'),
  );
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const history = (entries: unknown) => {
    const cache = mkdtempSync(join(dir, 'cache-'));
    writeFileSync(join(cache, 'host-system.history.json'), JSON.stringify(entries));
    return cache;
  };

  it('reads installs, upgrades and removals from dpkg’s log', async () => {
    const changes = await packageChanges(dpkgLog);
    assert.deepEqual(
      changes.map((c) => `${c.action} ${c.name} ${c.version}`),
      [
        'install oldtool 1.0',
        'upgrade tar 1.34+dfsg-1.2+deb12u1',
        'install chromium 156.0-1',
        'remove oldtool 1.0',
      ],
    );
  });

  it('says the image changed, from when, which packages changed since, and the command to run', async () => {
    const lines = await explainReferenceDrift({
      refusal: `evidence rejected: REFERENCE_VALUES: sandbox profile digest ${'c'.repeat(64)} is not a reference value`,
      image: { kind: 'host-system', digest: b },
      imageCacheDir: history([
        { digest: a, firstMeasuredAt: Date.parse('2026-02-01T00:00:00Z') },
        { digest: b, firstMeasuredAt: Date.parse('2026-03-02T10:05:00Z') },
      ]),
      home: '/srv/gatehouse',
      dpkgLog,
    });
    assert.match(
      lines[0] ?? '',
      /image changed: it measured sha256:aaaaaaaaaaaaaaaa… from 2026-02-01T00:00:00Z and measures sha256:bbbbbbbbbbbbbbbb… since 2026-03-02T10:05:00Z/,
    );
    assert.match(
      lines[1] ?? '',
      /since 2026-02-01T00:00:00Z: upgrade tar .*install chromium 156\.0-1, remove oldtool 1\.0$/,
    );
    assert.equal(
      lines.at(-1),
      'fix: if the change was intended, the security role makes it the reference: gatehouse init --update-reference-values --home /srv/gatehouse (or gatehouse attestation reference-values publish FILE with a reviewed bundle); until then every job on this runner is refused',
    );
  });

  it('names a changed build tool with the package that changed it', async () => {
    const lines = await explainReferenceDrift({
      refusal: `REFERENCE_VALUES: toolchain /usr/bin/tar digest ${a} is not a reference value`,
      dpkgLog,
    });
    assert.match(
      lines[0] ?? '',
      /^cause: the build tool \/usr\/bin\/tar changed \(package tar: upgrade 1\.34\+dfsg-1\.2\+deb12u1 at /,
    );
  });

  it('names the newest file of a changed agent', async () => {
    const older = join(dir, 'old.ts');
    const newer = join(dir, 'new.ts');
    writeFileSync(older, '');
    writeFileSync(newer, '');
    const { utimesSync } = await import('node:fs');
    utimesSync(older, new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'));
    const lines = await explainReferenceDrift({
      refusal: `REFERENCE_VALUES: agent digest ${a} is not a reference value`,
      agentFiles: async () => [older, newer],
      agentRoot: dir,
      dpkgLog,
    });
    assert.match(lines[0] ?? '', /its newest file is new\.ts, modified /);
  });

  it('explains nothing for a refusal of another kind', async () => {
    assert.deepEqual(await explainReferenceDrift({ refusal: 'QUOTE_SIGNATURE: bad signature', dpkgLog }), []);
  });
});
