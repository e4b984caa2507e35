import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.ts';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { KeyProtection } from '../signing/key-file.ts';
import { tpmToolsMissing } from '../testing/attestation.ts';
import { kdfa, kdfe, makeCredential, parseCredentialBlob } from './credential.ts';
import { EkCertificateError, verifyEkCertificate } from './ek-certificate.ts';
import { HostTpm, manufactureHostTpmStandIn, stopStandIn } from './host-tpm.ts';
import {
  ensurePlatformCa,
  platformCaPaths,
  sealPlainPlatformCaKey,
  withPlatformCaKeyForTool,
} from './platform-ca.ts';
import { akAttributeProblem, appraiseQuote } from './quote.ts';
import { HostTpmStateSealer } from './state-sealer.ts';
import {
  akQualifiedNameUnderEk,
  objectName,
  parseAttest,
  parseSignature,
  parseTpm2bPublic,
  TPMA_OBJECT,
  type TpmtPublic,
} from './structures.ts';
import { manufactureVtpm, VirtualTpm, VTPM_HANDLES, VTPM_SEALED_KEY_FILE, VtpmPool } from './swtpm.ts';
import { TpmClient } from './tpm-client.ts';

const skip = tpmToolsMissing();

const PCRS = [8, 9, 10, 11];
const KEK: KeyProtection = { kind: 'kek', kek: randomBytes(32) };
const flip = (b: Buffer, i: number): Buffer => {
  const c = Buffer.from(b);
  c[i] = (c[i] ?? 0) ^ 0x01;
  return c;
};

