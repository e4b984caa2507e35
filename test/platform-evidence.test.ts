/**
 * Cloud and TEE evidence through a real home: the authority the home wires reads the platform
 * roots from the home and the reference values from the signed bundle, and a runner's vTPM quote
 * with an SEV-SNP report beside it earns a token with both submods. The SEV-SNP report and its
 * AMD chain are sample evidence built to the published layout (no SEV-SNP machine is used).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import type { AttestationEndpoints } from '../src/agent/attester.ts';
import { platformRootsDir } from '../src/attestation/evidence/trust-anchors.ts';
import { evidenceBinding, reportData64 } from '../src/attestation/evidence/verifier.ts';
import { ReferenceValueService } from '../src/attestation/reference-values.ts';
import { jwkThumbprint } from '../src/attestation/token.ts';
import { initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { loadSecuritySigner, securityKeyPath, trustedSecurityKeys } from '../src/home/security-role.ts';
import { refusedChecks, tpmToolsMissing } from '../src/testing/attestation.ts';
import { makeSnpChain, makeSnpReport, type SnpChain } from '../src/testing/platform-evidence.ts';
import { baselineFor, openedJob, registerProject } from '../src/testing/submission.ts';
import { tempDir } from './helpers.ts';

describe('platform evidence through a home', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('platform-home');
  const root = join(tmp.path, 'home');
  const measurement = createHash('sha384').update('confidential runner image').digest();
  let home: OpenHome;
  let snp: SnpChain;

  before(async () => {
    await initHome(root, { examples: false });
    snp = await makeSnpChain();
    mkdirSync(join(platformRootsDir(root), 'sev-snp'), { recursive: true });
    writeFileSync(join(platformRootsDir(root), 'sev-snp', 'ark-milan.pem'), snp.ark.cert.toString());
    home = await openHome(root);
    // The security role publishes the SEV-SNP launch measurement beside the measured installation.
    const keys = join(root, 'keys');
    const service = new ReferenceValueService({
      store: home.store.attestation,
      trustedKeys: await trustedSecurityKeys(keys),
    });
    const current = await service.current();
    const values = {
      ...current.values,
      platforms: { 'sev-snp': { measurements: [measurement.toString('hex')] } },
    };
    await service.publishIfChanged(values, await loadSecuritySigner(securityKeyPath(keys), { home: root }));
    await registerProject(home, 'tee-app');
  });
  after(async () => {
    await home?.close();
    tmp.cleanup();
  });

  /** Attest a job with the home's vTPM attester, adding an SEV-SNP report bound to the challenge. */
  async function attestWithReport(): Promise<string> {
    const { ticket, key, credentials } = await openedJob(home, 'tee-app');
    const endpoints = credentials.endpoints(ticket.jobId);
    let nonce: string | undefined;
    const withReport: AttestationEndpoints = {
      attest: (r) => endpoints.attest(r),
      attestationChallenge: async (body) => {
        const challenge = await endpoints.attestationChallenge?.(body);
        if (challenge === undefined) throw new Error('no TPM attestation');
        nonce = challenge.nonce;
        return challenge;
      },
      attestationEvidence: async (body) => {
        const report = await makeSnpReport(snp, {
          reportData: reportData64(evidenceBinding(Buffer.from(nonce ?? '', 'base64'), key.thumbprint)),
          measurement,
          chipId: snp.chipId,
          tcb: snp.tcb,
        });
        const platform_evidence = [
          {
            kind: 'sev-snp',
            report: report.toString('base64'),
            vcek: snp.vcek.der.toString('base64'),
            chain: [snp.ask.der.toString('base64')],
          },
        ];
        const issued = await endpoints.attestationEvidence?.({ ...(body as object), platform_evidence });
        if (issued === undefined) throw new Error('no TPM attestation');
        return issued;
      },
    };
    const attester = home.attester();
    try {
      const { token } = await attester.attest({
        jobId: ticket.jobId,
        baseline: await baselineFor(home, ticket, { agent: false }),
        runnerKey: key.publicJwk,
        endpoints: withReport,
      });
      assert.equal(
        jwkThumbprint(key.publicJwk.x ?? '', key.publicJwk.y ?? ''),
        (decodeJwt(token).cnf as { jkt: string }).jkt,
      );
      return token;
    } finally {
      await attester.destroy();
    }
  }

  it('issues a token with tpm, image and sev-snp submods', async () => {
    const claims = decodeJwt(await attestWithReport()) as {
      submods: Record<string, { 'ear.status': string; 'ear.appraisal-policy-id': string }>;
      gatehouse: { evidence_types: string[] };
    };
    assert.deepEqual(Object.keys(claims.submods).sort(), ['image', 'sev-snp', 'tpm']);
    assert.equal(claims.submods['sev-snp']?.['ear.status'], 'affirming');
    assert.match(
      claims.submods['sev-snp']?.['ear.appraisal-policy-id'] ?? '',
      /^gatehouse:reference-values:v2#/,
    );
    assert.deepEqual(claims.gatehouse.evidence_types, ['tpm', 'software-measurement', 'sev-snp']);
  });

  it('refuses the report once its root is taken out of the home, without a restart', async () => {
    rmSync(join(platformRootsDir(root), 'sev-snp', 'ark-milan.pem'));
    assert.deepEqual(await refusedChecks(attestWithReport()), ['EVIDENCE_CHAIN_UNTRUSTED']);
  });
});
