/**
 * The runner host's own TPM: `/dev/tpmrm0` where there is one, else a host-level swtpm stand-in
 * manufactured once (`scripts/setup`, or the first `gatehouse init`) with a manufacturer CA chain
 * whose keys never leave the manufacturing process (see manufacturer.ts). The stand-in's swtpm is
 * one long-lived process per machine, started on demand and reused by every home; when it starts
 * it is "booted": PCRs 0–7 are extended with the digests of what this machine boots (the files
 * in /boot, the running kernel, its command line) and the events are written to a TCG PC Client
 * crypto-agile event log beside it, as firmware does.
 *
 * The host TPM holds the host's identity: its EK (and EK certificate at the TCG NV index), an AK
 * created under the EK, and the key that issues the per-job vTPMs' EK certificates, created under
 * the storage root key, fixedTPM|fixedParent, used only through TPM2_Sign.
 */
import { spawn } from 'node:child_process';
import { createHash, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { processAlive } from '../common/process.ts';
import { parseCredentialBlob } from './credential.ts';
import { EV, writeEventLog } from './event-log.ts';
import { manufactureEkChain } from './manufacturer.ts';
import { TpmReader, TpmWriter } from './marshal.ts';
import {
  marshalTpmtPublic,
  parseSignature,
  parseTpm2bPublic,
  publicKeyOf,
  TPM_ALG,
  TPM_ECC,
  TPMA_OBJECT,
} from './structures.ts';
import { TpmClient, TpmResponseError } from './tpm-client.ts';

/** Persistent handles of the host TPM (TCG provisioning guidance ranges). */
export const HOST_TPM_HANDLES = {
  ek: 0x81010001,
  srk: 0x81000001,
  ak: 0x81008001,
  /** The key that issues vTPM EK certificates. */
  vtpmCa: 0x81000010,
  ekCertNv: 0x1c00002,
} as const;

/** Where `scripts/setup` manufactures the machine's stand-in. */
export const DEFAULT_HOST_TPM_DIR = '/var/lib/gatehouse/host-tpm';
/** The version line of the stand-in's firmware, measured into PCR 0 at each boot. */
const STAND_IN_FIRMWARE = 'gatehouse host TPM stand-in firmware 1';
/** Where Linux exposes the firmware's event log of a hardware TPM. */
const DEVICE_EVENT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

/** The host TPM this process uses: a device, or a stand-in directory. */
export type HostTpmLocation =
  | { readonly kind: 'device'; readonly path: string }
  | { readonly kind: 'stand-in'; readonly dir: string };

function tpmError(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('TPM_UNAVAILABLE', message, cause === undefined ? {} : { cause });
}

/**
 * The host TPM as the environment says: `GATEHOUSE_HOST_TPM` (a `/dev/…` device or a stand-in
 * directory), else `/dev/tpmrm0` when present, else the machine's stand-in directory.
 */
export function hostTpmLocation(env: NodeJS.ProcessEnv = process.env): HostTpmLocation {
  const named = env.GATEHOUSE_HOST_TPM;
  if (named !== undefined && named !== '')
    return named.startsWith('/dev/') ? { kind: 'device', path: named } : { kind: 'stand-in', dir: named };
  if (existsSync('/dev/tpmrm0')) return { kind: 'device', path: '/dev/tpmrm0' };
  return { kind: 'stand-in', dir: DEFAULT_HOST_TPM_DIR };
}

/** A short, stable description of a location, for messages. */
export function describeHostTpm(loc: HostTpmLocation): string {
  return loc.kind === 'device' ? loc.path : `the host TPM stand-in at ${loc.dir}`;
}

interface StandInPaths {
  dir: string;
  state: string;
  socket: string;
  pid: string;
  lock: string;
  boot: string;
  bootLog: string;
  root: string;
  intermediate: string;
  crl: string;
}

function standInPaths(dir: string): StandInPaths {
  return {
    dir,
    state: join(dir, 'state'),
    socket: join(dir, 'tpm.sock'),
    pid: join(dir, 'swtpm.pid'),
    lock: join(dir, 'start.lock'),
    boot: join(dir, 'boot.json'),
    bootLog: join(dir, 'boot-log.bin'),
    root: join(dir, 'manufacturer', 'root.pem'),
    intermediate: join(dir, 'manufacturer', 'intermediate.pem'),
    crl: join(dir, 'manufacturer', 'root.crl.pem'),
  };
}

/** Whether a stand-in has been manufactured in `dir`. */
export function isStandInManufactured(dir: string): boolean {
  const p = standInPaths(dir);
  return existsSync(p.root) && existsSync(join(p.state, 'tpm2-00.permall'));
}

function swtpmArgs(state: string, socket: string, pid?: string): string[] {
  return [
    'socket',
    '--tpm2',
    '--tpmstate',
    `dir=${state}`,
    '--server',
    `type=unixio,path=${socket}`,
    '--flags',
    'startup-clear',
    ...(pid === undefined ? [] : ['--pid', `file=${pid}`]),
  ];
}

async function waitForSocket(path: string, ms: number): Promise<void> {
  for (let waited = 0; waited < ms; waited += 10) {
    if (existsSync(path)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw tpmError(`the TPM socket ${path} did not appear within ${ms} ms`);
}

function runTool(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString('utf8');
    });
    p.once('error', (e) => reject(tpmError(`${cmd} cannot be started (is it installed?)`, e)));
    p.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(tpmError(`${cmd} failed: ${err.trim().split('\n').slice(-1)[0] ?? code}`)),
    );
  });
}

