/**
 * The keys of a gatehouse home, created, opened and rotated in one place: the internal CA, the
 * transparency log key, the certificate transparency log key, the attestation key and the
 * timestamp authority. Key files are sealed as
 * the config says (key-file.ts); with PKCS#11 the CA intermediate, log and TSA keys live in the
 * token instead. Retired key generations are kept in `keys/history.json` with their validity
 * windows, so the exported trusted root lists them and old signatures keep verifying.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { InternalCa } from './ca.ts';
import { FileKeySigner, readPrivateKeyFile } from './file-key-signer.ts';
import { isEncryptedKeyFile, type KeyProtection, sealPrivateKey } from './key-file.ts';
import { type KeyEncryption, resolveKeyProtection } from './key-protection.ts';
import { Pkcs11Signer } from './pkcs11-signer.ts';
import { createTimestampAuthority, loadTimestampAuthority, type TimestampAuthority } from './rfc3161.ts';
import type { Signer } from './signer.ts';
import { base64String } from './strict-base64.ts';
import type { TrustedRootCaInput, TrustedRootInput, TrustedRootLogInput } from './trust-root.ts';

/** Where keys live, as the home config says (absent: a home from before encryption). */
export type HomeKeysConfig =
  | { kind: 'file'; encryption: KeyEncryption }
  | {
      kind: 'pkcs11';
      module: string;
      token: string;
      label: string;
      pinEnv: string;
      encryption: KeyEncryption;
    };

const LEGACY: HomeKeysConfig = { kind: 'file', encryption: { kind: 'none' } };

/** Paths under `keys/`. */
function paths(keys: string) {
  return {
    ca: join(keys, 'ca'),
    log: join(keys, 'log.key.pem'),
    ct: join(keys, 'ct.key.pem'),
    attestation: join(keys, 'attestation.key.pem'),
    tsa: join(keys, 'tsa'),
    history: join(keys, 'history.json'),
    retired: join(keys, 'retired'),
  };
}

const historySchema = z.object({
  version: z.literal(1),
  retired: z
    .array(
      z.discriminatedUnion('kind', [
        z.object({
          kind: z.literal('log'),
          spki: base64String,
          validFrom: z.iso.datetime(),
          validTo: z.iso.datetime(),
        }),
        // A certificate transparency log key: each generation is its own CT log.
        z.object({
          kind: z.literal('ct'),
          spki: base64String,
          validFrom: z.iso.datetime(),
          validTo: z.iso.datetime(),
        }),
        z.object({
          kind: z.literal('ca'),
          chainPem: z.array(z.string()).min(1),
          validFrom: z.iso.datetime(),
          validTo: z.iso.datetime(),
        }),
        z.object({
          kind: z.literal('tsa'),
          chainPem: z.array(z.string()).min(1),
          validFrom: z.iso.datetime(),
          validTo: z.iso.datetime(),
        }),
        // The attestation token key: in no trusted root, but in the JWKS until its tokens expired.
        z.object({
          kind: z.literal('attestation'),
          keyId: z.string().regex(/^[A-Za-z0-9._~:-]{1,128}$/),
          spki: base64String,
          validFrom: z.iso.datetime(),
          validTo: z.iso.datetime(),
          publishUntil: z.iso.datetime(),
        }),
      ]),
    )
    .default([]),
});

type History = z.infer<typeof historySchema>;
export type KeyKind = 'log' | 'ct' | 'ca' | 'tsa';
/** The keys `rotateHomeKey` rotates: the trusted-root keys and the attestation token key. */
export type RotatableKey = KeyKind | 'attestation';

/** The JWKS key id of an attestation token key: the first 16 hex digits of SHA-256(SPKI). */
export function attestationKeyId(spki: Uint8Array): string {
  return createHash('sha256').update(spki).digest('hex').slice(0, 16);
}

async function readHistory(path: string): Promise<History> {
  if (!existsSync(path)) return { version: 1, retired: [] };
  try {
    return historySchema.parse(JSON.parse(await readFile(path, 'utf8')));
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', 'the key history is malformed', { where: path, cause: e });
  }
}

