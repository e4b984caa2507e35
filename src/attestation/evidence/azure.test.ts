import assert from 'node:assert/strict';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  type AzureProvider,
  azureCvmClaims,
  makeAzureProvider,
  makeAzureToken,
  RSA_256,
} from '../../testing/platform-evidence.ts';
import { AzureAttestationVerifier } from './azure.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding } from './verifier.ts';

// Sample evidence only: tokens signed by a test provider key in the claim layout Azure
// Attestation documents for confidential VMs. No real provider was reached.
describe('Azure Attestation tokens', () => {
  const binding = evidenceBinding(
    randomBytes(32),
    createHash('sha256').update('runner key').digest('base64url'),
  );
  const measurement = createHash('sha384').update('cvm image').digest('hex');
  const reference = { attestationTypes: ['sevsnpvm'], measurements: [measurement] };
  const verifier = new AzureAttestationVerifier();
  let provider: AzureProvider;
  let other: AzureProvider;

  before(async () => {
    provider = await makeAzureProvider();
    other = await makeAzureProvider();
  });

  const run = (token: string, over: { provider?: AzureProvider; reference?: unknown; now?: Date } = {}) =>
    verifier.verify(
      { kind: 'azure', token },
      {
        binding,
        anchors: { roots: [], jwks: (over.provider ?? provider).jwks, issuer: provider.issuer },
        reference: 'reference' in over ? over.reference : reference,
        now: over.now ?? new Date(),
      },
    );
  const checks = (a: { failures: readonly { check: string }[] }) => a.failures.map((f) => f.check);
  const token = (over: Partial<Parameters<typeof azureCvmClaims>[0]> = {}, opts = {}) =>
    makeAzureToken(provider, azureCvmClaims({ binding, measurement, ...over }), opts);

  it('affirms a provider-signed token for a compliant, non-debuggable SEV-SNP CVM bound to the nonce', async () => {
    const a = await run(await token());
    assert.deepEqual(a.failures, []);
    assert.equal(a.measurements.measurement, measurement);
    assert.equal(a.claims.attestation_type, 'sevsnpvm');
  });

  it('affirms a TDX confidential VM by its MRTD', async () => {
    const claims = {
      'x-ms-attestation-type': 'tdxvm',
      'x-ms-compliance-status': 'azure-compliant-cvm',
      tdx_mrtd: measurement,
      tdx_td_attributes_debug: false,
      'x-ms-runtime': { nonce: binding.toString('base64url') },
    };
    const a = await run(await makeAzureToken(provider, claims), {
      reference: { attestationTypes: ['tdxvm'], measurements: [measurement] },
    });
    assert.deepEqual(a.failures, []);
  });

  it('refuses a token signed by another provider, or with another algorithm', async () => {
    assert.deepEqual(checks(await run(await token(), { provider: other })), [C.signature]);
    const hs = await makeAzureToken(provider, azureCvmClaims({ binding, measurement }), {
      alg: 'PS256',
      key: (await webcrypto.subtle.generateKey({ ...RSA_256, name: 'RSA-PSS' }, true, ['sign'])).privateKey,
    });
    assert.deepEqual(checks(await run(hs)), [C.signature]);
  });

  it('refuses a token from another issuer even when signed by a trusted key', async () => {
    const t = await makeAzureToken(
      { ...provider, issuer: 'https://attacker.attest.azure.net' },
      azureCvmClaims({ binding, measurement }),
    );
    assert.deepEqual(checks(await run(t)), [C.chainUntrusted]);
  });

  it('refuses an expired or stale token', async () => {
    const old = Math.floor(Date.now() / 1000) - 3600;
    assert.deepEqual(checks(await run(await token({}, { iat: old, exp: old + 60 }))), [C.freshness]);
    assert.deepEqual(checks(await run(await token({}, { iat: old }))), [C.freshness]);
  });

  it('refuses a token bound to another nonce, or bound only by the echoed nonce claim', async () => {
    const other = evidenceBinding(randomBytes(32), 'x'.repeat(43));
    assert.deepEqual(checks(await run(await token({ binding: other }))), [C.binding]);
    const claims = azureCvmClaims({ binding, measurement });
    delete claims['x-ms-runtime'];
    claims.nonce = binding.toString('base64url');
    assert.deepEqual(checks(await run(await makeAzureToken(provider, claims))), [C.binding]);
  });

  it('refuses a debuggable guest, a non-compliant one, and an unknown TEE type', async () => {
    assert.deepEqual(checks(await run(await token({ debuggable: true }))), [C.debug]);
    assert.deepEqual(checks(await run(await token({ compliance: 'none' }))), [C.tcb]);
    assert.ok(checks(await run(await token({ type: 'sgx' }))).includes(C.measurement));
  });

  it('refuses a launch measurement that is not a reference value, and everything without reference values', async () => {
    assert.deepEqual(checks(await run(await token({ measurement: 'ab'.repeat(48) }))), [C.measurement]);
    assert.deepEqual(checks(await run(await token(), { reference: undefined })), [C.measurement]);
  });

  it('refuses a token appraised under a policy the reference values do not name', async () => {
    assert.deepEqual(
      checks(await run(await token(), { reference: { ...reference, policyHashes: ['other'] } })),
      [C.identity],
    );
  });

  it('refuses malformed and oversized tokens, and a missing provider', async () => {
    for (const t of ['', 'a.b.c', 'x'.repeat(70_000)]) assert.deepEqual(checks(await run(t)), [C.malformed]);
    const a = await verifier.verify(
      { kind: 'azure', token: await token() },
      { binding, anchors: { roots: [] }, reference, now: new Date() },
    );
    assert.deepEqual(checks(a), [C.chainUntrusted]);
  });
});