describe('TPM structures and quote verification with a real vTPM', { skip }, () => {
  const tmp = tempDir('tpm-test');
  const dir = tmp.path;
  let tpm: VirtualTpm;
  let other: VirtualTpm;
  let caCert: X509Certificate;

  before(async () => {
    // The platform CA key is sealed, as in a home: manufacturing opens it for swtpm_localca.
    await ensurePlatformCa(join(dir, 'ca'), undefined, KEK);
    caCert = new X509Certificate(await readFile(platformCaPaths(join(dir, 'ca')).cert));
    const pool = new VtpmPool(join(dir, 'pool'), {
      platformCaDir: join(dir, 'ca'),
      platformCaProtection: KEK,
      pcrBanks: ['sha1', 'sha256'],
    });
    await manufactureVtpm(join(dir, 'a'), {
      platformCaDir: join(dir, 'ca'),
      platformCaProtection: KEK,
      pcrBanks: ['sha1', 'sha256'],
    });
    tpm = await VirtualTpm.start(join(dir, 'a'));
    other = await pool.take();
    await tpm.extend([
      { pcr: 8, digest: 'aa'.repeat(32) },
      { pcr: 11, digest: 'bb'.repeat(32) },
    ]);
  });

  after(async () => {
    await tpm?.destroy();
    await other?.destroy();
    tmp.cleanup();
  });

  it('keeps the platform CA key sealed, and hands swtpm_localca a copy that is gone afterwards', async () => {
    const ca = join(dir, 'ca');
    const onDisk = await readFile(platformCaPaths(ca).key, 'utf8');
    assert.match(onDisk, /BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY/);
    let copy = '';
    await withPlatformCaKeyForTool(ca, KEK, async (path) => {
      copy = path;
      assert.match(await readFile(path, 'utf8'), /BEGIN PRIVATE KEY/);
      assert.equal((await stat(join(path, '..'))).mode & 0o777, 0o700);
    });
    assert.notEqual(copy, platformCaPaths(ca).key);
    assert.equal(existsSync(join(copy, '..')), false, 'the decrypted copy is deleted');
    // Without the secret, or with another one, nothing is manufactured.
    for (const protection of [{ kind: 'none' } as const, { kind: 'kek', kek: randomBytes(32) } as const]) {
      await assert.rejects(
        manufactureVtpm(join(dir, 'refused'), { platformCaDir: ca, platformCaProtection: protection }),
        (e: unknown) => isGatehouseError(e) && e.code === 'KEY_UNAVAILABLE',
      );
    }
    // A plain key (a home from before sealing) is used only where the home does not seal, and
    // is sealed in place when it does.
    const legacy = join(dir, 'legacy-ca');
    await ensurePlatformCa(legacy);
    await assert.rejects(
      withPlatformCaKeyForTool(legacy, KEK, async () => undefined),
      (e: unknown) => isGatehouseError(e) && e.code === 'BAD_CONFIG',
    );
    assert.equal(
      await withPlatformCaKeyForTool(legacy, { kind: 'none' }, async (p) => p),
      platformCaPaths(legacy).key,
    );
    assert.equal(await sealPlainPlatformCaKey(legacy, KEK), true);
    assert.match(
      await readFile(platformCaPaths(legacy).key, 'utf8'),
      /BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY/,
    );
    await withPlatformCaKeyForTool(legacy, KEK, async (p) =>
      assert.match(await readFile(p, 'utf8'), /BEGIN PRIVATE KEY/),
    );
  });

  it('reads the AK as a restricted signing key and the EK as not one', async () => {
    const ak = parseTpm2bPublic(await tpm.akPublic());
    assert.equal(akAttributeProblem(ak), undefined);
    const ekFile = join(dir, 'ek.pub');
    await tpm.tool('tpm2_readpublic', ['-c', '0x81010001', '-o', ekFile, '-f', 'tss']);
    const ek = parseTpm2bPublic(await readFile(ekFile));
    assert.ok((ek.objectAttributes & TPMA_OBJECT.decrypt) !== 0);
    assert.match(akAttributeProblem(ek) ?? '', /missing sign/);
  });

  it('verifies the EK certificate against the platform CA, and refuses it under another CA', async () => {
    const der = await tpm.ekCertificate();
    const v = verifyEkCertificate(der, [caCert], new Date());
    assert.equal(v.tpm.model, 'swtpm');
    assert.equal(v.publicKey.asymmetricKeyType, 'rsa');
    const otherDir = join(dir, 'ca2');
    await ensurePlatformCa(otherDir);
    const otherCa = new X509Certificate(await readFile(platformCaPaths(otherDir).cert));
    assert.throws(
      () => verifyEkCertificate(der, [otherCa], new Date()),
      (e: unknown) => e instanceof EkCertificateError && e.reason === 'untrusted',
    );
    assert.throws(
      () => verifyEkCertificate(Buffer.concat([der, Buffer.from([0])]), [caCert], new Date()),
      (e: unknown) => e instanceof EkCertificateError,
    );
  });

  it('makes a credential that only the TPM holding the EK activates, for the named AK', async () => {
    const ek = verifyEkCertificate(await tpm.ekCertificate(), [caCert], new Date()).publicKey;
    const ak = parseTpm2bPublic(await tpm.akPublic());
    const secret = Buffer.alloc(32, 7);
    const blob = makeCredential(ek, objectName(ak), secret);
    assert.deepEqual(await tpm.activateCredential(blob), secret);
    // Another TPM (its own EK) cannot recover it.
    await assert.rejects(other.activateCredential(blob), (e: unknown) =>
      isGatehouseError(e, 'TPM_UNAVAILABLE'),
    );
    // Bound to the AK's name: a credential for another AK name fails the TPM's integrity check.
    const otherAk = parseTpm2bPublic(await other.akPublic());
    await assert.rejects(tpm.activateCredential(makeCredential(ek, objectName(otherAk), secret)));
  });

  it('verifies a genuine quote, and names the check each tampering breaks', async () => {
    const ak = parseTpm2bPublic(await tpm.akPublic());
    const qd = createHash('sha256').update('nonce').digest();
    const { attest, signature } = await tpm.quote(qd, PCRS);
    const values = await tpm.readPcrs(PCRS);
    const reported = new Map(Object.entries(values).map(([k, v]) => [Number(k), Buffer.from(v, 'hex')]));
    const ok = appraiseQuote(attest, signature, { ak, qualifyingData: qd, pcrs: PCRS, reported });
    assert.deepEqual(ok.failures, []);
    assert.equal(ok.quote?.resetCount, parseAttest(attest).resetCount);

    const codes = (
      a: Buffer,
      s: Buffer,
      o: Partial<{ qd: Buffer; pcrs: number[]; reported: ReadonlyMap<number, Buffer> }> = {},
    ) =>
      appraiseQuote(a, s, {
        ak,
        qualifyingData: o.qd ?? qd,
        pcrs: o.pcrs ?? PCRS,
        reported: o.reported ?? reported,
      }).failures.map((f) => f.check);

    assert.deepEqual(codes(attest, signature, { qd: createHash('sha256').update('other').digest() }), [
      'QUOTE_QUALIFYING_DATA',
    ]);
    assert.ok(codes(flip(attest, attest.length - 1), signature).includes('QUOTE_SIGNATURE'));
    assert.deepEqual(codes(attest, flip(signature, signature.length - 1)), ['QUOTE_SIGNATURE']);
    const bad = new Map<number, Buffer>(reported);
    bad.set(8, flip(reported.get(8) ?? Buffer.alloc(32), 0));
    assert.deepEqual(codes(attest, signature, { reported: bad }), ['QUOTE_PCR_DIGEST']);
    assert.deepEqual(codes(attest, signature, { pcrs: [8, 9, 10, 11, 12] }), ['QUOTE_PCR_SELECTION']);
    assert.deepEqual(codes(Buffer.concat([attest, Buffer.from([0])]), signature), ['QUOTE_MALFORMED']);
    assert.ok(codes(attest, Buffer.concat([signature, Buffer.from([0])])).includes('QUOTE_SIGNATURE'));
    const wrongMagic = Buffer.from(attest);
    wrongMagic.writeUInt32BE(0xff544348, 0);
    assert.ok(codes(wrongMagic, signature).includes('QUOTE_MAGIC'));

    const missing = await tpm.quote(qd, [8, 9, 10]);
    assert.deepEqual(codes(missing.attest, missing.signature), ['QUOTE_PCR_SELECTION']);
    const sha1 = await tpm.quote(qd, PCRS, 'sha1');
    const sha1Codes = codes(sha1.attest, sha1.signature);
    assert.ok(sha1Codes.includes('QUOTE_HASH_ALGORITHM') && sha1Codes.includes('QUOTE_PCR_SELECTION'));
    // A quote by another TPM's AK does not verify with this AK.
    const foreign = await other.quote(qd, PCRS);
    assert.ok(codes(foreign.attest, foreign.signature).includes('QUOTE_SIGNATURE'));
  });

  it("derives the AK's qualified name from the EK certificate, and refuses a quote naming another signer", async () => {
    const ak = parseTpm2bPublic(await tpm.akPublic());
    const ekKey = verifyEkCertificate(await tpm.ekCertificate(), [caCert], new Date()).publicKey;
    const expected = akQualifiedNameUnderEk(ekKey, ak);
    assert.ok(expected !== undefined, 'the TCG EK template is derivable from the certificate');
    const qd = createHash('sha256').update('qualified').digest();
    const { attest, signature } = await tpm.quote(qd, PCRS);
    // The TPM names its signer by the qualified name, not the Name: exactly the derived one.
    assert.deepEqual(parseAttest(attest).qualifiedSigner, expected);
    assert.notDeepEqual(parseAttest(attest).qualifiedSigner, objectName(ak));
    const reported = new Map(
      Object.entries(await tpm.readPcrs(PCRS)).map(([k, v]) => [Number(k), Buffer.from(v, 'hex')]),
    );
    const codes = (a: Buffer, s: Buffer, signer: TpmtPublic, qs: Buffer | undefined) =>
      appraiseQuote(a, s, {
        ak: signer,
        qualifyingData: qd,
        pcrs: PCRS,
        reported,
        qualifiedSigner: qs,
      }).failures.map((f) => f.check);
    assert.deepEqual(codes(attest, signature, ak, expected), []);
    // Tampered: the qualifiedSigner bytes changed (the signature breaks too; each is named).
    const at = 2 + 4 + 2 + 2 + 1; // magic, type, the name's size and algorithm: a digest byte
    const tampered = codes(flip(attest, at), signature, ak, expected);
    assert.ok(
      tampered.includes('QUOTE_QUALIFIED_SIGNER') && tampered.includes('QUOTE_SIGNATURE'),
      `${tampered}`,
    );
    // Around the signature: a restricted signing key in the same TPM but not the AK under its
    // EK (a primary of the owner hierarchy) makes a quote that verifies with its own public area;
    // only the qualified name says it is not the certified EK's AK.
    const ctx = join(dir, 'rogue.ctx');
    await tpm.tool('tpm2_createprimary', [
      '-C',
      'o',
      '-g',
      'sha256',
      '-G',
      'ecc256:ecdsa-sha256:null',
      '-a',
      'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign',
      '-c',
      ctx,
    ]);
    const [pubFile, msg, sig] = ['rogue.pub', 'rogue.msg', 'rogue.sig'].map((n) => join(dir, n)) as [
      string,
      string,
      string,
    ];
    await tpm.tool('tpm2_readpublic', ['-c', ctx, '-o', pubFile, '-f', 'tss']);
    await tpm.tool('tpm2_quote', [
      '-c',
      ctx,
      '-l',
      'sha256:8,9,10,11',
      '-q',
      qd.toString('hex'),
      '-m',
      msg,
      '-s',
      sig,
      '-g',
      'sha256',
    ]);
    await tpm.tool('tpm2_flushcontext', ['-t']);
    const rogue = parseTpm2bPublic(await readFile(pubFile));
    assert.equal(akAttributeProblem(rogue), undefined);
    const rogueQuote = [await readFile(msg), await readFile(sig)] as const;
    assert.deepEqual(
      codes(rogueQuote[0], rogueQuote[1], rogue, undefined),
      [],
      'a valid quote by its own key',
    );
    assert.deepEqual(codes(rogueQuote[0], rogueQuote[1], rogue, akQualifiedNameUnderEk(ekKey, rogue)), [
      'QUOTE_QUALIFIED_SIGNER',
    ]);
    // An EK that is not of the TCG template: its AK's qualified name is not derivable.
    assert.equal(
      akQualifiedNameUnderEk(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, ak),
      undefined,
    );
  });

  it('speaks the attestation commands directly and gets what tpm2-tools gets', async () => {
    const pcrText = (await tpm.tool('tpm2_pcrread', ['sha256:8,9,10,11'])).toString('utf8');
    const direct = await tpm.readPcrs(PCRS);
    for (const p of PCRS)
      assert.match(pcrText, new RegExp(`${p}\\s*:\\s*0x${direct[String(p)]}`, 'i'), `PCR ${p}`);
    const nvFile = join(dir, 'ek.der');
    await tpm.tool('tpm2_nvread', [VTPM_HANDLES.ekCertNv, '-o', nvFile]);
    const viaTools = await readFile(nvFile);
    const cert = await tpm.ekCertificate();
    assert.deepEqual(cert, viaTools.subarray(0, cert.length));
    const pubFile = join(dir, 'ak.pub');
    await tpm.tool('tpm2_readpublic', ['-c', VTPM_HANDLES.ak, '-o', pubFile, '-f', 'tss']);
    assert.deepEqual(await tpm.akPublic(), await readFile(pubFile));
  });

  it('names the command and response code of a refused command, and refuses hostile answers', async () => {
    await assert.rejects(
      tpm.extend([{ pcr: 24, digest: 'aa'.repeat(32) }]),
      /TPM2_PCR_Extend failed: response code 0x1[0-9a-f]{2}/,
    );
    await assert.rejects(tpm.readPcrs([24]), /PCR 24 is not 0 to 23/);
    await assert.rejects(new TpmClient(join(dir, 'nothing.sock')).readPcrs([8]), (e) =>
      isGatehouseError(e, 'TPM_UNAVAILABLE'),
    );
    // A "TPM" that announces a huge response, and one that hangs up: both refused, nothing buffered.
    const sock = join(dir, 'hostile.sock');
    const server = createServer((c) => {
      c.once('data', () => {
        const head = Buffer.alloc(10);
        head.writeUInt16BE(0x8001, 0);
        head.writeUInt32BE(0x7fffffff, 2);
        c.end(head);
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      await assert.rejects(new TpmClient(sock).readPcrs([8]), /response size 2147483647/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('TPM parsers refuse malformed input', () => {
  it('refuses truncated, trailing and unknown-type structures', () => {
    assert.throws(() => parseTpm2bPublic(Buffer.from([0, 4, 0, 1])), /truncated/);
    assert.throws(() => parseTpm2bPublic(Buffer.from([0, 2, 0x00, 0x25, 0])), /trailing/);
    assert.throws(() => parseTpm2bPublic(Buffer.from([0, 2, 0x00, 0x08])), /truncated|unsupported/);
    assert.throws(() => parseSignature(Buffer.from([0x00, 0x10])), /unsupported signature/);
    assert.throws(
      () => parseSignature(Buffer.from([0x00, 0x18, 0x00, 0x0b, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02, 0x00])),
      /trailing/,
    );
    assert.throws(() => parseAttest(Buffer.alloc(10)), /truncated/);
    assert.throws(() => parseCredentialBlob(Buffer.from('badcc0de00000002', 'hex')), /version/);
    assert.throws(() => parseCredentialBlob(Buffer.from('badcc0de000000010000000000', 'hex')), /trailing/);
  });

  it('computes KDFa and KDFe as counter-mode derivations with a NUL-terminated label', () => {
    // One block each: the derivation is the HMAC / hash of the documented concatenation.
    const key = Buffer.alloc(32, 1);
    const expectA = createHmac('sha256', key)
      .update(Buffer.from('0000000153544f5241474500', 'hex'))
      .update(Buffer.from('aa', 'hex'))
      .update(Buffer.from('00000080', 'hex'))
      .digest()
      .subarray(0, 16);
    assert.deepEqual(kdfa('sha256', key, 'STORAGE', Buffer.from('aa', 'hex'), Buffer.alloc(0), 128), expectA);
    const expectE = createHash('sha256')
      .update(Buffer.from('00000001', 'hex'))
      .update(key)
      .update(Buffer.from('IDENTITY\0'))
      .update(Buffer.from('0102', 'hex'))
      .digest();
    assert.deepEqual(
      kdfe('sha256', key, 'IDENTITY', Buffer.from('01', 'hex'), Buffer.from('02', 'hex'), 256),
      expectE,
    );
    assert.equal(kdfa('sha256', key, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 384).length, 48);
  });

  it('makes credentials to ECC P-256 EKs in the tpm2-tools file format', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const blob = makeCredential(
      publicKey,
      Buffer.concat([Buffer.from([0, 0x0b]), Buffer.alloc(32)]),
      Buffer.alloc(16, 3),
    );
    const { idObject, encryptedSecret } = parseCredentialBlob(blob);
    assert.equal(idObject.length, 2 + 32 + 2 + 16);
    assert.equal(encryptedSecret.length, 2 + 32 + 2 + 32);
  });
});

describe('vTPM states sealed to the host TPM', { skip }, () => {
  const tmp = tempDir('sealed-pool');
  const mine = join(tmp.path, 'host-a');
  const theirs = join(tmp.path, 'host-b');
  let hostA: HostTpm;
  let hostB: HostTpm;

  before(async () => {
    await Promise.all([manufactureHostTpmStandIn(mine), manufactureHostTpmStandIn(theirs)]);
    hostA = await HostTpm.open({ kind: 'stand-in', dir: mine });
    hostB = await HostTpm.open({ kind: 'stand-in', dir: theirs });
  });
  after(async () => {
    await stopStandIn(mine).catch(() => undefined);
    await stopStandIn(theirs).catch(() => undefined);
    tmp.cleanup();
  });

  /** Whether swtpm, started on `state` (with `key`), answers a command. */
  async function answers(state: string, key?: Buffer): Promise<boolean> {
    let tpm: VirtualTpm;
    try {
      tpm = await VirtualTpm.start(state, key);
    } catch {
      return false;
    }
    try {
      await tpm.ekCertificate();
      return true;
    } catch {
      return false;
    } finally {
      await tpm.stop();
    }
  }

  const poolOn = (host: HostTpm, dir: string) =>
    new VtpmPool(join(tmp.path, dir), {
      platformCaDir: join(tmp.path, 'ca'),
      stateSealer: new HostTpmStateSealer(host),
    });

  it('seals data that only the same TPM unseals', async () => {
    const data = randomBytes(16);
    const sealed = await hostA.seal(data);
    assert.deepEqual(await hostA.unseal(sealed), data);
    assert.ok(!sealed.includes(data), 'the sealed blob holds the data in clear');
    await assert.rejects(hostB.unseal(sealed), (e: unknown) => isGatehouseError(e, 'KEY_UNAVAILABLE'));
    await assert.rejects(hostA.unseal(flip(sealed, sealed.length - 40)), (e: unknown) =>
      isGatehouseError(e, 'KEY_UNAVAILABLE'),
    );
    await assert.rejects(hostA.unseal(sealed.subarray(0, 10)), (e: unknown) =>
      isGatehouseError(e, 'KEY_UNAVAILABLE'),
    );
  });

  it('encrypts each state: swtpm without its key cannot start it, with it the vTPM answers', async () => {
    await ensurePlatformCa(join(tmp.path, 'ca'));
    const pool = poolOn(hostA, 'pool-a');
    assert.equal(await pool.fill(1), 1);
    const [id] = (await readdir(join(pool.dir, 'ready'))).filter((n) => !n.startsWith('.'));
    const state = join(pool.dir, 'ready', id ?? '');
    assert.ok(existsSync(join(state, VTPM_SEALED_KEY_FILE)));
    // The attacker with the files: the state as swtpm would read it, without the sealed key; nor
    // does a key of the attacker's choosing open it. swtpm cannot decrypt it and exits.
    assert.equal(await answers(state), false);
    assert.equal(await answers(state, randomBytes(16)), false);
    const tpm = await pool.take();
    try {
      assert.ok((await tpm.ekCertificate()).length > 100);
      assert.equal(parseTpm2bPublic(await tpm.akPublic(), 'AK').type, 0x0023);
    } finally {
      await tpm.destroy();
    }
  });

  it('refuses and destroys a state whose key was sealed by another host TPM', async () => {
    const made = poolOn(hostA, 'pool-b');
    await made.fill(1);
    const [id] = (await readdir(join(made.dir, 'ready'))).filter((n) => !n.startsWith('.'));
    // The same pool directory, opened on a machine with another host TPM (a copied home).
    const copied = poolOn(hostB, 'pool-b');
    await assert.rejects(copied.take(), (e: unknown) => {
      assert.ok(isGatehouseError(e, 'KEY_UNAVAILABLE'), String(e));
      assert.match((e as Error).message, /does not unseal with this host's TPM/);
      return true;
    });
    assert.ok(!existsSync(join(made.dir, 'in-use', id ?? '')), 'the refused state is destroyed');
    assert.ok(!existsSync(join(made.dir, 'ready', id ?? '')));
  });

  it('keeps a state when the host TPM cannot be reached, and hands it out once it can', async () => {
    const real = new HostTpmStateSealer(hostA);
    let reachable = false;
    const pool = new VtpmPool(join(tmp.path, 'pool-d'), {
      platformCaDir: join(tmp.path, 'ca'),
      stateSealer: {
        seal: (key) => real.seal(key),
        unseal: (blob) =>
          reachable
            ? real.unseal(blob)
            : Promise.reject(new GatehouseError('TPM_UNAVAILABLE', 'unreachable')),
      },
    });
    await pool.fill(1);
    await assert.rejects(pool.take(), (e: unknown) => isGatehouseError(e, 'TPM_UNAVAILABLE'));
    assert.equal(await pool.size(), 1, 'the state is back in ready/');
    reachable = true;
    const tpm = await pool.take();
    await tpm.destroy();
    assert.equal(await pool.size(), 0);
  });

  it('refuses a state with no sealed key (a plain state planted in the pool)', async () => {
    const pool = poolOn(hostA, 'pool-c');
    await manufactureVtpm(join(pool.dir, 'ready', 'planted'), { platformCaDir: join(tmp.path, 'ca') });
    await assert.rejects(pool.take(), (e: unknown) => isGatehouseError(e, 'KEY_UNAVAILABLE'));
    assert.ok(!existsSync(join(pool.dir, 'in-use', 'planted')));
  });
});
