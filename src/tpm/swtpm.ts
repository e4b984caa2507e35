import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import { processAlive } from '../common/process.ts';
import type { KeyProtection } from '../signing/key-file.ts';
import { parseCredentialBlob } from './credential.ts';
import type { VtpmEkCertIssuer } from './host-vtpm-ca.ts';
import { platformCaPaths, withPlatformCaKeyForTool } from './platform-ca.ts';
import type { VtpmStateSealer } from './state-sealer.ts';
import { parseTpm2bPublic, publicKeyOf } from './structures.ts';
import { TpmClient } from './tpm-client.ts';

/** Persistent handles in a manufactured vTPM: the TCG RSA 2048 EK and its cert, and the AK. */
export const VTPM_HANDLES = { ek: '0x81010001', ekCertNv: '0x1c00002', ak: '0x81008001' } as const;

const TOOL_TIMEOUT_MS = 15_000;

/** The file in an encrypted vTPM state directory that holds its key, sealed to the host TPM. */
export const VTPM_SEALED_KEY_FILE = 'state-key.sealed';
/** A state key: AES-128, the size swtpm_setup accepts (`--keyfile-fd`, 32 hex digits). */
const STATE_KEY_BYTES = 16;

function tpmError(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('TPM_UNAVAILABLE', message, cause === undefined ? {} : { cause });
}

function run(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  fd3?: string,
): Promise<Buffer> {
  if (fd3 !== undefined) return runWithFd3(cmd, args, fd3);
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env, encoding: 'buffer', timeout: TOOL_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err !== null) {
          const lines = stderr
            .toString('utf8')
            .split('\n')
            .filter((l) => l.trim() !== '' && !l.includes('Data client'));
          reject(tpmError(`${cmd} failed: ${lines.slice(-1)[0] ?? err.message}`, err));
        } else resolve(stdout);
      },
    );
  });
}

/** Run a tool that reads a secret from file descriptor 3 (a pipe: the secret never touches disk). */
function runWithFd3(cmd: string, args: readonly string[], secret: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    proc.stdout?.on('data', (d: Buffer) => out.push(d));
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString('utf8');
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), TOOL_TIMEOUT_MS);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(tpmError(`${cmd} cannot be started (is it installed?)`, e));
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else reject(tpmError(`${cmd} failed: ${err.trim().split('\n').slice(-1)[0] ?? `exit ${code}`}`));
    });
    writeSecret(proc, secret);
  });
}

/** Write a secret to a child's fd 3 and close it (EPIPE, a child that exited early, is ignored). */
function writeSecret(proc: ChildProcess, secret: string): void {
  const pipe = proc.stdio[3] as (NodeJS.WritableStream & { on(e: 'error', f: () => void): void }) | null;
  // No pipe when the tool could not be spawned: its 'error' event reports that.
  if (pipe === null || pipe === undefined) return;
  pipe.on('error', () => undefined);
  pipe.end(secret);
}

async function waitFor(path: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(path)) return;
    if (proc.exitCode !== null) throw tpmError(`swtpm exited with code ${proc.exitCode} before listening`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw tpmError('swtpm did not open its socket within 2 s');
}

/**
 * A running swtpm instance over one TPM state directory, driven with tpm2-tools through the swtpm
 * TCTI. One per runner; {@link VirtualTpm.destroy} stops it and deletes its state.
 */
export class VirtualTpm {
  readonly stateDir: string;
  readonly #proc: ChildProcess;
  readonly #sockDir: string;
  readonly #env: NodeJS.ProcessEnv;
  /** Attestation's commands, spoken directly over the socket (a tpm2-tools process each is ~10 ms). */
  readonly #client: TpmClient;
  #stopped = false;
  #launched: readonly LaunchEvent[] = [];

  private constructor(stateDir: string, proc: ChildProcess, sockDir: string, socket: string) {
    this.stateDir = stateDir;
    this.#proc = proc;
    this.#sockDir = sockDir;
    this.#env = { ...process.env, TPM2TOOLS_TCTI: `swtpm:path=${socket}` };
    this.#client = new TpmClient(socket);
  }

  /** The TCTI string tpm2-tools (and the shell client) use for this vTPM. */
  get tcti(): string {
    return this.#env.TPM2TOOLS_TCTI ?? '';
  }

