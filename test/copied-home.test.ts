/**
 * A copied home on another machine cannot attest (issue 17): every file of a home, copied to a
 * machine with another host TPM (a fresh stand-in named by GATEHOUSE_HOST_TPM, in a temp dir),
 * makes vTPMs whose EK certificates the home's own authority refuses, because the key that issues
 * them lives in a TPM and not in the copy; and the vTPM states the genuine host had already made
 * into its pool cannot be started there, because their keys are sealed to the genuine host's TPM.
 * Real swtpm throughout.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../src/common/errors.ts';
import { homeVtpmPool, initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { tpmToolsMissing } from '../src/testing/attestation.ts';
import { attestedJob } from '../src/testing/submission.ts';
import { manufactureHostTpmStandIn, stopStandIn } from '../src/tpm/host-tpm.ts';
import { tempDir } from './helpers.ts';

describe('a copied home on another machine', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('copied-home');
  const root = join(tmp.path, 'home');
  const copy = join(tmp.path, 'copy');
  const otherMachine = join(tmp.path, 'other-host-tpm');
  const saved = process.env.GATEHOUSE_HOST_TPM;
  let home: OpenHome | undefined;
  let copied: OpenHome | undefined;

  before(async () => {
    await initHome(root);
    home = await openHome(root);
  });
  after(async () => {
    if (saved === undefined) delete process.env.GATEHOUSE_HOST_TPM;
    else process.env.GATEHOUSE_HOST_TPM = saved;
    await copied?.close();
    await home?.close();
    await stopStandIn(otherMachine).catch(() => undefined);
    tmp.cleanup();
  });

  it('attests on its own machine, and its copy, with every file and ready vTPM state, cannot on another', async () => {
    assert.ok(home !== undefined);
    // On its own machine the home's runners attest (its pool's vTPMs, its host TPM's key).
    await attestedJob(home, 'hello-app');
    // The genuine host fills its pool: states whose EK certificates its TPM-resident key issued,
    // each encrypted under a key sealed to its TPM.
    const genuine = await homeVtpmPool(root);
    assert.ok(genuine !== undefined);
    await genuine.pool.fill(3);
    await home.close();
    home = undefined;
    // Every file of the home, keys, store and the ready states included.
    cpSync(root, copy, { recursive: true });
    const ready = join(copy, 'vtpm-pool', 'ready');
    assert.equal(readyStates(ready).length, 3);
    await manufactureHostTpmStandIn(otherMachine);
    process.env.GATEHOUSE_HOST_TPM = otherMachine;
    copied = await openHome(copy);
    // A copied ready state cannot be started on the other machine: its key does not unseal with
    // that host TPM. The job that takes it is refused, and the state destroyed.
    await assert.rejects(attestedJob(copied, 'hello-app'), (e: unknown) => {
      assert.ok(isGatehouseError(e, 'KEY_UNAVAILABLE'), `refused for ${String(e)}`);
      return true;
    });
    const pool = (await homeVtpmPool(copy))?.pool;
    assert.ok(pool !== undefined);
    for (let left = readyStates(ready).length; left > 0; left--)
      await assert.rejects(pool.take(), (e: unknown) => isGatehouseError(e, 'KEY_UNAVAILABLE'));
    assert.deepEqual(readyStates(ready), []);
    assert.deepEqual(readyStates(join(copy, 'vtpm-pool', 'in-use')), [], 'refused states are destroyed');
    // The vTPMs the copy makes itself are issued by the other machine's TPM-resident key.
    await assert.rejects(attestedJob(copied, 'hello-app'), (e: unknown) => {
      const checks = (e as { failedChecks?: { check: string }[] }).failedChecks?.map((f) => f.check) ?? [];
      assert.ok(checks.includes('EK_CERT_UNTRUSTED'), `refused for ${checks.join(', ') || String(e)}`);
      return true;
    });
    await copied.close();
    copied = undefined;
    // The genuine home, back on its own machine, still attests with the states it made.
    if (saved === undefined) delete process.env.GATEHOUSE_HOST_TPM;
    else process.env.GATEHOUSE_HOST_TPM = saved;
    home = await openHome(root);
    await attestedJob(home, 'hello-app');
    assert.equal(readyStates(join(root, 'vtpm-pool', 'ready')).length, 2);
  });
});

function readyStates(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.') && !n.endsWith('.owner')) : [];
}
