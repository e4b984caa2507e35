/**
 * The few TPM 2.0 commands a runner needs at attestation time, spoken directly over swtpm's
 * command socket (raw TPM command and response buffers, TPM 2.0 Library Part 3), instead of one
 * tpm2-tools process per command: PCR_Extend, PCR_Read, NV_ReadPublic/NV_Read, ReadPublic,
 * StartAuthSession, PolicySecret, ActivateCredential, Quote and FlushContext; and, for the host TPM
 * and for manufacturing, Create, Load, EvictControl, Certify, Sign, NV_DefineSpace and NV_Write;
 * and Create of a sealed data object and Unseal (the vTPM pool's state keys).
 * It speaks to swtpm's socket or to a TPM character device (`/dev/tpmrm0`). Authorisations are
 * the empty password (TPM_RS_PW) and, for the EK, a policy session satisfied by
 * PolicySecret(TPM_RH_ENDORSEMENT), as the TCG EK template requires. One connection, one command at
 * a time; every response is bounds-checked as it is read.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { GatehouseError } from '../common/errors.ts';
import { TpmReader, TpmWriter } from './marshal.ts';

const ST_NO_SESSIONS = 0x8001;
const ST_SESSIONS = 0x8002;
const RS_PW = 0x40000009;
const RH_NULL = 0x40000007;
const RH_ENDORSEMENT = 0x4000000b;
const ALG_SHA256 = 0x000b;
const ALG_NULL = 0x0010;
const SE_POLICY = 0x01;

const RH_OWNER = 0x40000001;
const ALG_KEYEDHASH = 0x0008;
/** fixedTPM | fixedParent | userWithAuth | noDA: a sealed object only its parent here loads. */
const SEALED_ATTRIBUTES = (1 << 1) | (1 << 4) | (1 << 6) | (1 << 10);
/** The most a sealed data object holds (MAX_SYM_DATA). */
const MAX_SEALED = 128;
const ST_HASHCHECK = 0x8024;

const CC = {
  EvictControl: 0x120,
  NV_DefineSpace: 0x12a,
  NV_Write: 0x137,
  Certify: 0x148,
  Create: 0x153,
  Load: 0x157,
  Sign: 0x15d,
  Unseal: 0x15e,
  NV_Read: 0x14e,
  PolicySecret: 0x151,
  ActivateCredential: 0x147,
  Quote: 0x158,
  FlushContext: 0x165,
  NV_ReadPublic: 0x169,
  ReadPublic: 0x173,
  StartAuthSession: 0x176,
  PCR_Read: 0x17e,
  PCR_Extend: 0x182,
} as const;

/** TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING: send the same command again. */
const RETRY_CODES = new Set([0x922, 0x908, 0x90a]);

/** The largest response accepted (a TPM's are a few KiB). */
const MAX_RESPONSE = 64 * 1024;
/** NV reads go in chunks no larger than every TPM's NV buffer allows. */
const NV_CHUNK = 512;
const TIMEOUT_MS = 15_000;

function tpmError(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('TPM_UNAVAILABLE', message, cause === undefined ? {} : { cause });
}

/** A TPM answered a command with an error response code: it was reached, and it refused. */
export class TpmResponseError extends GatehouseError<'TPM_UNAVAILABLE'> {
  readonly responseCode: number;

  constructor(command: string, responseCode: number) {
    super(
      'TPM_UNAVAILABLE',
      `TPM2_${command} failed: response code 0x${responseCode.toString(16).padStart(3, '0')}`,
    );
    this.responseCode = responseCode;
  }
}

/** PCR banks by name, as TPM_ALG_ID. */
const BANKS: Record<string, number> = { sha1: 0x0004, sha256: ALG_SHA256, sha384: 0x000c };

/** TPML_PCR_SELECTION with one bank (SHA-256 unless said) selecting `pcrs` (24 PCRs, 3 bytes). */
function pcrSelection(w: TpmWriter, pcrs: readonly number[], bank = ALG_SHA256): TpmWriter {
  const map = Buffer.alloc(3);
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 23) throw tpmError(`PCR ${p} is not 0 to 23`);
    map[p >> 3] = (map[p >> 3] ?? 0) | (1 << (p & 7));
  }
  return w.u32(1).u16(bank).u8(3).bytes(map);
}