function pin(config: Extract<HomeKeysConfig, { kind: 'pkcs11' }>): string {
  const value = process.env[config.pinEnv];
  if (value === undefined || value === '') {
    throw new GatehouseError('KEY_UNAVAILABLE', `the PKCS#11 PIN is not set: export ${config.pinEnv}`);
  }
  return value;
}

function hsm(
  config: Extract<HomeKeysConfig, { kind: 'pkcs11' }>,
  which: KeyKind,
  create: boolean,
): Pkcs11Signer {
  return Pkcs11Signer.open({
    module: config.module,
    token: config.token,
    label: `${config.label}-${which}`,
    pin: pin(config),
    create,
  });
}

/** Create whatever keys are missing; returns the names of what it created. */
export async function initHomeKeys(
  root: string,
  keysDir: string,
  config: HomeKeysConfig | undefined,
  now: Date = new Date(),
): Promise<string[]> {
  const c = config ?? LEGACY;
  const p = paths(keysDir);
  const created: string[] = [];
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const protection = await resolveKeyProtection(root, c.encryption, { create: true });
  await mkdir(p.ca, { recursive: true, mode: 0o700 });
  const opened: Pkcs11Signer[] = [];
  try {
    if (!existsSync(join(p.ca, 'root.crt.pem'))) {
      const intermediateSigner = c.kind === 'pkcs11' ? hsm(c, 'ca', true) : undefined;
      if (intermediateSigner !== undefined) opened.push(intermediateSigner);
      await InternalCa.create(p.ca, {
        name: 'gatehouse',
        protection,
        now,
        ...(intermediateSigner === undefined ? {} : { intermediateSigner }),
      });
      created.push('keys/ca');
    }
    if (c.kind === 'pkcs11') {
      opened.push(hsm(c, 'log', true));
      opened.push(hsm(c, 'ct', true));
    } else {
      if (!existsSync(p.log)) {
        await FileKeySigner.generate(p.log, protection, 'log');
        created.push('keys/log.key.pem');
      }
      // Homes from before certificate transparency get their CT log key on the next init.
      if (!existsSync(p.ct)) {
        await FileKeySigner.generate(p.ct, protection, 'ct');
        created.push('keys/ct.key.pem');
      }
    }
    if (!existsSync(p.attestation)) {
      await FileKeySigner.generate(p.attestation, protection, 'attestation');
      created.push('keys/attestation.key.pem');
    }
    // Homes from before trusted time (legacy, plain keys) get no TSA unless created afresh.
    if (!existsSync(p.tsa) && config !== undefined) {
      await mkdir(p.tsa, { recursive: true, mode: 0o700 });
      const signer = c.kind === 'pkcs11' ? hsm(c, 'tsa', true) : undefined;
      if (signer !== undefined) opened.push(signer);
      await createTimestampAuthority(p.tsa, {
        name: 'gatehouse',
        protection,
        now,
        ...(signer === undefined ? {} : { signer }),
      });
      created.push('keys/tsa');
    }
  } finally {
    for (const s of opened) s.close();
  }
  return created;
}

/** The opened keys of a home. */
export interface HomeKeys {
  ca: InternalCa;
  logSigner: Signer;
  /** The certificate transparency log key of the current generation. */
  ctSigner: Signer;
  /** Retired CT log keys: their shards stay readable, their SCTs verify in their windows. */
  retiredCtKeys: { spki: Uint8Array; validFrom: Date; validTo: Date }[];
  attestationKey: KeyObject;
  /** The JWKS key id of `attestationKey`. */
  attestationKeyId: string;
  /**
   * Attestation keys rotated out whose tokens may still be live: published in the JWKS until
   * `until` (seconds since the epoch).
   */
  retiredAttestationKeys: { keyId: string; publicKey: Uint8Array; until: number }[];
  /** Absent in homes created before trusted time. */
  tsa: TimestampAuthority | undefined;
  /**
   * Everything the trusted root must list: current and retired generations with their windows.
   * `ctBaseUrl` names the CT log of a key generation from its DER public key.
   */
  trustedRootInput(logBaseUrl: string, ctBaseUrl?: (spki: Uint8Array) => string): TrustedRootInput;
  /** Close HSM sessions. */
  close(): void;
}

