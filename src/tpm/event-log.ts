/**
 * The TCG PC Client platform firmware event log in its binary, crypto-agile form (TCG PC Client
 * Platform Firmware Profile, §10.2): a first TCG_PCClientPCREvent (SHA-1 format) of type
 * EV_NO_ACTION carrying the TCG_EfiSpecIDEvent ("Spec ID Event03", the digest sizes of every
 * algorithm in the log), then TCG_PCR_EVENT2 records (PCR index, event type, TPML_DIGEST_VALUES,
 * event data), all little-endian. Parsed strictly and replayed into SHA-256 PCR values.
 */
import { createHash } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { PCR_RESET_VALUE } from './pcr.ts';

/** Event types used here (PC Client PFP §10.4.1). */
export const EV = {
  POST_CODE: 0x1,
  NO_ACTION: 0x3,
  SEPARATOR: 0x4,
  ACTION: 0x5,
  EVENT_TAG: 0x6,
  S_CRTM_CONTENTS: 0x7,
  S_CRTM_VERSION: 0x8,
  IPL: 0xd,
  EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
  EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
} as const;

const ALG_SHA256 = 0x000b;
const SPEC_ID_SIGNATURE = Buffer.from('Spec ID Event03\0', 'latin1');
/** Events and bytes accepted: a real firmware log is a few hundred events, under a megabyte. */
const MAX_EVENTS = 4096;
const MAX_EVENT_DATA = 1024 * 1024;

/** One measured event of a boot log. */
export interface BootEvent {
  readonly pcr: number;
  readonly type: number;
  /** Digests by TPM_ALG_ID (hex). */
  readonly digests: Readonly<Record<number, string>>;
  readonly data: Buffer;
}

function malformed(message: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', `boot event log: ${message}`);
}