/** An authorisation session in a command's authorisation area. */
interface Auth {
  handle: number;
  nonce?: Uint8Array;
  attributes?: number;
  hmac?: Uint8Array;
}
const PASSWORD: Auth = { handle: RS_PW };

/** How long a refused connection to a TPM that should be running is retried. */
const CONNECT_RETRY_MS = 5000;

/** A TPM reached over a socket that carries raw command and response buffers (swtpm's). */
export class TpmClient {
  readonly #path: string;
  #socket: Socket | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** A character device (`/dev/tpm*`) is written and read whole; a socket is streamed. */
  readonly #device: boolean;

  constructor(path: string) {
    this.#path = path;
    this.#device = path.startsWith('/dev/');
  }

  /** One command to a TPM character device: one write, one read of the whole response. */
  #transmitDevice(command: Buffer, name: string): Buffer {
    let fd: number;
    try {
      fd = openSync(this.#path, 'r+');
    } catch (e) {
      throw tpmError(`cannot open the TPM device ${this.#path}`, e);
    }
    try {
      writeSync(fd, command);
      const buf = Buffer.alloc(MAX_RESPONSE);
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n < 10 || buf.readUInt32BE(2) !== n)
        throw tpmError(`TPM2_${name}: truncated response from ${this.#path}`);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  async #connect(): Promise<Socket> {
    if (this.#socket !== undefined && !this.#socket.destroyed) return this.#socket;
    // swtpm accepts one connection at a time, and binds its socket a moment before it listens:
    // a refused connection right after start-up or after another client (tpm2-tools) is retried,
    // briefly, before the TPM counts as unreachable.
    const deadline = Date.now() + CONNECT_RETRY_MS;
    let socket: Socket | undefined;
    for (let wait = 5; socket === undefined; wait = Math.min(wait * 2, 100)) {
      try {
        socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(this.#path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || Date.now() > deadline)
          throw tpmError(`cannot reach the TPM at ${this.#path}`, e);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    socket.on('error', () => undefined);
    this.#socket = socket;
    return socket;
  }

  /** Close the connection (the TPM keeps running). */
  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  /** Send one command and read its whole response; commands are serialised. */
  #transmit(command: Buffer, name: string): Promise<Buffer> {
    if (this.#device) {
      const run = this.#queue.then(() => this.#transmitDevice(command, name));
      this.#queue = run.catch(() => undefined);
      return run;
    }
    const run = this.#queue.then(async () => {
      const socket = await this.#connect();
      return new Promise<Buffer>((resolve, reject) => {
        let got = Buffer.alloc(0);
        const timer = setTimeout(
          () => finish(tpmError(`TPM2_${name} got no answer in ${TIMEOUT_MS} ms`)),
          TIMEOUT_MS,
        );
        const onData = (chunk: Buffer): void => {
          got = Buffer.concat([got, chunk]);
          if (got.length < 10) return;
          const size = got.readUInt32BE(2);
          if (size < 10 || size > MAX_RESPONSE) finish(tpmError(`TPM2_${name}: response size ${size}`));
          else if (got.length >= size) finish(undefined, got.subarray(0, size));
        };
        const onClose = (): void => finish(tpmError(`the TPM closed the connection during TPM2_${name}`));
        const finish = (e: Error | undefined, value?: Buffer): void => {
          clearTimeout(timer);
          socket.off('data', onData);
          socket.off('close', onClose);
          if (e !== undefined) {
            this.close();
            reject(e);
          } else resolve(value as Buffer);
        };
        socket.on('data', onData);
        socket.once('close', onClose);
        socket.write(command);
      });
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Build, send and check a command: its response code must be success.
   * @returns a reader over the response parameters (after handles and parameterSize)
   */
  async #command(
    name: keyof typeof CC,
    handles: readonly number[],
    auths: readonly Auth[],
    params: Buffer,
    responseHandles = 0,
  ): Promise<{ handles: number[]; params: TpmReader }> {
    const body = new TpmWriter();
    for (const h of handles) body.u32(h);
    if (auths.length > 0) {
      const area = new TpmWriter();
      for (const a of auths)
        area
          .u32(a.handle)
          .tpm2b(a.nonce ?? Buffer.alloc(0))
          .u8(a.attributes ?? 0)
          .tpm2b(a.hmac ?? Buffer.alloc(0));
      const areaBytes = area.done();
      body.u32(areaBytes.length).bytes(areaBytes);
    }
    body.bytes(params);
    const content = body.done();
    const command = new TpmWriter()
      .u16(auths.length > 0 ? ST_SESSIONS : ST_NO_SESSIONS)
      .u32(10 + content.length)
      .u32(CC[name])
      .bytes(content)
      .done();
    let response = await this.#transmit(command, name);
    // RETRY, YIELDED and TESTING are warnings that ask the caller to send the command again.
    for (let attempt = 0; attempt < 50 && RETRY_CODES.has(response.readUInt32BE(6)); attempt++) {
      await new Promise((r) => setTimeout(r, 2));
      response = await this.#transmit(command, name);
    }
    const r = new TpmReader(response, `TPM2_${name} response`);
    const tag = r.u16();
    r.u32(); // size, checked on receipt
    const rc = r.u32();
    if (rc !== 0) throw new TpmResponseError(name, rc);
    const outHandles: number[] = [];
    for (let i = 0; i < responseHandles; i++) outHandles.push(r.u32());
    if (tag === ST_SESSIONS) {
      const size = r.u32();
      return { handles: outHandles, params: new TpmReader(r.bytes(size), `TPM2_${name} parameters`) };
    }
    return { handles: outHandles, params: new TpmReader(r.rest(), `TPM2_${name} parameters`) };
  }

  /** TPM2_PCR_Extend of one SHA-256 digest into `pcr`. */
  async extend(pcr: number, digestHex: string): Promise<void> {
    const digest = Buffer.from(digestHex, 'hex');
    if (digest.length !== 32) throw tpmError('a SHA-256 PCR extend needs 32 bytes');
    const params = new TpmWriter().u32(1).u16(ALG_SHA256).bytes(digest).done();
    await this.#command('PCR_Extend', [pcr], [PASSWORD], params);
  }

  /** TPM2_PCR_Read of SHA-256 PCRs: hex values by PCR number. */
  async readPcrs(pcrs: readonly number[]): Promise<Record<string, string>> {
    const values: Record<string, string> = {};
    // A TPM answers at most eight digests per read: ask in groups.
    for (let i = 0; i < pcrs.length; i += 8) {
      const group = pcrs.slice(i, i + 8);
      const { params } = await this.#command('PCR_Read', [], [], pcrSelection(new TpmWriter(), group).done());
      params.u32(); // pcrUpdateCounter
      skipPcrSelection(params);
      const count = params.u32();
      const digests: Buffer[] = [];
      for (let d = 0; d < count; d++) digests.push(params.tpm2b(64, 'TPM2B_DIGEST'));
      const sorted = [...group].sort((a, b) => a - b);
      if (digests.length !== sorted.length)
        throw tpmError(`TPM2_PCR_Read returned ${digests.length} of ${sorted.length} PCRs`);
      sorted.forEach((p, k) => {
        values[String(p)] = (digests[k] as Buffer).toString('hex');
      });
    }
    return values;
  }

  /** The whole contents of an NV index (e.g. the EK certificate), read in chunks. */
  async nvRead(index: number): Promise<Buffer> {
    const pub = (await this.#command('NV_ReadPublic', [index], [], Buffer.alloc(0))).params;
    const nvPublic = new TpmReader(pub.tpm2b(1024, 'TPM2B_NV_PUBLIC'), 'TPMS_NV_PUBLIC');
    nvPublic.u32(); // nvIndex
    nvPublic.u16(); // nameAlg
    nvPublic.u32(); // attributes
    nvPublic.tpm2b(64, 'authPolicy');
    const size = nvPublic.u16();
    const parts: Buffer[] = [];
    for (let offset = 0; offset < size; offset += NV_CHUNK) {
      const n = Math.min(NV_CHUNK, size - offset);
      const params = new TpmWriter().u16(n).u16(offset).done();
      const { params: out } = await this.#command('NV_Read', [index, index], [PASSWORD], params);
      parts.push(out.tpm2b(NV_CHUNK, 'TPM2B_MAX_NV_BUFFER'));
    }
    return Buffer.concat(parts);
  }

  /** TPM2_ReadPublic: the object's TPM2B_PUBLIC, as marshalled. */
  async readPublic(handle: number): Promise<Buffer> {
    const { params } = await this.#command('ReadPublic', [handle], [], Buffer.alloc(0));
    const area = params.tpm2b(4096, 'TPM2B_PUBLIC');
    return new TpmWriter().tpm2b(area).done();
  }

  /**
   * TPM2_ActivateCredential: recover the secret of a credential made for `ak` under `ek`, the EK
   * authorised by a policy session satisfying PolicySecret(TPM_RH_ENDORSEMENT).
   */
  async activateCredential(
    ak: number,
    ek: number,
    idObject: Uint8Array,
    encryptedSecret: Uint8Array,
  ): Promise<Buffer> {
    const start = new TpmWriter()
      .u32(RH_NULL) // tpmKey: no salt
      .u32(RH_NULL) // bind: none
      .tpm2b(randomBytes(16)) // nonceCaller
      .tpm2b(Buffer.alloc(0)) // encryptedSalt
      .u8(SE_POLICY)
      .u16(ALG_NULL) // symmetric: none
      .u16(ALG_SHA256) // authHash
      .done();
    const session = (await this.#command('StartAuthSession', [], [], start, 1)).handles[0] as number;
    try {
      const secret = new TpmWriter()
        .tpm2b(Buffer.alloc(0)) // nonceTPM
        .tpm2b(Buffer.alloc(0)) // cpHashA
        .tpm2b(Buffer.alloc(0)) // policyRef
        .u32(0) // expiration
        .done();
      await this.#command('PolicySecret', [RH_ENDORSEMENT, session], [PASSWORD], secret);
      const params = new TpmWriter().tpm2b(idObject).tpm2b(encryptedSecret).done();
      // The policy session ends with the command (continueSession clear).
      const { params: out } = await this.#command(
        'ActivateCredential',
        [ak, ek],
        [PASSWORD, { handle: session, attributes: 0 }],
        params,
      );
      return out.tpm2b(64, 'TPM2B_DIGEST');
    } catch (e) {
      await this.#command('FlushContext', [], [], new TpmWriter().u32(session).done()).catch(() => undefined);
      throw e;
    }
  }

  /** TPM2_Quote with the key's own scheme over a PCR bank: TPMS_ATTEST and TPMT_SIGNATURE bytes. */
  async quote(
    ak: number,
    qualifyingData: Uint8Array,
    pcrs: readonly number[],
    bank = 'sha256',
  ): Promise<{ attest: Buffer; signature: Buffer }> {
    const alg = BANKS[bank];
    if (alg === undefined) throw tpmError(`no PCR bank ${bank}`);
    const params = pcrSelection(new TpmWriter().tpm2b(qualifyingData).u16(ALG_NULL), pcrs, alg).done();
    const { params: out } = await this.#command('Quote', [ak], [PASSWORD], params);
    const attest = out.tpm2b(2048, 'TPM2B_ATTEST');
    // TPMT_SIGNATURE is the rest of the parameters, as marshalled.
    return { attest, signature: out.rest() };
  }

  /** A policy session satisfying PolicySecret(TPM_RH_ENDORSEMENT): what the TCG EK template asks. */
  async #endorsementSession(): Promise<number> {
    const start = new TpmWriter()
      .u32(RH_NULL)
      .u32(RH_NULL)
      .tpm2b(randomBytes(16))
      .tpm2b(Buffer.alloc(0))
      .u8(SE_POLICY)
      .u16(ALG_NULL)
      .u16(ALG_SHA256)
      .done();
    const session = (await this.#command('StartAuthSession', [], [], start, 1)).handles[0] as number;
    const secret = new TpmWriter()
      .tpm2b(Buffer.alloc(0))
      .tpm2b(Buffer.alloc(0))
      .tpm2b(Buffer.alloc(0))
      .u32(0)
      .done();
    try {
      await this.#command('PolicySecret', [RH_ENDORSEMENT, session], [PASSWORD], secret);
    } catch (e) {
      await this.flush(session);
      throw e;
    }
    return session;
  }

  /** TPM2_FlushContext of a transient object or session (errors ignored: it may be gone). */
  async flush(handle: number): Promise<void> {
    await this.#command('FlushContext', [], [], new TpmWriter().u32(handle).done()).catch(() => undefined);
  }

  /**
   * TPM2_Create of a key from `template` (a marshalled TPMT_PUBLIC) under `parent`, with an empty
   * authorisation; under the EK (`parentIsEk`) through its endorsement policy session.
   * @returns the TPM2B_PRIVATE and TPM2B_PUBLIC, as marshalled
   */
  create(
    parent: number,
    template: Uint8Array,
    parentIsEk = false,
  ): Promise<{ private: Buffer; public: Buffer }> {
    return this.#create(parent, template, Buffer.alloc(0), parentIsEk);
  }

  /**
   * TPM2_Create of a sealed data object holding `data` under the storage key `parent`:
   * fixedTPM|fixedParent (it loads only under that parent, in this TPM), userWithAuth with an
   * empty authorisation, noDA.
   * @returns the TPM2B_PRIVATE and TPM2B_PUBLIC, as marshalled
   */
  seal(parent: number, data: Uint8Array): Promise<{ private: Buffer; public: Buffer }> {
    if (data.length < 1 || data.length > MAX_SEALED)
      throw tpmError(`a sealed object holds 1 to ${MAX_SEALED} bytes`);
    const template = new TpmWriter()
      .u16(ALG_KEYEDHASH)
      .u16(ALG_SHA256)
      .u32(SEALED_ATTRIBUTES)
      .tpm2b(Buffer.alloc(0)) // authPolicy: none
      .u16(ALG_NULL) // TPMS_KEYEDHASH_PARMS: no scheme (a data object)
      .tpm2b(Buffer.alloc(0)) // unique
      .done();
    return this.#create(parent, template, data, false);
  }

  /** TPM2_Unseal of a loaded sealed data object (empty authorisation): the data it holds. */
  async unseal(item: number): Promise<Buffer> {
    const { params } = await this.#command('Unseal', [item], [PASSWORD], Buffer.alloc(0));
    return params.tpm2b(MAX_SEALED, 'TPM2B_SENSITIVE_DATA');
  }

  async #create(
    parent: number,
    template: Uint8Array,
    data: Uint8Array,
    parentIsEk: boolean,
  ): Promise<{ private: Buffer; public: Buffer }> {
    const sensitive = new TpmWriter().tpm2b(Buffer.alloc(0)).tpm2b(data).done();
    const params = new TpmWriter()
      .tpm2b(sensitive) // TPM2B_SENSITIVE_CREATE
      .tpm2b(template) // TPM2B_PUBLIC
      .tpm2b(Buffer.alloc(0)) // outsideInfo
      .u32(0) // creationPCR: none
      .done();
    const session = parentIsEk ? await this.#endorsementSession() : undefined;
    try {
      const { params: out } = await this.#command(
        'Create',
        [parent],
        [session === undefined ? PASSWORD : { handle: session, attributes: 0 }],
        params,
      );
      const priv = out.tpm2b(4096, 'TPM2B_PRIVATE');
      const pub = out.tpm2b(4096, 'TPM2B_PUBLIC');
      return { private: new TpmWriter().tpm2b(priv).done(), public: new TpmWriter().tpm2b(pub).done() };
    } catch (e) {
      if (session !== undefined) await this.flush(session);
      throw e;
    }
  }

  /** TPM2_Load of a key made by {@link create} under `parent`; returns its transient handle. */
  async load(
    parent: number,
    key: { private: Uint8Array; public: Uint8Array },
    parentIsEk = false,
  ): Promise<number> {
    const session = parentIsEk ? await this.#endorsementSession() : undefined;
    try {
      const { handles } = await this.#command(
        'Load',
        [parent],
        [session === undefined ? PASSWORD : { handle: session, attributes: 0 }],
        Buffer.concat([Buffer.from(key.private), Buffer.from(key.public)]),
        1,
      );
      return handles[0] as number;
    } catch (e) {
      if (session !== undefined) await this.flush(session);
      throw e;
    }
  }

  /** TPM2_EvictControl (owner authorisation, empty): make a loaded key persistent at `persistent`. */
  async evictControl(object: number, persistent: number): Promise<void> {
    await this.#command(
      'EvictControl',
      [RH_OWNER, object],
      [PASSWORD],
      new TpmWriter().u32(persistent).done(),
    );
  }