/**
 * Manufacture the host TPM stand-in into `dir` unless it is there (idempotent): swtpm_setup makes
 * the EKs and the storage root key, the EK certificate is issued under a fresh manufacturer chain
 * and written to its TCG NV index, and the chain's public certificates are kept in
 * `manufacturer/`. The chain's keys exist only while this runs.
 * @returns true when it manufactured
 * @throws GatehouseError TPM_UNAVAILABLE
 */
export async function manufactureHostTpmStandIn(
  dir: string,
  manufacturer = 'gatehouse stand-in TPM',
): Promise<boolean> {
  if (isStandInManufactured(dir)) return false;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const work = join(dir, `.manufacturing-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  const w = standInPaths(work);
  await mkdir(w.state, { recursive: true, mode: 0o700 });
  await mkdir(join(work, 'manufacturer'), { recursive: true });
  try {
    const conf = join(work, 'swtpm_setup.conf');
    await writeFile(conf, 'active_pcr_banks = sha256\n');
    await runTool('swtpm_setup', [
      '--tpm2',
      '--tpmstate',
      w.state,
      '--createek',
      '--create-spk',
      '--config',
      conf,
      '--logfile',
      join(work, 'setup.log'),
    ]);
    const sock = join(work, 's.sock');
    const proc = spawn('swtpm', swtpmArgs(w.state, sock), { stdio: 'ignore' });
    try {
      await waitForSocket(sock, 5000);
      const tpm = new TpmClient(sock);
      const ek = publicKeyOf(parseTpm2bPublic(await tpm.readPublic(HOST_TPM_HANDLES.ek), 'host EK'));
      const chain = await manufactureEkChain(
        ek,
        { manufacturer: 'id:47484F55', model: 'gatehouse host TPM stand-in', version: 'id:00010000' },
        manufacturer,
      );
      await tpm.nvDefineAndWrite(HOST_TPM_HANDLES.ekCertNv, chain.ekCertDer);
      tpm.close();
      await writeFile(w.root, chain.rootPem, { mode: 0o644 });
      await writeFile(w.intermediate, chain.intermediatePem, { mode: 0o644 });
      await writeFile(w.crl, chain.rootCrlPem, { mode: 0o644 });
      await writeFile(join(work, 'firmware'), `${STAND_IN_FIRMWARE}\n`, { mode: 0o644 });
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
      await rm(sock, { force: true });
    }
    await rm(join(work, 'setup.log'), { force: true });
    await rm(conf, { force: true });
    // Published whole: the state and the certificates appear together.
    await rm(join(dir, 'state'), { recursive: true, force: true });
    await rm(join(dir, 'manufacturer'), { recursive: true, force: true });
    await rename(w.state, join(dir, 'state'));
    await rename(join(work, 'firmware'), join(dir, 'firmware'));
    await rename(join(work, 'manufacturer'), join(dir, 'manufacturer'));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return true;
}

/** What the stand-in's "firmware" measures at boot: this machine's boot files, kernel and command line. */
export async function standInBootEvents(
  dir: string,
): Promise<{ pcr: number; type: number; data: Buffer; digest?: string }[]> {
  const events: { pcr: number; type: number; data: Buffer; digest?: string }[] = [];
  // The stand-in's "firmware" is its version line (written at manufacture; a firmware update
  // rewrites it, and the next boot measures the new one).
  const firmware = (await readFile(join(dir, 'firmware'), 'utf8').catch(() => STAND_IN_FIRMWARE)).trim();
  events.push({ pcr: 0, type: EV.S_CRTM_VERSION, data: Buffer.from(`${firmware}\0`, 'utf8') });
  for (let pcr = 0; pcr <= 7; pcr++) events.push({ pcr, type: EV.SEPARATOR, data: Buffer.alloc(4) });
  // The boot loader's measurements: every regular file in /boot, by name, then the kernel's own
  // identity (a machine without /boot still boots a kernel), then its command line.
  const names = (await readdir('/boot').catch(() => [] as string[])).sort();
  for (const name of names) {
    const path = join('/boot', name);
    const st = await stat(path).catch(() => undefined);
    if (st === undefined || !st.isFile()) continue;
    const digest = createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
    events.push({ pcr: 4, type: EV.IPL, data: Buffer.from(path, 'utf8'), digest });
  }
  const version = (await readFile('/proc/version', 'utf8').catch(() => 'unknown kernel')).trim();
  events.push({ pcr: 4, type: EV.IPL, data: Buffer.from(`kernel ${version}`, 'utf8') });
  const cmdline = (await readFile('/proc/cmdline', 'utf8').catch(() => '')).trim();
  events.push({ pcr: 5, type: EV.IPL, data: Buffer.from(cmdline, 'utf8') });
  return events;
}

/** Whether the stand-in's swtpm is running and was booted (its boot record names its process). */
async function standInRunning(p: StandInPaths): Promise<boolean> {
  const pid = Number((await readFile(p.pid, 'utf8').catch(() => '')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 0 || !processAlive(pid)) return false;
  const boot = await readFile(p.boot, 'utf8').catch(() => '');
  try {
    if ((JSON.parse(boot) as { pid?: number }).pid !== pid) return false;
  } catch {
    return false;
  }
  // A live, booted process is running: a busy TPM (another client's connection, a full listen
  // backlog) must never look dead and be restarted under its users.
  return (
    existsSync(p.socket) && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(p.state)
  );
}

/**
 * Start the stand-in's swtpm unless it runs (one process per machine, outliving this one), and
 * boot it: PCRs 0–7 extended with {@link standInBootEvents}, the event log written beside it.
 * Concurrent starters wait for the one holding the start lock.
 * @throws GatehouseError TPM_UNAVAILABLE
 */
export async function startStandIn(dir: string): Promise<string> {
  const p = standInPaths(dir);
  if (!isStandInManufactured(dir))
    throw tpmError(`no host TPM stand-in is manufactured at ${dir}: run scripts/setup (or gatehouse init)`);
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (await standInRunning(p)) return p.socket;
    try {
      await writeFile(p.lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
    } catch {
      const holder = Number((await readFile(p.lock, 'utf8').catch(() => '')).trim());
      if (holder > 0 && !processAlive(holder)) await rm(p.lock, { force: true });
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    try {
      if (await standInRunning(p)) return p.socket;
      // A stale process (booted by nobody) is stopped: its PCRs say nothing.
      const old = Number((await readFile(p.pid, 'utf8').catch(() => '')).trim());
      if (
        old > 0 &&
        processAlive(old) &&
        (await readFile(`/proc/${old}/cmdline`, 'utf8').catch(() => '')).includes(p.state)
      )
        process.kill(old, 'SIGKILL');
      await rm(p.socket, { force: true });
      await rm(p.pid, { force: true });
      await rm(p.boot, { force: true });
      const proc = spawn('swtpm', swtpmArgs(p.state, p.socket, p.pid), { stdio: 'ignore', detached: true });
      proc.unref();
      await waitForSocket(p.socket, 5000);
      await waitForSocket(p.pid, 5000);
      const events = await standInBootEvents(dir);
      const tpm = new TpmClient(p.socket);
      try {
        for (const e of events)
          await tpm.extend(e.pcr, e.digest ?? createHash('sha256').update(e.data).digest('hex'));
      } finally {
        tpm.close();
      }
      await writeFile(`${p.bootLog}.tmp`, writeEventLog(events), { mode: 0o644 });
      await rename(`${p.bootLog}.tmp`, p.bootLog);
      const pid = Number((await readFile(p.pid, 'utf8')).trim());
      await writeFile(p.boot, `${JSON.stringify({ pid, bootedAt: new Date().toISOString() })}\n`, {
        mode: 0o644,
      });
      return p.socket;
    } finally {
      await rm(p.lock, { force: true });
    }
  }
  throw tpmError(`the host TPM stand-in at ${dir} could not be started`);
}

/**
 * Stop the stand-in's swtpm (tests, and a "reboot"): the next use starts and boots it again.
 * Only the process serving this directory's state is signalled.
 */
export async function stopStandIn(dir: string): Promise<void> {
  const p = standInPaths(dir);
  const pid = Number((await readFile(p.pid, 'utf8').catch(() => '')).trim());
  if (
    pid > 0 &&
    processAlive(pid) &&
    (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(p.state)
  ) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  }
  await rm(p.boot, { force: true });
  await rm(p.socket, { force: true });
}

/** TPMT_PUBLIC template of an ECC P-256 ECDSA/SHA-256 signing key born in the TPM. */
function signingKeyTemplate(restricted: boolean): Buffer {
  return marshalTpmtPublic({
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes:
      TPMA_OBJECT.fixedTPM |
      TPMA_OBJECT.fixedParent |
      TPMA_OBJECT.sensitiveDataOrigin |
      TPMA_OBJECT.userWithAuth |
      TPMA_OBJECT.sign |
      (restricted ? TPMA_OBJECT.restricted : 0),
    authPolicy: Buffer.alloc(0),
    symmetric: { algorithm: TPM_ALG.NULL },
    scheme: { algorithm: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
    ecc: { curve: TPM_ECC.NIST_P256, kdf: TPM_ALG.NULL, x: Buffer.alloc(0), y: Buffer.alloc(0) },
  });
}

/** DER ECDSA-Sig-Value of a TPMT_SIGNATURE (ECDSA). */
function derEcdsa(tpmtSignature: Buffer): Buffer {
  const sig = parseSignature(tpmtSignature);
  if (sig.ecdsa === undefined) throw tpmError('the TPM answered TPM2_Sign with a non-ECDSA signature');
  const int = (b: Buffer) => {
    let v = b;
    while (v.length > 1 && v[0] === 0 && ((v[1] ?? 0) & 0x80) === 0) v = v.subarray(1);
    if (((v[0] ?? 0) & 0x80) !== 0) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(sig.ecdsa.r), int(sig.ecdsa.s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** Whether a persistent handle holds an object. */
async function present(tpm: TpmClient, handle: number): Promise<Buffer | undefined> {
  try {
    return await tpm.readPublic(handle);
  } catch {
    return undefined;
  }
}

/**
 * The host TPM, reached through its device or the stand-in's socket. Every method opens the
 * connection it needs and closes it when done: swtpm serves one connection at a time, and every
 * home and runner of the machine shares this TPM.
 */
export class HostTpm {
  readonly location: HostTpmLocation;
  readonly #path: string;
  /** One operation at a time from this process. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(location: HostTpmLocation, path: string) {
    this.location = location;
    this.#path = path;
  }

  /**
   * Open the host TPM at `location`; a stand-in is started (and booted) when it does not run.
   * @throws GatehouseError TPM_UNAVAILABLE
   */
  static async open(location: HostTpmLocation = hostTpmLocation()): Promise<HostTpm> {
    if (location.kind === 'device') {
      if (!existsSync(location.path)) throw tpmError(`the host TPM ${location.path} does not exist`);
      return new HostTpm(location, location.path);
    }
    return new HostTpm(location, await startStandIn(location.dir));
  }

  #with<T>(use: (tpm: TpmClient) => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      // The stand-in may have been stopped (a reboot) since: started and booted again.
      if (this.location.kind === 'stand-in') await startStandIn(this.location.dir);
      const tpm = new TpmClient(this.#path);
      try {
        return await use(tpm);
      } finally {
        tpm.close();
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** The DER EK certificate from its TCG NV index. */
  ekCertificate(): Promise<Buffer> {
    return this.#with(async (tpm) => {
      const bytes = await tpm.nvRead(HOST_TPM_HANDLES.ekCertNv);
      const len = derLen(bytes);
      if (len < 0 || len > bytes.length)
        throw tpmError('the host EK certificate NV index holds no DER certificate');
      return bytes.subarray(0, len);
    });
  }

  /** The intermediate CA certificates (PEM) between the EK certificate and its manufacturer root. */
  async ekIntermediates(): Promise<string[]> {
    const files =
      this.location.kind === 'stand-in'
        ? [standInPaths(this.location.dir).intermediate]
        : (process.env.GATEHOUSE_HOST_TPM_CHAIN ?? '').split(':').filter((f) => f !== '');
    return Promise.all(files.map((f) => readFile(f, 'utf8')));
  }

  /** The manufacturer root of a stand-in (for its own machine's `init` to trust), else undefined. */
  manufacturerRoot(): string | undefined {
    if (this.location.kind !== 'stand-in') return undefined;
    return readFileSync(standInPaths(this.location.dir).root, 'utf8');
  }

  /** The CRLs a stand-in's manufacturer published (PEM). */
  manufacturerCrls(): string[] {
    if (this.location.kind !== 'stand-in') return [];
    const p = standInPaths(this.location.dir).crl;
    return existsSync(p) ? [readFileSync(p, 'utf8')] : [];
  }

  /** The boot's event log, as the firmware (or the stand-in's boot) wrote it. */
  async bootLog(): Promise<Buffer> {
    const path =
      this.location.kind === 'stand-in' ? standInPaths(this.location.dir).bootLog : DEVICE_EVENT_LOG;
    try {
      return await readFile(path);
    } catch (e) {
      throw tpmError(`the host's boot event log ${path} cannot be read`, e);
    }
  }

  /** The host AK's TPM2B_PUBLIC, created under the EK and made persistent the first time. */
  ensureAk(): Promise<Buffer> {
    return this.#with(async (tpm) => {
      const have = await present(tpm, HOST_TPM_HANDLES.ak);
      if (have !== undefined) return have;
      const key = await tpm.create(HOST_TPM_HANDLES.ek, signingKeyTemplate(true), true);
      const handle = await tpm.load(HOST_TPM_HANDLES.ek, key, true);
      try {
        await tpm.evictControl(handle, HOST_TPM_HANDLES.ak);
      } finally {
        await tpm.flush(handle);
      }
      return tpm.readPublic(HOST_TPM_HANDLES.ak);
    });
  }

  /**
   * The vTPM EK certificate issuing key's TPM2B_PUBLIC: an unrestricted ECDSA P-256 signing key
   * under the storage root key, fixedTPM|fixedParent, created and made persistent the first time.
   */
  ensureVtpmCaKey(): Promise<Buffer> {
    return this.#with(async (tpm) => {
      const have = await present(tpm, HOST_TPM_HANDLES.vtpmCa);
      if (have !== undefined) return have;
      const key = await tpm.create(HOST_TPM_HANDLES.srk, signingKeyTemplate(false));
      const handle = await tpm.load(HOST_TPM_HANDLES.srk, key);
      try {
        await tpm.evictControl(handle, HOST_TPM_HANDLES.vtpmCa);
      } finally {
        await tpm.flush(handle);
      }
      return tpm.readPublic(HOST_TPM_HANDLES.vtpmCa);
    });
  }

  /** The storage root key's TPM2B_PUBLIC (the vTPM CA key's parent, for its qualified Name). */
  srkPublic(): Promise<Buffer> {
    return this.#with((tpm) => tpm.readPublic(HOST_TPM_HANDLES.srk));
  }

  /** TPM2_ActivateCredential of a MakeCredential blob for the host AK under the host EK. */
  activateCredential(blob: Uint8Array): Promise<Buffer> {
    const { idObject, encryptedSecret } = parseCredentialBlob(blob);
    return this.#with((tpm) =>
      tpm.activateCredential(HOST_TPM_HANDLES.ak, HOST_TPM_HANDLES.ek, idObject, encryptedSecret),
    );
  }

  /** A quote by the host AK over SHA-256 PCRs, with the PCR values it covers. */
  quote(
    qualifyingData: Uint8Array,
    pcrs: readonly number[],
  ): Promise<{ attest: Buffer; signature: Buffer; pcrs: Record<string, string> }> {
    return this.#with(async (tpm) => {
      const q = await tpm.quote(HOST_TPM_HANDLES.ak, qualifyingData, pcrs);
      return { ...q, pcrs: await tpm.readPcrs(pcrs) };
    });
  }

  /** TPM2_Certify of the vTPM CA key by the host AK. */
  certifyVtpmCaKey(qualifyingData: Uint8Array): Promise<{ attest: Buffer; signature: Buffer }> {
    return this.#with((tpm) => tpm.certify(HOST_TPM_HANDLES.vtpmCa, HOST_TPM_HANDLES.ak, qualifyingData));
  }

  /** Extend a PCR of the host TPM (what a later boot stage does; tests drift a host with it). */
  extend(pcr: number, digestHex: string): Promise<void> {
    return this.#with((tpm) => tpm.extend(pcr, digestHex));
  }

  /**
   * Seal `data` to this TPM: a sealed data object under the storage root key, fixedTPM and
   * fixedParent, so that only this TPM's storage key can load it and no other machine can unseal.
   * @returns the sealed blob: its TPM2B_PRIVATE then its TPM2B_PUBLIC, as marshalled
   */
  seal(data: Uint8Array): Promise<Buffer> {
    return this.#with(async (tpm) => {
      const sealed = await tpm.seal(HOST_TPM_HANDLES.srk, data);
      return Buffer.concat([sealed.private, sealed.public]);
    });
  }

  /**
   * Unseal a blob made by {@link HostTpm.seal}: loaded under the storage root key, unsealed and
   * flushed. A blob sealed by another TPM fails to load (its integrity does not check under
   * this TPM's storage key).
   * @throws GatehouseError KEY_UNAVAILABLE when the blob is malformed or this TPM refuses it,
   *   TPM_UNAVAILABLE when the TPM cannot be reached
   */
  async unseal(blob: Uint8Array): Promise<Buffer> {
    let key: { private: Buffer; public: Buffer };
    try {
      const r = new TpmReader(blob, 'sealed blob');
      const priv = r.tpm2b(4096, 'TPM2B_PRIVATE');
      const pub = r.tpm2b(4096, 'TPM2B_PUBLIC');
      r.end();
      key = { private: new TpmWriter().tpm2b(priv).done(), public: new TpmWriter().tpm2b(pub).done() };
    } catch (e) {
      throw new GatehouseError('KEY_UNAVAILABLE', 'the sealed blob is malformed', { cause: e });
    }
    return this.#with(async (tpm) => {
      try {
        const handle = await tpm.load(HOST_TPM_HANDLES.srk, key);
        try {
          return await tpm.unseal(handle);
        } finally {
          await tpm.flush(handle);
        }
      } catch (e) {
        if (!(e instanceof TpmResponseError)) throw e;
        throw new GatehouseError(
          'KEY_UNAVAILABLE',
          `${describeHostTpm(this.location)} refuses to unseal the blob (response code 0x${e.responseCode.toString(16)})`,
          { cause: e },
        );
      }
    });
  }

  /** Sign `data` (SHA-256) with the vTPM CA key, inside the TPM: a DER ECDSA signature. */
  signWithVtpmCaKey(data: Uint8Array): Promise<Buffer> {
    const digest = createHash('sha256').update(data).digest();
    return this.#with(async (tpm) => derEcdsa(await tpm.sign(HOST_TPM_HANDLES.vtpmCa, digest)));
  }
}

/** The public key of a TPM2B_PUBLIC. */
export function keyOfTpm2bPublic(bytes: Uint8Array, what: string): KeyObject {
  return publicKeyOf(parseTpm2bPublic(bytes, what));
}

/** A name for this machine's host TPM, for messages and subjects. */
export function machineName(): string {
  return (
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9.-]+/g, '-')
      .slice(0, 63) || 'host'
  );
}

function derLen(der: Uint8Array): number {
  if (der.length < 2 || der[0] !== 0x30) return -1;
  const first = der[1] ?? 0;
  if ((first & 0x80) === 0) return 2 + first;
  const n = first & 0x7f;
  if (n < 1 || n > 3 || der.length < 2 + n) return -1;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (der[2 + i] ?? 0);
  return 2 + n + len;
}