class LeReader {
  #o = 0;
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
  }
  get offset(): number {
    return this.#o;
  }
  get left(): number {
    return this.b.length - this.#o;
  }
  #need(n: number, what: string): void {
    if (n > this.left) throw malformed(`${what} at byte ${this.#o} runs past the end of the log`);
  }
  u8(what: string): number {
    this.#need(1, what);
    return this.b.readUInt8(this.#o++);
  }
  u16(what: string): number {
    this.#need(2, what);
    const v = this.b.readUInt16LE(this.#o);
    this.#o += 2;
    return v;
  }
  u32(what: string): number {
    this.#need(4, what);
    const v = this.b.readUInt32LE(this.#o);
    this.#o += 4;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.#need(n, what);
    const v = this.b.subarray(this.#o, this.#o + n);
    this.#o += n;
    return v;
  }
}

/**
 * Parse a crypto-agile binary event log. Every event must carry a digest of every algorithm the
 * Spec ID event declares, in a size it declares; nothing may follow the last event.
 * @throws GatehouseError BAD_INPUT naming what is wrong and at which byte
 */
export function parseEventLog(bytes: Uint8Array): {
  algorithms: Record<number, number>;
  events: BootEvent[];
} {
  const r = new LeReader(Buffer.from(bytes));
  // The header event: SHA-1 format, EV_NO_ACTION, PCR 0, a zero digest.
  const pcr0 = r.u32('header PCR index');
  const type0 = r.u32('header event type');
  const digest0 = r.bytes(20, 'header digest');
  const size0 = r.u32('header event size');
  if (pcr0 !== 0 || type0 !== EV.NO_ACTION || digest0.some((b) => b !== 0))
    throw malformed('the first event is not the EV_NO_ACTION Spec ID event (not a crypto-agile log)');
  if (size0 > 4096) throw malformed('the Spec ID event is too large');
  const spec = new LeReader(r.bytes(size0, 'Spec ID event'));
  if (!spec.bytes(16, 'Spec ID signature').equals(SPEC_ID_SIGNATURE))
    throw malformed("the Spec ID event's signature is not 'Spec ID Event03'");
  spec.u32('platformClass');
  spec.u8('specVersionMinor');
  const major = spec.u8('specVersionMajor');
  spec.u8('specErrata');
  spec.u8('uintnSize');
  if (major !== 2) throw malformed(`spec version ${major} is not 2`);
  const n = spec.u32('numberOfAlgorithms');
  if (n < 1 || n > 8) throw malformed(`${n} algorithms declared`);
  const algorithms: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const alg = spec.u16('algorithmId');
    const size = spec.u16('digestSize');
    if (size < 20 || size > 64 || algorithms[alg] !== undefined)
      throw malformed(`algorithm 0x${alg.toString(16)} is declared twice or with size ${size}`);
    algorithms[alg] = size;
  }
  if (algorithms[ALG_SHA256] !== 32) throw malformed('the log has no SHA-256 digests');
  const vendor = spec.u8('vendorInfoSize');
  spec.bytes(vendor, 'vendorInfo');
  if (spec.left !== 0) throw malformed('the Spec ID event has trailing bytes');
  const events: BootEvent[] = [];
  while (r.left > 0) {
    if (events.length >= MAX_EVENTS) throw malformed(`more than ${MAX_EVENTS} events`);
    const at = r.offset;
    const pcr = r.u32('PCR index');
    const type = r.u32('event type');
    if (pcr > 23) throw malformed(`event at byte ${at} names PCR ${pcr}`);
    const count = r.u32('digest count');
    if (count !== n) throw malformed(`event at byte ${at} has ${count} digests, not ${n}`);
    const digests: Record<number, string> = {};
    for (let i = 0; i < count; i++) {
      const alg = r.u16('digest algorithm');
      const size = algorithms[alg];
      if (size === undefined || digests[alg] !== undefined)
        throw malformed(`event at byte ${at} has an undeclared or repeated digest 0x${alg.toString(16)}`);
      digests[alg] = r.bytes(size, 'digest').toString('hex');
    }
    const size = r.u32('event size');
    if (size > MAX_EVENT_DATA) throw malformed(`event at byte ${at} has ${size} bytes of data`);
    events.push({ pcr, type, digests, data: Buffer.from(r.bytes(size, 'event data')) });
  }
  return { algorithms, events };
}

/** Marshal a crypto-agile event log with SHA-256 digests only (the stand-in's firmware log). */
export function writeEventLog(
  events: readonly { pcr: number; type: number; data: Uint8Array; digest?: string }[],
): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u16 = (v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return b;
  };
  const spec = Buffer.concat([
    SPEC_ID_SIGNATURE,
    u32(0), // platformClass: client
    Buffer.from([0, 2, 0, 2]), // version 2.0, errata 0, UINTN 64-bit
    u32(1),
    u16(ALG_SHA256),
    u16(32),
    Buffer.from([0]), // no vendor info
  ]);
  parts.push(u32(0), u32(EV.NO_ACTION), Buffer.alloc(20), u32(spec.length), spec);
  for (const e of events) {
    const digest = e.digest ?? createHash('sha256').update(e.data).digest('hex');
    parts.push(
      u32(e.pcr),
      u32(e.type),
      u32(1),
      u16(ALG_SHA256),
      Buffer.from(digest, 'hex'),
      u32(e.data.length),
    );
    parts.push(Buffer.from(e.data));
  }
  return Buffer.concat(parts);
}

/**
 * Replay the SHA-256 digests of a log into PCR values (EV_NO_ACTION events are not extended; a
 * StartupLocality event sets PCR 0's starting locality). PCRs no event extends are absent.
 */
export function replayBootLog(events: readonly BootEvent[]): Record<string, string> {
  const pcrs: Record<string, string> = {};
  for (const e of events) {
    if (e.type === EV.NO_ACTION) {
      // TCG_EfiStartupLocalityEvent: "StartupLocality\0" then the locality byte.
      if (
        e.pcr === 0 &&
        e.data.length === 17 &&
        e.data.subarray(0, 16).toString('latin1') === 'StartupLocality\0'
      )
        pcrs['0'] = `${'0'.repeat(62)}${(e.data[16] ?? 0).toString(16).padStart(2, '0')}`;
      continue;
    }
    const d = e.digests[ALG_SHA256];
    if (d === undefined) continue;
    const prev = pcrs[String(e.pcr)] ?? PCR_RESET_VALUE;
    pcrs[String(e.pcr)] = createHash('sha256')
      .update(Buffer.from(prev, 'hex'))
      .update(Buffer.from(d, 'hex'))
      .digest('hex');
  }
  return pcrs;
}

/** A short, printable description of an event (its type and, for text data, the text). */
export function describeBootEvent(e: BootEvent): string {
  const name = Object.entries(EV).find(([, v]) => v === e.type)?.[0] ?? `0x${e.type.toString(16)}`;
  const text = e.data.toString('utf8').replace(/\0+$/, '');
  const printable = /^[\x20-\x7e]*$/.test(text) ? ` '${text.slice(0, 80)}'` : '';
  return `PCR ${e.pcr} EV_${name}${printable}`;
}