  /**
   * TPM2_Certify: `signer` (a restricted signing key, the AK) attests that `object` is loaded in
   * this TPM, with its Name and qualified Name, over `qualifyingData`.
   * @returns TPMS_ATTEST (type CERTIFY) and TPMT_SIGNATURE bytes
   */
  async certify(
    object: number,
    signer: number,
    qualifyingData: Uint8Array,
  ): Promise<{ attest: Buffer; signature: Buffer }> {
    const params = new TpmWriter().tpm2b(qualifyingData).u16(ALG_NULL).done();
    const { params: out } = await this.#command('Certify', [object, signer], [PASSWORD, PASSWORD], params);
    const attest = out.tpm2b(2048, 'TPM2B_ATTEST');
    return { attest, signature: out.rest() };
  }

  /**
   * TPM2_Sign of a SHA-256 digest with an unrestricted signing key, in its own scheme.
   * @returns the TPMT_SIGNATURE bytes
   */
  async sign(key: number, digest: Uint8Array): Promise<Buffer> {
    if (digest.length !== 32) throw tpmError('TPM2_Sign here signs 32-byte SHA-256 digests');
    const params = new TpmWriter()
      .tpm2b(digest)
      .u16(ALG_NULL) // inScheme: the key's own
      .u16(ST_HASHCHECK)
      .u32(RH_NULL) // a null ticket: only an unrestricted key accepts it
      .tpm2b(Buffer.alloc(0))
      .done();
    const { params: out } = await this.#command('Sign', [key], [PASSWORD], params);
    return out.rest();
  }

