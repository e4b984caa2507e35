import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GatehouseError } from '../common/errors.ts';
import type { SourceSignerRecord } from '../store/store.ts';

const execFileP = promisify(execFile);

/** A key gatehouse trusts to sign commits and review records: the store's record of it. */
export type TrustedSigner = SourceSignerRecord;

/** A signature that verified, and whose key made it. */
export interface VerifiedSignature {
  format: 'ssh' | 'gpg';
  principal: string;
  keyId: string;
}

const SSH_KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

/** Principals are written into an allowed-signers file: no spaces, quotes, wildcards or commas. */
const PRINCIPAL = /^[A-Za-z0-9._%+@-]{1,254}$/;

/**
 * Parse an SSH public key line (`type base64 [comment]`) into its canonical form and fingerprint.
 * @throws GatehouseError BAD_INPUT naming what is wrong
 */
export function parseSshPublicKey(text: string): { key: string; fingerprint: string } {
  const parts = text.trim().split(/\s+/);
  const [type, b64] = parts;
  if (type === undefined || b64 === undefined || !SSH_KEY_TYPES.has(type)) {
    throw new GatehouseError(
      'BAD_INPUT',
      `not an SSH public key of a supported type: '${text.trim().slice(0, 40)}'`,
    );
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    throw new GatehouseError('BAD_INPUT', 'SSH public key is not base64');
  const blob = Buffer.from(b64, 'base64');
  // The key blob starts with its own type name as an SSH string; it must agree with the line.
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (len < 0 || blob.subarray(4, 4 + len).toString('latin1') !== type) {
    throw new GatehouseError('BAD_INPUT', `SSH public key blob does not hold a ${type} key`);
  }
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { key: `${type} ${b64}`, fingerprint };
}

/** @throws GatehouseError BAD_INPUT when the principal cannot go into an allowed-signers file */
export function checkPrincipal(principal: string): string {
  if (!PRINCIPAL.test(principal)) {
    throw new GatehouseError(
      'BAD_INPUT',
      `signer principal '${principal.slice(0, 80)}' must be an email-like name`,
    );
  }
  return principal;
}

/**
 * Read an armoured GPG public key: its primary fingerprint and first user id's email.
 * @throws GatehouseError BAD_INPUT when gpg does not find exactly one public key
 */
export async function inspectGpgKey(armored: string): Promise<{ fingerprint: string; email?: string }> {
  const home = await mkdtemp(join(tmpdir(), 'gh-gpg-'));
  try {
    const file = join(home, 'key.asc');
    await writeFile(file, armored);
    const { stdout } = await execFileP(
      'gpg',
      ['--homedir', home, '--batch', '--no-tty', '--with-colons', '--show-keys', file],
      { encoding: 'utf8' },
    ).catch((e: unknown) => {
      throw new GatehouseError('BAD_INPUT', 'not a GPG public key gpg can read', { cause: e });
    });
    const lines = stdout.split('\n');
    if (lines.some((l) => l.startsWith('sec:'))) {
      throw new GatehouseError('BAD_INPUT', 'that is a GPG secret key; give the public key');
    }
    const pubs = lines.filter((l) => l.startsWith('pub:'));
    if (pubs.length !== 1)
      throw new GatehouseError('BAD_INPUT', `expected one GPG public key, found ${pubs.length}`);
    const at = lines.findIndex((l) => l.startsWith('pub:'));
    const fpr = lines.slice(at + 1).find((l) => l.startsWith('fpr:'));
    const fingerprint = fpr?.split(':')[9] ?? '';
    if (!/^[0-9A-F]{40,64}$/.test(fingerprint))
      throw new GatehouseError('BAD_INPUT', 'GPG key has no fingerprint');
    const uid = lines.find((l) => l.startsWith('uid:'))?.split(':')[9] ?? '';
    const email = /<([^<>]+)>/.exec(uid)?.[1];
    return email === undefined ? { fingerprint } : { fingerprint, email };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

function runWithInput(
  cmd: string,
  args: string[],
  input: Buffer | string,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < 1 << 20) stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 1 << 16) stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/**
 * Verify an SSH signature (`-----BEGIN SSH SIGNATURE-----`) over `payload` in `namespace`
 * against the trusted SSH signers, with OpenSSH's own allowed-signers check.
 * @throws GatehouseError SIGNATURE_INVALID when no trusted signer made it
 */
export async function verifySshSignature(
  signers: readonly TrustedSigner[],
  namespace: string,
  signature: string,
  payload: Buffer | string,
): Promise<VerifiedSignature> {
  const ssh = signers.filter((s) => s.format === 'ssh');
  if (ssh.length === 0)
    throw new GatehouseError('SIGNATURE_INVALID', 'no trusted SSH signers are configured');
  const dir = await mkdtemp(join(tmpdir(), 'gh-ssh-'));
  try {
    const allowed = join(dir, 'allowed_signers');
    const sig = join(dir, 'payload.sig');
    await writeFile(
      allowed,
      ssh.map((s) => `${checkPrincipal(s.principal)} namespaces="${namespace}" ${s.publicKey}\n`).join(''),
    );
    await writeFile(sig, signature);
    const found = await runWithInput('ssh-keygen', ['-Y', 'find-principals', '-s', sig, '-f', allowed], '');
    const principals = found.stdout.split('\n').filter((p) => p !== '');
    if (found.code !== 0 || principals.length === 0) {
      throw new GatehouseError(
        'SIGNATURE_INVALID',
        'the SSH signature was made by a key no trusted signer holds',
      );
    }
    for (const principal of principals) {
      const v = await runWithInput(
        'ssh-keygen',
        ['-Y', 'verify', '-f', allowed, '-I', principal, '-n', namespace, '-s', sig],
        payload,
      );
      if (v.code === 0) {
        const keyId = /key (SHA256:[A-Za-z0-9+/]+)/.exec(v.stdout + v.stderr)?.[1] ?? '';
        return { format: 'ssh', principal, keyId };
      }
    }
    throw new GatehouseError(
      'SIGNATURE_INVALID',
      `the SSH signature of ${principals.join(', ')} does not verify`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Verify a detached OpenPGP signature over `payload` with a keyring holding only the trusted GPG
 * signers' keys, built for this check and removed after it.
 * @throws GatehouseError SIGNATURE_INVALID when no trusted signer made a good signature
 */
export async function verifyGpgSignature(
  signers: readonly TrustedSigner[],
  signature: string,
  payload: Buffer | string,
): Promise<VerifiedSignature> {
  const gpgSigners = signers.filter((s) => s.format === 'gpg');
  if (gpgSigners.length === 0)
    throw new GatehouseError('SIGNATURE_INVALID', 'no trusted GPG signers are configured');
  const home = await mkdtemp(join(tmpdir(), 'gh-gpg-'));
  const env = { ...process.env, GNUPGHOME: home };
  try {
    const keys = join(home, 'keys.asc');
    const sig = join(home, 'payload.sig');
    const data = join(home, 'payload');
    await writeFile(keys, gpgSigners.map((s) => s.publicKey).join('\n'));
    await writeFile(sig, signature);
    await writeFile(data, payload);
    await runWithInput('gpg', ['--homedir', home, '--batch', '--no-tty', '--import', keys], '', env);
    const v = await runWithInput(
      'gpg',
      ['--homedir', home, '--batch', '--no-tty', '--status-fd', '1', '--verify', sig, data],
      '',
      env,
    );
    const status = v.stdout.split('\n').filter((l) => l.startsWith('[GNUPG:] '));
    const good = status.some((l) => l.startsWith('[GNUPG:] GOODSIG '));
    const valid = status.find((l) => l.startsWith('[GNUPG:] VALIDSIG '));
    // VALIDSIG's tenth field is the primary key's fingerprint, even when a subkey signed.
    const fields = valid?.split(' ') ?? [];
    const primary = fields[11] ?? fields[2] ?? '';
    const signer = gpgSigners.find((s) => s.id === primary);
    if (!good || valid === undefined || signer === undefined) {
      const why = status.find((l) => /(BADSIG|ERRSIG|EXPKEYSIG|REVKEYSIG|EXPSIG|NO_PUBKEY)/.test(l));
      throw new GatehouseError(
        'SIGNATURE_INVALID',
        `the GPG signature does not verify against a trusted signer${why === undefined ? '' : ` (${why.split(' ')[1]})`}`,
      );
    }
    return { format: 'gpg', principal: signer.principal, keyId: primary };
  } finally {
    await runWithInput('gpgconf', ['--homedir', home, '--kill', 'all'], '', env).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  }
}

/** The signature format of an armoured signature, by its first line. */
export function signatureFormat(signature: string): 'ssh' | 'gpg' | 'x509' | undefined {
  const first = signature.trimStart().split('\n')[0]?.trim();
  if (first === '-----BEGIN SSH SIGNATURE-----') return 'ssh';
  if (first === '-----BEGIN PGP SIGNATURE-----') return 'gpg';
  if (first === '-----BEGIN SIGNED MESSAGE-----' || first === '-----BEGIN PKCS7-----') return 'x509';
  return undefined;
}

/** Sign data with an SSH private key file (`ssh-keygen -Y sign`). @throws GatehouseError BAD_INPUT */
export async function sshSign(keyFile: string, namespace: string, data: Buffer | string): Promise<string> {
  const r = await runWithInput('ssh-keygen', ['-q', '-Y', 'sign', '-f', keyFile, '-n', namespace], data, {
    ...process.env,
    SSH_ASKPASS: '',
  }).catch((e: unknown) => {
    throw new GatehouseError('BAD_INPUT', 'cannot run ssh-keygen to sign', { cause: e });
  });
  if (r.code !== 0 || !r.stdout.includes('BEGIN SSH SIGNATURE')) {
    throw new GatehouseError(
      'BAD_INPUT',
      `ssh-keygen could not sign with ${keyFile}: ${r.stderr.trim().split('\n')[0] ?? ''}`,
    );
  }
  return r.stdout;
}
