/**
 * Host attestation with a real host TPM stand-in of the test's own (a private swtpm, so that
 * drifting its boot PCRs touches no other test): enrollment, vTPM EK certificates chained to the
 * host TPM, the attacker who can read every file of a home, a drifted host, a revoked host.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.ts';
import '../signing/reflect-metadata-shim.ts';
import * as x509 from '@peculiar/x509';
import { answerChallenge, challengeRequest } from '../agent/attester.ts';
import { hostChainOf, hostEkTrustOf, revokeEkCa, trustManufacturerRoot } from '../home/host-tpm-home.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { keyIdOf, signSecurityAct } from '../signing/security-act.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { Store } from '../store/store.ts';
import { refusedChecks, tpmToolsMissing } from '../testing/attestation.ts';
import { parseEkCaCrl, verifyEkCertificatePath } from '../tpm/ek-certificate.ts';
import { parseEventLog, replayBootLog, writeEventLog } from '../tpm/event-log.ts';
import { HostTpm, manufactureHostTpmStandIn, stopStandIn } from '../tpm/host-tpm.ts';
import { HostTpmVtpmCa } from '../tpm/host-vtpm-ca.ts';
import { ekCertificateExtensions, resignCertificate } from '../tpm/manufacturer.ts';
import { ensurePlatformCa, platformCaPaths } from '../tpm/platform-ca.ts';
import { parseCertifyAttest } from '../tpm/structures.ts';
import { manufactureVtpm, VirtualTpm } from '../tpm/swtpm.ts';
import { AttestationAuthority } from './authority.ts';
import { HostAttestation } from './host-attestation.ts';
import { HostRegistry } from './hosts.ts';
import { jobBindingDigest, type MeasurementEvent } from './measurement.ts';
import { generateRunnerKey, jwkThumbprint } from './token.ts';

x509.cryptoProvider.set(globalThis.crypto);

const JOB = 'job-host-1';
const JOB_NONCE = randomBytes(32).toString('base64');
const d = (s: string) => createHash('sha256').update(s).digest('hex');
const EVENTS: MeasurementEvent[] = [
  { pcr: 8, type: 'sandbox-profile', name: 'bubblewrap', digest: d('profile') },
  { pcr: 9, type: 'toolchain', name: '/usr/bin/sh', digest: d('sh') },
  { pcr: 10, type: 'agent', name: 'agent', digest: d('agent') },
  { pcr: 11, type: 'job', name: JOB, digest: jobBindingDigest(JOB, JOB_NONCE) },
];

describe('the boot event log (TCG PC Client crypto-agile format)', () => {
  it('round-trips and replays', () => {
    const log = writeEventLog([
      { pcr: 0, type: 8, data: Buffer.from('fw') },
      { pcr: 4, type: 0xd, data: Buffer.from('/boot/vmlinuz'), digest: d('kernel') },
    ]);
    const parsed = parseEventLog(log);
    assert.equal(parsed.events.length, 2);
    const pcr4 = createHash('sha256')
      .update(Buffer.alloc(32))
      .update(Buffer.from(d('kernel'), 'hex'))
      .digest('hex');
    assert.equal(replayBootLog(parsed.events)['4'], pcr4);
  });

  it('refuses malformed logs', () => {
    const good = writeEventLog([{ pcr: 0, type: 8, data: Buffer.from('fw') }]);
    const cases: [string, Buffer][] = [
      ['truncated', good.subarray(0, good.length - 1)],
      ['no Spec ID event', Buffer.concat([Buffer.alloc(4, 1), good.subarray(4)])],
      ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
      [
        'PCR 24',
        Buffer.from(good).fill(
          24,
          good.length - 2 - 4 - 32 - 2 - 4 - 4 - 4,
          good.length - 2 - 4 - 32 - 2 - 4 - 4 - 3,
        ),
      ],
    ];
    for (const [what, bytes] of cases) assert.throws(() => parseEventLog(bytes), /boot event log/, what);
  });
});

describe('host attestation with a host TPM stand-in', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('host-attest');
  const dir = tmp.path;
  const standIn = join(dir, 'host-tpm');
  let hostTpm: HostTpm;
  let store: Store;
  let hosts: HostRegistry;
  let attestation: HostAttestation;
  let authority: AttestationAuthority;
  const security = EphemeralSigner.generate();
  const hostKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  const publicKey = { kty: 'EC', crv: 'P-256', x: hostKey.x ?? '', y: hostKey.y ?? '' };
  const vtpms: VirtualTpm[] = [];
  const jobs = async (id: string) => {
    if (id !== JOB) throw new Error(`no job ${id}`);
    return { nonce: JOB_NONCE, runner: { host: 'h1', pool: 'local' } };
  };

  async function enroll(content: Record<string, unknown>): Promise<void> {
    const version = await hosts.nextVersion('h1');
    await hosts.enroll(
      'h1',
      version,
      content,
      await signSecurityAct({ kind: 'host', name: 'h1', version, content }, security),
    );
  }

  async function vtpm(options: Parameters<typeof manufactureVtpm>[1]): Promise<VirtualTpm> {
    const state = join(dir, `vtpm-${vtpms.length}`);
    await manufactureVtpm(state, options);
    const t = await VirtualTpm.start(state);
    vtpms.push(t);
    await t.extend(EVENTS);
    return t;
  }

  async function attest(t: VirtualTpm) {
    const key = await generateRunnerKey();
    const challenge = await authority.challenge(await challengeRequest(t, key.publicJwk, JOB));
    return authority.evidence(await answerChallenge(t, challenge, key.publicJwk, EVENTS), jobs);
  }

  before(async () => {
    await manufactureHostTpmStandIn(standIn);
    hostTpm = await HostTpm.open({ kind: 'stand-in', dir: standIn });
    const home = join(dir, 'home');
    await trustManufacturerRoot(home, hostTpm.manufacturerRoot() ?? '', hostTpm.manufacturerCrls());
    store = SqliteStore.open(join(dir, 'db.sqlite'));
    const trustedKeys = [{ keyId: keyIdOf(security.publicKeySpki()), publicKeyPem: security.publicKeyPem() }];
    hosts = new HostRegistry({ acts: store.acts, trustedKeys, tokens: store.tokens });
    attestation = new HostAttestation({ store: store.attestation, trust: hostEkTrustOf(home) });
    authority = new AttestationAuthority({
      signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
      keyId: 'k1',
      issuer: 'https://gatehouse.test/attestation',
      referenceValues: {
        sandboxProfile: [d('profile')],
        agent: [d('agent')],
        toolchain: { '/usr/bin/sh': [d('sh')] },
      },
      tokens: store.tokens,
      trustedEkCas: () => [],
      hostChain: hostChainOf(hosts, attestation),
    });
  });

  after(async () => {
    for (const t of vtpms) await t.destroy();
    await stopStandIn(standIn);
    await store?.close();
    tmp.cleanup();
  });

  it('enrolls the host: EK path to the manufacturer root, activated AK, boot quote, certified vTPM CA key', async () => {
    const { tpm, events } = await attestation.appraiseForEnrollment(
      hostTpm,
      jwkThumbprint(publicKey.x, publicKey.y),
    );
    assert.equal(tpm.ekPath.length, 2);
    assert.match(tpm.ekPath[1] ?? '', /Root CA/);
    assert.deepEqual(Object.keys(tpm.bootPcrs).sort(), ['0', '1', '2', '3', '4', '5', '6', '7']);
    assert.ok(
      events.some((e) => e.pcr === 5),
      'the kernel command line is measured',
    );
    await enroll({ publicKey, pool: 'local', attestation: 'tpm', tpm });
    const host = await hosts.get('h1');
    assert.equal((await attestation.requote(host as never, hostTpm, { force: true })).status, 'trusted');
  });

  it('parses a TPM2_Certify strictly', async () => {
    const { attest } = await hostTpm.certifyVtpmCaKey(Buffer.alloc(32, 7));
    const info = parseCertifyAttest(attest);
    assert.deepEqual(info.extraData, Buffer.alloc(32, 7));
    const cases: [string, Buffer][] = [
      ['trailing byte', Buffer.concat([attest, Buffer.from([0])])],
      ['truncated', attest.subarray(0, attest.length - 1)],
      ['foreign magic', Buffer.concat([Buffer.from([0xff, 0x54, 0x43, 0x48]), attest.subarray(4)])],
      [
        'a quote, not a certify',
        Buffer.concat([attest.subarray(0, 4), Buffer.from([0x80, 0x18]), attest.subarray(6)]),
      ],
    ];
    for (const [what, bytes] of cases)
      assert.throws(() => parseCertifyAttest(bytes), { code: 'BAD_INPUT' }, what);
  });

  it('refuses an EK path with a missing intermediate, an untrusted root, or a revoked CA', async () => {
    const ek = await hostTpm.ekCertificate();
    const inter = new X509Certificate((await hostTpm.ekIntermediates())[0] ?? '');
    const root = new X509Certificate(hostTpm.manufacturerRoot() ?? '');
    const base = {
      anchors: [root],
      intermediates: [inter],
      crls: [],
      revokedCas: new Set<string>(),
      now: new Date(),
    };
    assert.ok(verifyEkCertificatePath(ek, base));
    assert.throws(() => verifyEkCertificatePath(ek, { ...base, intermediates: [] }), /not a trusted EK CA/);
    assert.throws(
      () => verifyEkCertificatePath(ek, { ...base, anchors: [] }),
      /not issued by a trusted EK CA|not a trusted/,
    );
    const fp = createHash('sha256').update(inter.raw).digest('hex');
    assert.throws(() => verifyEkCertificatePath(ek, { ...base, revokedCas: new Set([fp]) }), /is revoked/);
    const crl = parseEkCaCrl(hostTpm.manufacturerCrls()[0] ?? '', 'crl');
    assert.ok(verifyEkCertificatePath(ek, { ...base, crls: [crl] }));
    // A CRL listing the intermediate, not signed by the root, is refused rather than ignored.
    const keys = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
      'sign',
      'verify',
    ]);
    const forged = await x509.X509CrlGenerator.create({
      issuer: new x509.X509Certificate(root.raw).subject,
      thisUpdate: new Date(Date.now() - 1000),
      nextUpdate: new Date(Date.now() + 1e9),
      entries: [{ serialNumber: inter.serialNumber }],
      signingKey: keys.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    assert.throws(
      () => verifyEkCertificatePath(ek, { ...base, crls: [parseEkCaCrl(forged.toString('pem'), 'forged')] }),
      /does not verify|revoked/,
    );
  });

  it('accepts a vTPM whose EK certificate the host TPM issued, and names the host in the token', async () => {
    const issued = await attest(await vtpm({ ekIssuer: await HostTpmVtpmCa.open(hostTpm) }));
    const claims = await authority.verifyToken(issued.token, JOB);
    assert.equal(claims.gatehouse.tpm?.host, 'h1');
  });

  it('refuses vTPMs an attacker who reads every file of the home can make', async () => {
    // The old file-based platform CA: its key is a file, so the attacker has it.
    await ensurePlatformCa(join(dir, 'stolen-ca'));
    const old = await vtpm({ platformCaDir: join(dir, 'stolen-ca') });
    const key = await generateRunnerKey();
    assert.deepEqual(
      await refusedChecks(authority.challenge(await challengeRequest(old, key.publicJwk, JOB))),
      ['EK_CERT_UNTRUSTED'],
    );
    // Planting the stolen CA among the trusted EK CA files changes nothing for runner EKs.
    await writeFile(
      join(dir, 'home', 'trusted-ek-cas', 'planted.pem'),
      await readFile(platformCaPaths(join(dir, 'stolen-ca')).cert),
    );
    assert.deepEqual(
      await refusedChecks(authority.challenge(await challengeRequest(old, key.publicJwk, JOB))),
      ['EK_CERT_UNTRUSTED'],
    );
    // A certificate naming the host's vTPM CA (same issuer, same authority key id, read from the
    // enrollment) but signed by a software key.
    const real = await HostTpmVtpmCa.open(hostTpm);
    const forger = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
      'sign',
      'verify',
    ]);
    const forged = await vtpm({
      ekIssuer: {
        issue: async (ek) => {
          const draft = await x509.X509CertificateGenerator.create({
            serialNumber: '01',
            subject: '',
            issuer: `CN=gatehouse vTPM EK CA ${real.keyId.slice(0, 16)}, O=gatehouse runner host`,
            notBefore: new Date(Date.now() - 60_000),
            notAfter: new Date(Date.now() + 3600_000),
            publicKey: ek.export({ format: 'der', type: 'spki' }),
            signingKey: forger.privateKey,
            signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
            extensions: await ekCertificateExtensions(
              ek,
              { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:1' },
              real.keyId,
            ),
          });
          return resignCertificate(Buffer.from(draft.rawData), async (tbs) =>
            Buffer.from(
              await globalThis.crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, forger.privateKey, tbs),
            ),
          );
        },
      },
    });
    assert.deepEqual(
      await refusedChecks(authority.challenge(await challengeRequest(forged, key.publicJwk, JOB))),
      ['EK_CERT_UNTRUSTED'],
    );
  });

  it('quarantines a host whose boot PCR changed, refuses its vTPMs and its tokens, until the security role clears it', async () => {
    const genuine = await vtpm({ ekIssuer: await HostTpmVtpmCa.open(hostTpm) });
    const before = await attest(genuine);
    // A firmware update and a reboot: PCR 0 measures another firmware; the log explains it.
    await writeFile(join(standIn, 'firmware'), 'gatehouse host TPM stand-in firmware 2 (unreviewed)\n');
    await stopStandIn(standIn);
    const host = await hosts.get('h1');
    const record = await attestation.requote(host as never, hostTpm, { force: true });
    assert.equal(record.status, 'quarantined');
    assert.match(record.reason ?? '', /HOST_BOOT_STATE: host boot PCR 0 .*firmware 2 \(unreviewed\)/);
    assert.doesNotMatch(record.reason ?? '', /EVENT_LOG_REPLAY/);
    const key = await generateRunnerKey();
    assert.deepEqual(
      await refusedChecks(authority.challenge(await challengeRequest(genuine, key.publicJwk, JOB))),
      ['HOST_QUARANTINED'],
    );
    // The token issued before the drift is revoked when it is used.
    await assert.rejects(authority.verifyToken(before.token, JOB), { code: 'TOKEN_REVOKED' });
    // A quarantine is not lifted by quoting again with the same drifted state.
    assert.equal((await attestation.requote(host as never, hostTpm, { force: true })).status, 'quarantined');
    // Cleared: the security role enrolls the host again with the boot state it accepts.
    const accepted = { ...(host?.tpm as object), bootPcrs: record.pcrs };
    await enroll({ publicKey, pool: 'local', attestation: 'tpm', tpm: accepted });
    const cleared = await hosts.get('h1');
    assert.equal((await attestation.requote(cleared as never, hostTpm)).status, 'trusted');
  });

  it("revokes a revoked host's running job's token", async () => {
    const issued = await attest(await vtpm({ ekIssuer: await HostTpmVtpmCa.open(hostTpm) }));
    assert.ok(await authority.verifyToken(issued.token, JOB));
    const current = await hosts.get('h1');
    await enroll({ publicKey, pool: 'local', attestation: 'tpm', tpm: current?.tpm, revoked: true });
    await assert.rejects(authority.verifyToken(issued.token, JOB), { code: 'TOKEN_REVOKED' });
    const again = await vtpm({ ekIssuer: await HostTpmVtpmCa.open(hostTpm) });
    const key = await generateRunnerKey();
    assert.deepEqual(
      await refusedChecks(authority.challenge(await challengeRequest(again, key.publicJwk, JOB))),
      ['HOST_UNTRUSTED'],
    );
  });

  it('refuses to enroll a host TPM whose EK path passes through a CA the security role revoked', async () => {
    const home = join(dir, 'home');
    const pem = join(dir, 'intermediate.pem');
    await writeFile(pem, (await hostTpm.ekIntermediates())[0] ?? '');
    assert.equal((await revokeEkCa(home, pem)).added, true);
    assert.equal((await revokeEkCa(home, pem)).added, false);
    const thumb = jwkThumbprint(publicKey.x, publicKey.y);
    assert.deepEqual(await refusedChecks(attestation.appraiseForEnrollment(hostTpm, thumb)), [
      'EK_CERT_UNTRUSTED',
    ]);
    await assert.rejects(revokeEkCa(home, 'nope'), { code: 'BAD_INPUT' });
  });

  it('quarantines a host whose PCRs were extended outside its boot log', async () => {
    const current = await hosts.get('h1');
    await enroll({ publicKey, pool: 'local', attestation: 'tpm', tpm: current?.tpm });
    const host = await hosts.get('h1');
    assert.equal((await attestation.requote(host as never, hostTpm, { force: true })).status, 'trusted');
    await hostTpm.extend(3, d('bootkit'));
    const record = await attestation.requote(host as never, hostTpm, { force: true });
    assert.equal(record.status, 'quarantined');
    assert.match(record.reason ?? '', /EVENT_LOG_REPLAY: the host's boot event log does not replay to PCR 3/);
  });
});