/**
 * Open the keys of a home.
 * @throws GatehouseError HOME_NOT_INITIALIZED, KEY_UNAVAILABLE, BAD_CONFIG
 */
export async function openHomeKeys(
  root: string,
  keysDir: string,
  config: HomeKeysConfig | undefined,
): Promise<HomeKeys> {
  const c = config ?? LEGACY;
  const p = paths(keysDir);
  const protection = await resolveKeyProtection(root, c.encryption);
  const opened: Pkcs11Signer[] = [];
  const close = () => {
    for (const s of opened) s.close();
  };
  try {
    const hsmKey = (which: KeyKind): Pkcs11Signer | undefined => {
      if (c.kind !== 'pkcs11') return undefined;
      const s = hsm(c, which, false);
      opened.push(s);
      return s;
    };
    const ca = await InternalCa.load(p.ca, protection, hsmKey('ca'));
    const logSigner = hsmKey('log') ?? (await loadFileKey(p.log, protection, 'log'));
    const ctSigner = hsmKey('ct') ?? (await loadFileKey(p.ct, protection, 'ct'));
    const attestationKey = await readPrivateKeyFile(p.attestation, protection, 'attestation');
    const tsa = existsSync(p.tsa)
      ? await loadTimestampAuthority(p.tsa, protection, hsmKey('tsa'))
      : undefined;
    const history = await readHistory(p.history);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const retiredAttestationKeys = history.retired.flatMap((r) =>
      r.kind === 'attestation' && Math.floor(Date.parse(r.publishUntil) / 1000) > nowSeconds
        ? [
            {
              keyId: r.keyId,
              publicKey: new Uint8Array(Buffer.from(r.spki, 'base64')),
              until: Math.floor(Date.parse(r.publishUntil) / 1000),
            },
          ]
        : [],
    );
    const retiredCtKeys = history.retired.flatMap((r) =>
      r.kind === 'ct'
        ? [
            {
              spki: new Uint8Array(Buffer.from(r.spki, 'base64')),
              validFrom: new Date(r.validFrom),
              validTo: new Date(r.validTo),
            },
          ]
        : [],
    );
    return {
      ca,
      logSigner,
      ctSigner,
      retiredCtKeys,
      attestationKey,
      attestationKeyId: attestationKeyId(
        createPublicKey(attestationKey).export({ format: 'der', type: 'spki' }),
      ),
      retiredAttestationKeys,
      tsa: tsa?.authority,
      close,
      trustedRootInput: (logBaseUrl, ctBaseUrl) =>
        trustedRootInput(history, { ca, logSigner, ctSigner, tsa }, logBaseUrl, ctBaseUrl),
    };
  } catch (e) {
    close();
    throw e;
  }
}

async function loadFileKey(path: string, protection: KeyProtection, purpose: string): Promise<FileKeySigner> {
  try {
    return await FileKeySigner.load(path, protection, purpose);
  } catch (e) {
    if (e instanceof GatehouseError && e.code === 'NOT_FOUND') {
      throw new GatehouseError('HOME_NOT_INITIALIZED', 'missing from the home: run `gatehouse init`', {
        where: path,
        cause: e,
      });
    }
    throw e;
  }
}

/** The end of the newest retired window of a kind: when the current generation took over. */
function currentSince(history: History, kind: RotatableKey, initial: Date): Date {
  const ends = history.retired.filter((r) => r.kind === kind).map((r) => new Date(r.validTo).getTime());
  return ends.length === 0 ? initial : new Date(Math.max(...ends));
}

