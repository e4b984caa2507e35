import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.ts';
import { PCR_ALLOCATION } from '../attestation/measurement.ts';
import { homeVtpmPool, initHome, type OpenHome, openHome } from '../home/home.ts';
import { refusedChecks, tpmToolsMissing } from '../testing/attestation.ts';
import { baselineFor, openedJob } from '../testing/submission.ts';
import { extendPcr, PCR_RESET_VALUE } from '../tpm/pcr.ts';
import type { VirtualTpm } from '../tpm/swtpm.ts';
import { answerChallenge, challengeRequest } from './attester.ts';
import { agentEvent } from './launcher.ts';

describe('the launcher measures the agent below the agent (real vTPMs)', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('launcher');
  const root = join(tmp.path, 'home');
  let home: OpenHome;
  const tpms: VirtualTpm[] = [];

  before(async () => {
    await initHome(root);
    home = await openHome(root);
  });
  after(async () => {
    for (const t of tpms) await t.destroy();
    await home?.close();
    tmp.cleanup();
  });

  async function launched(): Promise<VirtualTpm> {
    const pooled = await homeVtpmPool(root);
    assert.ok(pooled !== undefined);
    const tpm = await pooled.pool.take();
    tpms.push(tpm);
    return tpm;
  }

  /** Attest a job with `tpm`, after `extra` is extended, sending `log` as the event log. */
  async function attest(
    tpm: VirtualTpm,
    extra: readonly { pcr: number; digest: string }[],
    log: (agentSide: readonly object[]) => readonly object[],
  ): Promise<unknown> {
    const { ticket, key, credentials } = await openedJob(home, 'hello-app');
    const baseline = await baselineFor(home, ticket, { agent: false });
    await tpm.extend([...baseline.events, ...extra]);
    const endpoints = credentials.endpoints(ticket.jobId);
    assert.ok(endpoints.attestationChallenge !== undefined && endpoints.attestationEvidence !== undefined);
    const challenge = await endpoints.attestationChallenge(
      await challengeRequest(tpm, key.publicJwk, ticket.jobId),
    );
    return endpoints.attestationEvidence(
      await answerChallenge(tpm, challenge, key.publicJwk, log(baseline.events)),
    );
  }

  it('hands out each vTPM with the agent, digested from disk, already extended into its PCR', async () => {
    const tpm = await launched();
    const event = await agentEvent();
    assert.deepEqual(tpm.launched, [event]);
    const pcr = String(PCR_ALLOCATION.agent);
    assert.equal(
      (await tpm.readPcrs([PCR_ALLOCATION.agent]))[pcr],
      extendPcr(PCR_RESET_VALUE, event.digest),
      'the launcher extended exactly one event',
    );
    await assert.rejects(tpm.launch([event]), /already launched/);
    // The agent's side of the log, with the launcher's event first, attests.
    const issued = await attest(tpm, [], (agentSide) => [...tpm.launched, ...agentSide]);
    assert.ok(typeof (issued as { token?: unknown }).token === 'string');
  });

  it('refuses an agent that extends its own digest again, or drops the launcher event from its log', async () => {
    const reference = await agentEvent();
    // A modified agent claims the genuine digest a second time: two agent events.
    const again = await launched();
    assert.deepEqual(
      await refusedChecks(
        attest(again, [reference], (agentSide) => [...again.launched, ...agentSide, reference]),
      ),
      ['EVENT_LOG_MALFORMED'],
    );
    // The same, reporting only the event it chose: the log does not replay to the quoted PCR.
    const hidden = await launched();
    assert.deepEqual(
      await refusedChecks(attest(hidden, [reference], (agentSide) => [reference, ...agentSide])),
      ['EVENT_LOG_REPLAY'],
    );
    // A log with no agent event at all (the launcher's left out, nothing extended over it).
    const silent = await launched();
    const checks = await refusedChecks(attest(silent, [], (agentSide) => [...agentSide]));
    assert.ok(checks.includes('EVENT_LOG_REPLAY') && checks.includes('EVENT_LOG_MALFORMED'), `${checks}`);
  });
});