  /**
   * Define an NV index (owner authorisation) of `size` bytes, readable with its empty authValue
   * and by the owner, written by the owner, and write `data` into it: how an EK certificate is
   * provisioned at the TCG index.
   */
  async nvDefineAndWrite(index: number, data: Uint8Array): Promise<void> {
    // OWNERWRITE | PPREAD | OWNERREAD | AUTHREAD | NO_DA
    const attributes = 0x00000002 | 0x00010000 | 0x00020000 | 0x00040000 | 0x02000000;
    const pub = new TpmWriter()
      .u32(index)
      .u16(ALG_SHA256)
      .u32(attributes)
      .tpm2b(Buffer.alloc(0))
      .u16(data.length)
      .done();
    await this.#command(
      'NV_DefineSpace',
      [RH_OWNER],
      [PASSWORD],
      new TpmWriter().tpm2b(Buffer.alloc(0)).tpm2b(pub).done(),
    );
    for (let offset = 0; offset < data.length; offset += NV_CHUNK) {
      const chunk = data.subarray(offset, offset + NV_CHUNK);
      await this.#command(
        'NV_Write',
        [RH_OWNER, index],
        [PASSWORD],
        new TpmWriter().tpm2b(chunk).u16(offset).done(),
      );
    }
  }
}

function skipPcrSelection(r: TpmReader): void {
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.u16();
    r.bytes(r.u8());
  }
}