function trustedRootInput(
  history: History,
  current: {
    ca: InternalCa;
    logSigner: Signer;
    ctSigner: Signer;
    tsa: { chainPem: string[]; validFrom: Date } | undefined;
  },
  baseUrl: string,
  ctBaseUrl: (spki: Uint8Array) => string = () => baseUrl,
): TrustedRootInput {
  const caFrom = current.ca.validFrom();
  const cas: TrustedRootCaInput[] = [];
  const logs: TrustedRootLogInput[] = [];
  const ctlogs: TrustedRootLogInput[] = [];
  const tsas: NonNullable<TrustedRootInput['timestampAuthorities']> = [];
  for (const r of history.retired) {
    const window = { validFrom: new Date(r.validFrom), validTo: new Date(r.validTo) };
    if (r.kind === 'log') logs.push({ spkiDer: Buffer.from(r.spki, 'base64'), baseUrl, ...window });
    else if (r.kind === 'ct') {
      const spkiDer = Buffer.from(r.spki, 'base64');
      ctlogs.push({ spkiDer, baseUrl: ctBaseUrl(spkiDer), ...window });
    } else if (r.kind === 'ca') {
      const [intermediatePem, rootPem] = r.chainPem;
      cas.push({
        rootPem: rootPem ?? intermediatePem ?? '',
        ...(rootPem === undefined ? {} : { intermediatePem }),
        ...window,
      });
    } else if (r.kind === 'tsa') tsas.push({ chainPem: r.chainPem, ...window });
  }
  cas.push({
    rootPem: current.ca.rootPem(),
    intermediatePem: current.ca.intermediatePem(),
    validFrom: currentSince(history, 'ca', caFrom),
  });
  logs.push({
    spkiDer: current.logSigner.publicKeySpki(),
    baseUrl,
    validFrom: currentSince(history, 'log', caFrom),
  });
  ctlogs.push({
    spkiDer: current.ctSigner.publicKeySpki(),
    baseUrl: ctBaseUrl(current.ctSigner.publicKeySpki()),
    validFrom: currentSince(history, 'ct', caFrom),
  });
  if (current.tsa !== undefined) {
    tsas.push({
      chainPem: current.tsa.chainPem,
      validFrom: currentSince(history, 'tsa', current.tsa.validFrom),
    });
  }
  return { ca: cas, tlog: logs, ctlogs, timestampAuthorities: tsas };
}

/**
 * Rotate one key: the current generation is retired (its files moved under `keys/retired/`, its
 * public part and window recorded in `keys/history.json`) and a new one created. Signatures made
 * before keep verifying against the trusted root, which lists both windows. A retired attestation
 * key is recorded with `publishUntil`, the rotation time plus `tokenTtlSeconds` (default 900, the
 * longest lifetime a token can have): a server opened later publishes it in its JWKS until then.
 * @throws GatehouseError BAD_INPUT for PKCS#11 keys (rotate in the token, then re-label), KEY_UNAVAILABLE
 */