  /**
   * Start swtpm on a manufactured state directory.
   * @throws GatehouseError TPM_UNAVAILABLE when swtpm cannot start
   */
  static async start(stateDir: string, stateKey?: Uint8Array): Promise<VirtualTpm> {
    // Socket paths are short-lived and must stay under the 108-byte limit, whatever the home's path.
    const sockDir = await mkdtemp(join(tmpdir(), 'gh-vtpm-'));
    const socket = join(sockDir, 'tpm.sock');
    const proc = spawn(
      'swtpm',
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${stateDir}`,
        '--server',
        `type=unixio,path=${socket}`,
        '--ctrl',
        `type=unixio,path=${socket}.ctrl`,
        '--flags',
        'startup-clear',
        // An encrypted state's key comes over a pipe, never from a file (AES-128-CBC: the one
        // key size swtpm_setup supports when it writes the state).
        ...(stateKey === undefined ? [] : ['--key', 'fd=3,mode=aes-cbc,format=hex']),
      ],
      { stdio: stateKey === undefined ? 'ignore' : ['ignore', 'ignore', 'ignore', 'pipe'] },
    );
    if (stateKey !== undefined) writeSecret(proc, Buffer.from(stateKey).toString('hex'));
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('error', (e) => reject(tpmError('swtpm cannot be started (is it installed?)', e)));
      proc.once('spawn', () => resolve());
    });
    try {
      await spawned;
      // Who runs this vTPM: a pool sweep destroys it once that process is gone (SIGKILL).
      await writeFile(ownerFile(stateDir), `${process.pid} ${proc.pid ?? 0} ${sockDir}\n`, { mode: 0o600 });
      await waitFor(`${socket}.ctrl`, proc);
      await waitFor(socket, proc);
    } catch (e) {
      proc.kill('SIGKILL');
      await rm(sockDir, { recursive: true, force: true });
      throw e;
    }
    return new VirtualTpm(stateDir, proc, sockDir, socket);
  }

  /**
   * Run a tpm2-tools command against this vTPM; returns stdout. The direct client's connection is
   * closed first: swtpm serves one connection at a time.
   */
  tool(name: string, args: readonly string[]): Promise<Buffer> {
    if (this.#stopped) return Promise.reject(tpmError('the vTPM has been destroyed'));
    this.#client.close();
    return run(name, args, this.#env);
  }

  /** The direct TPM client, once this vTPM is known to be running. */
  #tpm(): TpmClient {
    if (this.#stopped) throw tpmError('the vTPM has been destroyed');
    return this.#client;
  }

  /**
   * What the launcher extended when the pool handed this vTPM out (src/agent/launcher.ts): the
   * first events of its log, which the job's agent neither computed nor chose.
   */
  get launched(): readonly LaunchEvent[] {
    return this.#launched;
  }

  /** Extend the launcher's events (once, on the claim path, before the job has the vTPM). */
  async launch(events: readonly LaunchEvent[]): Promise<void> {
    if (this.#launched.length > 0) throw tpmError('the vTPM was already launched');
    await this.extend(events);
    this.#launched = Object.freeze(events.map((e) => Object.freeze({ ...e })));
  }

  /** Extend SHA-256 PCRs with event digests, in order. */
  async extend(events: readonly { pcr: number; digest: string }[]): Promise<void> {
    const tpm = this.#tpm();
    for (const e of events) await tpm.extend(e.pcr, e.digest);
  }

  /** Read SHA-256 PCR values. */
  readPcrs(pcrs: readonly number[]): Promise<Record<string, string>> {
    return this.#tpm().readPcrs(pcrs);
  }

  /** The DER EK certificate from its NV index. */
  async ekCertificate(): Promise<Buffer> {
    // The NV index may be larger than the certificate: keep exactly the outer DER SEQUENCE.
    return derPrefix(await this.#tpm().nvRead(Number(VTPM_HANDLES.ekCertNv)));
  }

  /** Have `issuer` certify the EK and write the certificate at the TCG NV index (manufacturing). */
  async provisionEkCertificate(issuer: VtpmEkCertIssuer): Promise<void> {
    const tpm = this.#tpm();
    const ek = publicKeyOf(parseTpm2bPublic(await tpm.readPublic(Number(VTPM_HANDLES.ek)), 'vTPM EK'));
    await tpm.nvDefineAndWrite(Number(VTPM_HANDLES.ekCertNv), await issuer.issue(ek));
  }

  /** The AK's TPM2B_PUBLIC. */
  akPublic(): Promise<Buffer> {
    return this.#tpm().readPublic(Number(VTPM_HANDLES.ak));
  }

  /** TPM2_ActivateCredential with the EK (policy session with PolicySecret(endorsement)) and AK. */
  activateCredential(blob: Uint8Array): Promise<Buffer> {
    const { idObject, encryptedSecret } = parseCredentialBlob(blob);
    return this.#tpm().activateCredential(
      Number(VTPM_HANDLES.ak),
      Number(VTPM_HANDLES.ek),
      idObject,
      encryptedSecret,
    );
  }

  /** TPM2_Quote with the AK over PCRs of a bank (SHA-256 by default): TPMS_ATTEST and TPMT_SIGNATURE. */
  quote(
    qualifyingData: Uint8Array,
    pcrs: readonly number[],
    bank = 'sha256',
  ): Promise<{ attest: Buffer; signature: Buffer }> {
    return this.#tpm().quote(Number(VTPM_HANDLES.ak), qualifyingData, pcrs, bank);
  }

  /** Stop swtpm, keeping the TPM state (used after manufacturing). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#client.close();
    const exited = new Promise<void>((r) => {
      if (this.#proc.exitCode !== null) r();
      else this.#proc.once('exit', () => r());
    });
    this.#proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise((r) => {
      timer = setTimeout(r, 2000);
    });
    await Promise.race([exited, grace]);
    // Cleared at once: a pending timer would keep the process alive for its whole 2 s.
    clearTimeout(timer);
    if (this.#proc.exitCode === null) this.#proc.kill('SIGKILL');
    await rm(this.#sockDir, { recursive: true, force: true });
  }

  /** Stop swtpm and delete the TPM state: this vTPM is gone. */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.stateDir, { recursive: true, force: true });
    await rm(ownerFile(this.stateDir), { force: true });
  }
}

/** An event the launcher extends into a vTPM before a job has it (a measurement event). */
export interface LaunchEvent {
  readonly pcr: number;
  readonly type: 'agent';
  readonly name: string;
  readonly digest: string;
}

/** What the pool's claim path extends into each vTPM it hands out (src/agent/launcher.ts). */
export type Launcher = () => Promise<readonly LaunchEvent[]>;

/** The file naming the process that runs a vTPM state, beside the state. */
/** SIGKILL every swtpm process serving `stateDir` (found by its `--tpmstate dir=` argument). */
async function killSwtpmServing(stateDir: string): Promise<void> {
  const wanted = `dir=${stateDir}`;
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.endsWith('swtpm') === true && argv.includes(wanted)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

function ownerFile(stateDir: string): string {
  return `${stateDir}.owner`;
}

function derPrefix(bytes: Buffer): Buffer {
  if (bytes[0] !== 0x30 || bytes.length < 4)
    throw tpmError('the EK certificate NV index holds no DER certificate');
  const first = bytes[1] ?? 0;
  let len = first;
  let head = 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n < 1 || n > 3) throw tpmError('the EK certificate NV index holds no DER certificate');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (bytes[2 + i] ?? 0);
    head = 2 + n;
  }
  if (head + len > bytes.length) throw tpmError('the EK certificate in NV is truncated');
  return bytes.subarray(0, head + len);
}

/** Options for {@link manufactureVtpm}. */
export interface ManufactureOptions {
  /**
   * Who issues the EK certificate: the host TPM's vTPM CA key (what a home uses), or, for tools
   * and tests of the TPM protocol alone, a file-based platform CA directory (see ensurePlatformCa).
   */
  readonly ekIssuer?: VtpmEkCertIssuer;
  /** Directory of the platform CA that signs the EK certificate when there is no `ekIssuer`. */
  readonly platformCaDir?: string;
  /** How the platform CA key is sealed (the home's key protection); default `none` (a plain key). */
  readonly platformCaProtection?: KeyProtection;
  /** PCR banks to activate; default sha256 only. */
  readonly pcrBanks?: readonly string[];
  /**
   * Who seals each state's encryption key to the host TPM (what a home uses): the state is then
   * encrypted by swtpm with a fresh random key that exists in the clear only in memory and in
   * pipes to swtpm. Absent, the state is not encrypted (tools and tests of the TPM protocol alone).
   */
  readonly stateSealer?: VtpmStateSealer;
}

/**
 * Manufacture a vTPM into `stateDir`: swtpm_setup creates the EKs and has swtpm_localca issue
 * the EK certificate with the platform CA (TCG OIDs, critical SAN), then an ECC P-256
 * restricted-signing AK is created under the RSA EK and made persistent. Takes about a second.
 * With a state sealer, the state is encrypted by swtpm under a fresh key, and the key, sealed to
 * the host TPM, is written beside it ({@link VTPM_SEALED_KEY_FILE}).
 * @throws GatehouseError TPM_UNAVAILABLE
 */
export async function manufactureVtpm(stateDir: string, options: ManufactureOptions): Promise<void> {
  const issuer = options.ekIssuer;
  const ca = issuer === undefined ? platformCaPaths(options.platformCaDir ?? '') : undefined;
  if (ca !== undefined && !existsSync(ca.cert))
    throw new GatehouseError('BAD_CONFIG', 'the platform CA is missing: run `gatehouse init`', {
      where: ca.dir,
    });
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const stateKey = options.stateSealer === undefined ? undefined : randomBytes(STATE_KEY_BYTES);
  try {
    if (stateKey !== undefined && options.stateSealer !== undefined)
      await writeFile(join(stateDir, VTPM_SEALED_KEY_FILE), await options.stateSealer.seal(stateKey), {
        mode: 0o600,
      });
    await manufactureInto(stateDir, options, stateKey);
  } finally {
    stateKey?.fill(0);
  }
}

async function manufactureInto(
  stateDir: string,
  options: ManufactureOptions,
  stateKey: Buffer | undefined,
): Promise<void> {
  const issuer = options.ekIssuer;
  const ca = issuer === undefined ? platformCaPaths(options.platformCaDir ?? '') : undefined;
  // Starting the new vTPM below records its swtpm in the owner file; what was there is restored.
  const claim = await readFile(ownerFile(stateDir), 'utf8').catch(() => undefined);
  const work = await mkdtemp(join(tmpdir(), 'gh-vtpm-mfg-'));
  try {
    const opts = join(work, 'localca.options');
    const setup = join(work, 'swtpm_setup.conf');
    const banks = `active_pcr_banks = ${(options.pcrBanks ?? ['sha256']).join(',')}\n`;
    const setupRun = (args: string[]) =>
      run(
        'swtpm_setup',
        [
          '--tpm2',
          '--tpmstate',
          stateDir,
          ...args,
          ...(stateKey === undefined ? [] : ['--keyfile-fd', '3']),
          '--config',
          setup,
          '--logfile',
          join(work, 'log'),
        ],
        process.env,
        stateKey?.toString('hex'),
      ).catch(async (e: unknown) => {
        const log = await readFile(join(work, 'log'), 'utf8').catch(() => '');
        throw tpmError(`swtpm_setup failed: ${log.trim().split('\n').slice(-1)[0] ?? ''}`, e);
      });
    if (ca === undefined) {
      // The EK is made here and certified below, by the host TPM's key: no CA key file exists.
      await writeFile(setup, banks);
      await setupRun(['--createek']);
    } else {
      await writeFile(
        opts,
        '--platform-manufacturer gatehouse\n--platform-version 1\n--platform-model vtpm\n',
      );
      // swtpm_localca reads the CA key itself: it gets a decrypted copy that exists only while
      // swtpm_setup runs (see withPlatformCaKeyForTool), never the sealed file's secret.
      await withPlatformCaKeyForTool(
        ca.dir,
        options.platformCaProtection ?? { kind: 'none' },
        async (signkey) => {
          const localca = join(work, 'localca.conf');
          await writeFile(
            localca,
            `statedir = ${ca.dir}\nsigningkey = ${signkey}\nissuercert = ${ca.cert}\ncertserial = ${ca.serial}\n`,
          );
          await writeFile(
            setup,
            `create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${localca}\ncreate_certs_tool_options = ${opts}\n${banks}`,
          );
          await setupRun(['--create-ek-cert']);
        },
      );
    }
    const tpm = await VirtualTpm.start(stateDir, stateKey);
    try {
      if (issuer !== undefined) await tpm.provisionEkCertificate(issuer);
      const ctx = join(work, 'ak.ctx');
      await tpm.tool('tpm2_createak', [
        '-C',
        VTPM_HANDLES.ek,
        '-c',
        ctx,
        '-G',
        'ecc',
        '-g',
        'sha256',
        '-s',
        'ecdsa',
      ]);
      await tpm.tool('tpm2_evictcontrol', ['-C', 'o', '-c', ctx, VTPM_HANDLES.ak]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
    } finally {
      await tpm.tool('tpm2_shutdown', []).catch(() => undefined);
      await tpm.stop();
      if (claim === undefined) await rm(ownerFile(stateDir), { force: true });
      else await writeFile(ownerFile(stateDir), claim, { mode: 0o600 });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * A pool of vTPM states manufactured ahead of time under `dir`: `ready/<id>` are unused states;
 * {@link VtpmPool.take} claims one by an atomic rename, so each is used by exactly one runner,
 * and the runner's {@link VirtualTpm.destroy} deletes it. An empty pool manufactures on demand.
 */
export class VtpmPool {
  readonly #dir: string;
  readonly #options: ManufactureOptions;
  readonly #launcher: Launcher | undefined;

  /**
   * @param launcher what {@link VtpmPool.take} extends into each vTPM before handing it out (the
   *   agent's measurement, src/agent/launcher.ts); absent, vTPMs are handed out as manufactured
   *   (the TPM protocol's own tests), and a job's log then lacks its agent event.
   */
  constructor(dir: string, options: ManufactureOptions, launcher?: Launcher) {
    this.#dir = dir;
    this.#options = options;
    this.#launcher = launcher;
  }

  get #ready(): string {
    return join(this.#dir, 'ready');
  }

  get #inUse(): string {
    return join(this.#dir, 'in-use');
  }

  /** States ready to use. */
  async size(): Promise<number> {
    return (await readdir(this.#ready).catch(() => [])).filter((n) => !n.startsWith('.')).length;
  }

  /** Where the pool lives (its `ready/` and `in-use/` folders). */
  get dir(): string {
    return this.#dir;
  }

  /** Manufacture states until `count` are ready; returns how many were made. */
  async fill(count: number): Promise<number> {
    await mkdir(this.#ready, { recursive: true, mode: 0o700 });
    await this.#sweepHalfMade();
    let made = 0;
    while ((await this.size()) < count) {
      const id = randomBytes(8).toString('hex');
      // Manufacture under a dot-name and rename when complete, so a half-made state is never taken;
      // the name carries the manufacturer's pid, so that what a killed filler left can be removed.
      const tmp = join(this.#ready, `.mfg-${process.pid}-${id}`);
      try {
        await manufactureVtpm(tmp, this.#options);
      } catch (e) {
        await rm(tmp, { recursive: true, force: true });
        throw e;
      }
      await rename(tmp, join(this.#ready, id));
      made++;
    }
    return made;
  }

  /** Remove half-manufactured states whose manufacturer is gone (a filler killed mid-way). */
  async #sweepHalfMade(): Promise<void> {
    for (const name of await readdir(this.#ready).catch(() => [] as string[])) {
      const pid = Number(/^\.mfg-(\d+)-/.exec(name)?.[1]); // the state and its .owner file
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid))
        await rm(join(this.#ready, name), { recursive: true, force: true });
    }
  }

  /**
   * Destroy the vTPMs in use by processes that are gone (an agent killed with SIGKILL): stop their
   * swtpm, delete their state and socket directory.
   * @returns the states destroyed
   */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    const names = await readdir(this.#inUse).catch(() => [] as string[]);
    for (const name of names) {
      // An owner file whose state never arrived (killed between the two): the file alone goes.
      if (name.endsWith('.owner')) {
        const owner = Number((await readFile(join(this.#inUse, name), 'utf8').catch(() => '')).split(' ')[0]);
        if (!names.includes(name.slice(0, -6)) && owner > 0 && !processAlive(owner))
          await rm(join(this.#inUse, name), { force: true });
        continue;
      }
      const state = join(this.#inUse, name);
      const [owner, swtpm, sockDir] = (await readFile(ownerFile(state), 'utf8').catch(() => ''))
        .trim()
        .split(' ');
      const agent = Number(owner);
      if (!Number.isSafeInteger(agent) || agent <= 0 || processAlive(agent)) continue;
      const tpmPid = Number(swtpm);
      // Only the swtpm serving this state: a reused pid belongs to someone else. An agent killed
      // after starting swtpm but before recording its pid left one nobody named: found by its state.
      if (tpmPid > 0 && (await readFile(`/proc/${tpmPid}/cmdline`, 'utf8').catch(() => '')).includes(state))
        process.kill(tpmPid, 'SIGKILL');
      else await killSwtpmServing(state);
      if (sockDir?.startsWith(join(tmpdir(), 'gh-vtpm-')))
        await rm(sockDir, { recursive: true, force: true });
      await rm(state, { recursive: true, force: true });
      await rm(ownerFile(state), { force: true });
      removed.push(state);
    }
    return removed;
  }

  /**
   * Claim one state (or manufacture one), start it and have the launcher measure into it: the
   * vTPM reaches the job with the agent's measurement already extended.
   */
  async take(): Promise<VirtualTpm> {
    // The digest is taken while the state starts: the launcher adds no time of its own.
    const [claimed, measured] = await Promise.allSettled([this.#claim(), this.#launcher?.()]);
    if (claimed.status === 'rejected') throw claimed.reason;
    const tpm = claimed.value;
    try {
      if (measured.status === 'rejected') throw measured.reason;
      if (measured.value !== undefined) await tpm.launch(measured.value);
    } catch (e) {
      // A vTPM the launcher could not measure into is never handed out.
      await tpm.destroy();
      throw e;
    }
    return tpm;
  }

  async #claim(): Promise<VirtualTpm> {
    await mkdir(this.#inUse, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.#ready).catch(() => [] as string[])) {
      if (name.startsWith('.')) continue;
      const target = join(this.#inUse, name);
      // Owned before it is taken: a process killed between the two leaves a state a sweep finds.
      await writeFile(ownerFile(target), `${process.pid} 0 -\n`, { mode: 0o600 });
      try {
        await rename(join(this.#ready, name), target);
      } catch {
        await rm(ownerFile(target), { force: true });
        continue; // another runner took it first
      }
      return this.#start(target);
    }
    const target = join(this.#inUse, randomBytes(8).toString('hex'));
    await writeFile(ownerFile(target), `${process.pid} 0 -\n`, { mode: 0o600 });
    await manufactureVtpm(target, this.#options);
    return this.#start(target);
  }

  /**
   * Start a claimed state. With a state sealer, its key is unsealed through the host TPM and
   * handed to swtpm over a pipe; a state whose key does not unseal here (made on another machine,
   * or before the host TPM was cleared), or that has no sealed key, is never started: it is
   * destroyed and the take refused. When the host TPM cannot be reached, the state is not at
   * fault: it goes back to `ready/` and the take fails.
   * @throws GatehouseError KEY_UNAVAILABLE when the state's key does not unseal, TPM_UNAVAILABLE
   */
  async #start(state: string): Promise<VirtualTpm> {
    const sealer = this.#options.stateSealer;
    if (sealer === undefined) return VirtualTpm.start(state);
    let key: Buffer;
    try {
      const sealed = await readFile(join(state, VTPM_SEALED_KEY_FILE)).catch((e: unknown) => {
        throw new GatehouseError('KEY_UNAVAILABLE', 'the state has no sealed key', { cause: e });
      });
      key = await sealer.unseal(sealed);
    } catch (e) {
      if (!isGatehouseError(e, 'KEY_UNAVAILABLE')) {
        await rename(state, join(this.#ready, basename(state))).catch(() =>
          rm(state, { recursive: true, force: true }),
        );
        await rm(ownerFile(state), { force: true });
        throw e;
      }
      await rm(state, { recursive: true, force: true });
      await rm(ownerFile(state), { force: true });
      throw new GatehouseError(
        'KEY_UNAVAILABLE',
        `the vTPM state ${state} was refused and destroyed: its key does not unseal with this host's TPM (a state made on another machine, or before the host TPM was cleared)`,
        { cause: e },
      );
    }
    try {
      return await VirtualTpm.start(state, key);
    } catch (e) {
      // A state that does not start with its own key is not handed out, nor kept.
      await rm(state, { recursive: true, force: true });
      await rm(ownerFile(state), { force: true });
      throw e;
    } finally {
      key.fill(0);
    }
  }
}
