import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { detectHostLayout } from '../runner/host-layout.ts';
import { parseProjectConfig } from '../runner/project-config.ts';
import type { SandboxProfile } from '../runner/runner.ts';
import { bubblewrapSandboxProfile } from '../runner/sandbox-profile.ts';
import { replayEventLog } from '../tpm/pcr.ts';
import {
  agentManifestDigest,
  jobBindingDigest,
  measureBaseline,
  PCR_ALLOCATION,
  sandboxProfileDigest,
} from './measurement.ts';

const NONCE = Buffer.alloc(32, 7).toString('base64');

describe('measured baseline', () => {
  let dir: string;
  let profile: SandboxProfile;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-measure-'));
    await writeFile(join(dir, 'a.ts'), 'export const a = 1;\n');
    await writeFile(join(dir, 'b.ts'), 'export const b = 2;\n');
    profile = bubblewrapSandboxProfile(
      parseProjectConfig('project: p\nbuild: {command: make}\noutputs: [a]\n', 'x'),
      await detectHostLayout(),
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('logs profile, toolchain, agent and job events in their PCRs, and replays to its PCRs', async () => {
    const b = await measureBaseline({
      sandboxProfile: profile,
      toolchain: ['/bin/sh', '/usr/bin/env'],
      agentFiles: [join(dir, 'a.ts'), join(dir, 'b.ts')],
      jobId: 'job-1',
      nonce: NONCE,
    });
    assert.deepEqual(
      b.events.map((e) => [e.pcr, e.type, e.name]),
      [
        [8, 'sandbox-profile', 'bubblewrap'],
        [9, 'toolchain', '/bin/sh'],
        [9, 'toolchain', '/usr/bin/env'],
        [10, 'agent', 'agent'],
        [11, 'job', 'job-1'],
      ],
    );
    const sh = createHash('sha256')
      .update(await readFile('/bin/sh'))
      .digest('hex');
    assert.equal(b.events[1]?.digest, sh);
    assert.equal(b.events[0]?.digest, sandboxProfileDigest(profile));
    assert.equal(b.events[4]?.digest, jobBindingDigest('job-1', NONCE));
    const replayed = replayEventLog(b.events);
    assert.deepEqual({ ...b.pcrs }, Object.fromEntries(Object.entries(replayed)));
    assert.deepEqual(Object.keys(b.pcrs), ['8', '9', '10', '11']);
    assert.deepEqual(PCR_ALLOCATION, { 'sandbox-profile': 8, toolchain: 9, agent: 10, job: 11 });
  });

  it('binds the job event to SHA-256(jobId ‖ nonce bytes)', () => {
    const expected = createHash('sha256').update('job-1').update(Buffer.alloc(32, 7)).digest('hex');
    assert.equal(jobBindingDigest('job-1', NONCE), expected);
    assert.notEqual(jobBindingDigest('job-2', NONCE), expected);
  });

  it('measures the agent the same wherever it is installed, and differently when a file changes', async () => {
    const other = await mkdtemp(join(tmpdir(), 'gatehouse-measure-other-'));
    try {
      await writeFile(join(other, 'a.ts'), 'export const a = 1;\n');
      await writeFile(join(other, 'b.ts'), 'export const b = 2;\n');
      const here = await agentManifestDigest([join(dir, 'b.ts'), join(dir, 'a.ts')]);
      assert.equal(await agentManifestDigest([join(other, 'a.ts'), join(other, 'b.ts')]), here);
      await writeFile(join(other, 'b.ts'), 'export const b = 3;\n');
      assert.notEqual(await agentManifestDigest([join(other, 'a.ts'), join(other, 'b.ts')]), here);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('changes the profile digest when the isolation changes', () => {
    const looser = { ...profile, capabilities: ['CAP_SYS_ADMIN'] };
    assert.notEqual(sandboxProfileDigest(looser), sandboxProfileDigest(profile));
  });

  const bad: [string, Partial<Parameters<typeof measureBaseline>[0]>][] = [
    ['a relative toolchain path', { toolchain: ['sh'] }],
    ['a missing toolchain binary', { toolchain: ['/no/such/binary'] }],
    ['no agent files', { agentFiles: [] }],
    ['a nonce that is not base64', { nonce: 'not base64!' }],
  ];
  for (const [name, change] of bad) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(
        measureBaseline({
          sandboxProfile: profile,
          toolchain: ['/bin/sh'],
          agentFiles: [join(dir, 'a.ts')],
          jobId: 'j',
          nonce: NONCE,
          ...change,
        }),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});