export async function rotateHomeKey(
  root: string,
  keysDir: string,
  config: HomeKeysConfig | undefined,
  kind: RotatableKey,
  now: Date = new Date(),
  options: { tokenTtlSeconds?: number } = {},
): Promise<void> {
  const c = config ?? LEGACY;
  if (c.kind === 'pkcs11' && kind !== 'attestation') {
    throw new GatehouseError(
      'BAD_INPUT',
      'keys in a PKCS#11 token are rotated in the token: generate a new key there and change the label in config.json',
    );
  }
  const p = paths(keysDir);
  const keys = await openHomeKeys(root, keysDir, config);
  keys.close();
  const history = await readHistory(p.history);
  const input = keys.trustedRootInput('https://unused');
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const retiredDir = join(p.retired, `${kind}-${stamp}`);
  await mkdir(retiredDir, { recursive: true, mode: 0o700 });
  const protection = await resolveKeyProtection(root, c.encryption);
  switch (kind) {
    case 'log': {
      const current = (input.tlog as TrustedRootLogInput[]).at(-1);
      if (current === undefined) throw new GatehouseError('INTERNAL', 'no current log key');
      history.retired.push({
        kind: 'log',
        spki: Buffer.from(current.spkiDer).toString('base64'),
        validFrom: current.validFrom.toISOString(),
        validTo: now.toISOString(),
      });
      await rename(p.log, join(retiredDir, 'log.key.pem'));
      await FileKeySigner.generate(p.log, protection, 'log');
      break;
    }
    case 'ct': {
      // A new CT key is a new CT log (a new shard): the old one is frozen, its SCTs keep
      // verifying in the window recorded here.
      const current = input.ctlogs?.at(-1);
      if (current === undefined) throw new GatehouseError('INTERNAL', 'no current CT log key');
      history.retired.push({
        kind: 'ct',
        spki: Buffer.from(current.spkiDer).toString('base64'),
        validFrom: current.validFrom.toISOString(),
        validTo: now.toISOString(),
      });
      await rename(p.ct, join(retiredDir, 'ct.key.pem'));
      await FileKeySigner.generate(p.ct, protection, 'ct');
      break;
    }
    case 'ca': {
      const current = (input.ca as TrustedRootCaInput[]).at(-1);
      if (current === undefined) throw new GatehouseError('INTERNAL', 'no current CA');
      history.retired.push({
        kind: 'ca',
        chainPem: [current.intermediatePem ?? current.rootPem, current.rootPem],
        validFrom: current.validFrom.toISOString(),
        validTo: now.toISOString(),
      });
      await rename(p.ca, join(retiredDir, 'ca'));
      await mkdir(p.ca, { recursive: true, mode: 0o700 });
      await InternalCa.create(p.ca, { name: 'gatehouse', protection, now });
      break;
    }
    case 'attestation': {
      const spki = createPublicKey(keys.attestationKey).export({ format: 'der', type: 'spki' });
      const ttl = options.tokenTtlSeconds ?? 900;
      history.retired.push({
        kind: 'attestation',
        keyId: keys.attestationKeyId,
        spki: spki.toString('base64'),
        validFrom: currentSince(history, 'attestation', keys.ca.validFrom()).toISOString(),
        validTo: now.toISOString(),
        publishUntil: new Date(now.getTime() + ttl * 1000).toISOString(),
      });
      await rename(p.attestation, join(retiredDir, 'attestation.key.pem'));
      await FileKeySigner.generate(p.attestation, protection, 'attestation');
      break;
    }
    case 'tsa': {
      const current = input.timestampAuthorities?.at(-1);
      if (current === undefined)
        throw new GatehouseError('BAD_INPUT', 'this home has no timestamp authority to rotate');
      history.retired.push({
        kind: 'tsa',
        chainPem: current.chainPem,
        validFrom: current.validFrom.toISOString(),
        validTo: now.toISOString(),
      });
      await rename(p.tsa, join(retiredDir, 'tsa'));
      await mkdir(p.tsa, { recursive: true, mode: 0o700 });
      await createTimestampAuthority(p.tsa, { name: 'gatehouse', protection, now });
      break;
    }
  }
  await writeFile(p.history, `${JSON.stringify(history, null, 2)}\n`, { mode: 0o600 });
}

/**
 * How the key files of the home at `root` are sealed, from its `keys` config (absent: a home from
 * before encryption, plain files). With `create`, a missing key-encryption key file is made.
 * @throws GatehouseError KEY_UNAVAILABLE as {@link resolveKeyProtection}
 */
export function homeKeyProtection(
  root: string,
  config: HomeKeysConfig | undefined,
  options: { create?: boolean } = {},
): Promise<KeyProtection> {
  return resolveKeyProtection(root, (config ?? LEGACY).encryption, options);
}

/**
 * Seal a key file that is still plain PKCS#8 (made before this key was sealed), in place: the
 * sealed file is written beside it (mode 0600) and renamed over it. Nothing happens for a sealed
 * file, a missing one, or protection `none`.
 * @returns true when it sealed the file
 * @throws GatehouseError BAD_CONFIG when the plain file is not a private key
 */
export async function sealPlainKeyFile(
  path: string,
  protection: KeyProtection,
  purpose: string,
): Promise<boolean> {
  if (protection.kind === 'none' || !existsSync(path)) return false;
  const text = await readFile(path, 'utf8');
  if (isEncryptedKeyFile(text)) return false;
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new GatehouseError('BAD_CONFIG', 'the key file is not a valid PEM private key', { where: path });
  }
  const tmp = `${path}.sealing`;
  await rm(tmp, { force: true });
  await writeFile(tmp, sealPrivateKey(key, protection, purpose), { mode: 0o600, flag: 'wx' });
  await rename(tmp, path);
  return true;
}

/** The public key of a certificate PEM as DER SPKI (for tests and the CLI). */
export function certificateSpki(pem: string): Buffer {
  return createPublicKey(new X509Certificate(pem).publicKey).export({ format: 'der', type: 'spki' });
}
