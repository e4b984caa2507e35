/**
 * A runner host quoting its boot state to a control plane over its port (embedded or HTTP):
 * before it claims a job, and whenever the control plane finds its last quote too old. When the
 * last quote is fresh the control plane says so and the host TPM is not even opened.
 */
import { HOST_PCRS, hostQuoteQualifyingData } from '../attestation/host-attestation.ts';
import { signHostRequest } from '../attestation/request-proof.ts';
import type { ControlPlane, HostQuoteBody, HostQuoteResult } from '../control-plane/control-plane.ts';
import type { HostTpm } from '../tpm/host-tpm.ts';
import type { RunnerHost } from './credentials.ts';

/**
 * Quote the host's PCRs 0–7 with its boot log for the control plane, unless it says the last one
 * is fresh.
 * @returns the appraisal, or undefined when no quote was due
 * @throws GatehouseError as the control plane answers (UNAUTHORIZED, BAD_INPUT, TPM_UNAVAILABLE)
 */
export async function quoteHostBootState(
  cp: ControlPlane,
  host: RunnerHost,
  openTpm: () => Promise<HostTpm>,
): Promise<HostQuoteResult | undefined> {
  const challenge = await cp.hostQuoteChallenge(
    await signHostRequest(host.signer, host.name, { act: 'host-quote', request: {} }),
  );
  if (challenge.fresh) return undefined;
  const tpm = await openTpm();
  const nonce = Buffer.from(challenge.nonce, 'base64');
  const q = await tpm.quote(hostQuoteQualifyingData(nonce, host.name), HOST_PCRS);
  const body: HostQuoteBody = {
    session: challenge.session,
    quote: q.attest.toString('base64'),
    signature: q.signature.toString('base64'),
    pcrs: q.pcrs,
    boot_log: (await tpm.bootLog()).toString('base64'),
  };
  return cp.hostQuote(
    body,
    await signHostRequest(host.signer, host.name, { act: 'host-quote', request: body }),
  );
}
