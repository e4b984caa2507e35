import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { collectImage } from '../agent/image-output.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import { checkImageArchive } from './checks.ts';
import { OutputStaging } from './staging.ts';
import type { Submission } from './submission.ts';

const dirs: string[] = [];
async function temp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'gatehouse-gate-image-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const JOB = 'job-00000000-0000-4000-8000-000000000001';

/** An image the agent assembled, staged as the control plane received it, and its submission. */
async function staged() {
  const ws = await temp();
  mkdirSync(join(ws, 'dist'));
  writeFileSync(join(ws, 'dist', 'app'), 'binary');
  const config = parseProjectConfig(
    'project: svc\nbuild: {command: x}\nimage:\n  base: scratch\n  files: [{from: dist/app, to: /app}]\n  platform: linux/amd64\n  entrypoint: [/app]\n',
    'gatehouse.yaml',
  );
  const image = config.image;
  assert.ok(image !== undefined);
  const got = await collectImage({ workspace: ws, image, workDir: await temp() });
  const staging = new OutputStaging({ root: await temp() });
  const file = await staging.receive(JOB, got.output.path, createReadStream(got.output.file));
  const submission = {
    jobId: JOB,
    subjects: [{ name: file.name, sha256: file.sha256 }],
    image: {
      name: 'svc',
      archive: got.output.path,
      manifestDigest: got.image.manifestDigest,
      platform: { os: 'linux', architecture: 'amd64' },
      base: { source: 'scratch' },
    },
  } as unknown as Submission;
  return {
    staging,
    submission,
    files: [{ name: file.name, sha256: file.sha256, size: file.size, path: file.path }],
  };
}

describe('the gate opens an image archive itself', () => {
  it('accepts the archive whose manifest is the one the submission names', async () => {
    const s = await staged();
    const image = await checkImageArchive(s.submission, s.files, s.staging);
    assert.equal(image?.manifestDigest, s.submission.image?.manifestDigest);
    assert.equal(image?.layers.length, 1);
  });

  it('refuses a submission that names another manifest digest or another platform', async () => {
    const s = await staged();
    const image = s.submission.image;
    assert.ok(image !== undefined);
    await assert.rejects(
      checkImageArchive(
        { ...s.submission, image: { ...image, manifestDigest: `sha256:${'b'.repeat(64)}` } },
        s.files,
        s.staging,
      ),
      (e: Error & { code?: string }) =>
        e.code === 'SUBJECT_MISMATCH' &&
        /holds manifest sha256:[0-9a-f]{64}, the submission names sha256:b{64}/.test(e.message),
    );
    await assert.rejects(
      checkImageArchive(
        { ...s.submission, image: { ...image, platform: { os: 'linux', architecture: 'arm64' } } },
        s.files,
        s.staging,
      ),
      /the image config is for linux\/amd64, the submission names linux\/arm64/,
    );
  });

  it('refuses an image submission with a second output, or whose archive is not an image layout', async () => {
    const s = await staged();
    const [archive] = s.files;
    assert.ok(archive !== undefined);
    await assert.rejects(
      checkImageArchive(s.submission, [archive, { ...archive, name: 'extra.bin' }], s.staging),
      (e: Error & { code?: string }) => e.code === 'SUBJECT_MISMATCH' && /exactly one output/.test(e.message),
    );
    const d = await temp();
    writeFileSync(join(d, 'payload'), 'not an image');
    execFileSync('tar', ['-cf', join(d, 'plain.tar'), '-C', d, 'payload']);
    const plain = await s.staging.receive(JOB, 'svc.oci.tar', createReadStream(join(d, 'plain.tar')));
    await assert.rejects(
      checkImageArchive(s.submission, [{ ...plain }], s.staging),
      (e: Error & { code?: string }) =>
        e.code === 'ARTIFACT_REFUSED' && /entry 'payload' is not part of an image layout/.test(e.message),
    );
  });
});
