/**
 * The internal CA's certificate transparency log, in the shape of the Static CT API
 * (https://c2sp.org/static-ct-api): RFC 6962 submission (`add-pre-chain`, `add-chain`,
 * `get-roots`) and signatures, entries sequenced before the SCT is returned (each SCT carries its
 * `leaf_index` extension, so the merge delay is zero), and a read side of a checkpoint, tiles,
 * data tiles and issuers. Each CT key generation is its own log (a shard with its own tree and
 * origin); a retired shard is read-only.
 */
import '../signing/reflect-metadata-shim.ts';
import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { GatehouseError } from '../common/errors.ts';
import {
  type CtEntryType,
  certificateParts,
  digitallySigned,
  encodeSct,
  issuerKeyHash,
  leafIndexExtension,
  merkleTreeLeaf,
  PRECERT_POISON_OID,
  PRECERT_SIGNING_EKU,
  type PrecertificateLog,
  SCT_LIST_OID,
  sctSignedData,
  tbsWithout,
  timestampedEntry,
} from '../signing/ct.ts';
import type { Signer } from '../signing/signer.ts';
import type { CtLogStore, LogStore, NewLogEntryRecord } from '../store/store.ts';
import { assertKeyName } from './checkpoint.ts';
import { GroupCommit, type LogBatching } from './group-commit.ts';
import { foldSubtrees, leafHash, subtreesOf } from './merkle.ts';
import { appendEntriesAt } from './stored-tree.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** At most this many certificates in a submitted chain. */
const MAX_CHAIN = 8;
/** Hashes in a full tile. */
const TILE_WIDTH = 256;

export interface CtLogOptions {
  store: CtLogStore;
  /** The log key (ECDSA P-256): signs SCTs and checkpoints. */
  signer: Signer;
  /** The submission prefix as a schema-less URL, also the checkpoint origin and key name. */
  origin: string;
  /** The roots whose chains the log accepts (DER): the internal CA's, current and retired. */
  acceptedRoots: () => readonly Uint8Array[];
  /** A retired shard: readable, but it logs nothing more. */
  readOnly?: boolean;
  now?: () => Date;
  /** How submissions are grouped into batches (src/tlog/group-commit.ts). */
  batching?: Partial<LogBatching>;
}

/** A CT entry as the log builds it at its index: the stored record and its TimestampedEntry. */
type CtBuiltEntry = NewLogEntryRecord & {
  te: Parameters<typeof timestampedEntry>[0] & { extensions: Buffer };
};

/** An RFC 6962 §4.1 add-chain / add-pre-chain response. */
export interface AddChainResponse {
  sct_version: number;
  id: string;
  timestamp: number;
  extensions: string;
  signature: string;
}

function refused(message: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', message);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function u64(n: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/** The Static CT checkpoint key ID: SHA-256(name ‖ 0x0A ‖ 0x05 ‖ log ID)[:4]. */
export function rfc6962NoteKeyId(name: string, logId: Uint8Array): Buffer {
  return sha256(Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.of(0x05), logId])).subarray(0, 4);
}

/** The RFC 6962 §3.5 TreeHeadSignature input: v1, tree_hash, timestamp, size, root. */
export function treeHeadSignatureInput(timestampMs: bigint, treeSize: number, root: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(0, 1), u64(timestampMs), u64(treeSize), root]);
}

/** A tile path (`<L>/<N>[.p/<W>]`, `data/<N>[.p/<W>]`), parsed. */
export interface TilePath {
  /** A hash tile level, or 'data'. */
  level: number | 'data';
  index: number;
  /** The width of a partial tile; 256 for a full one. */
  width: number;
}

/**
 * Parse the part of a tile URL after `tile/` (https://c2sp.org/tlog-tiles).
 * @throws GatehouseError BAD_INPUT
 */
export function parseTilePath(path: string): TilePath {
  const m = /^(data|[0-5])\/((?:x\d{3}\/)*)(\d{3})(?:\.p\/([1-9]\d{0,2}))?$/.exec(path);
  if (m === null) throw refused(`'${path}' is not a tile path`);
  const [, level = '', xs = '', last = '', width] = m;
  const index = Number(`${xs.replaceAll('x', '').replaceAll('/', '')}${last}`);
  const w = width === undefined ? TILE_WIDTH : Number(width);
  if (!Number.isSafeInteger(index) || (width !== undefined && w > 255))
    throw refused(`'${path}' is not a tile path`);
  return { level: level === 'data' ? 'data' : Number(level), index, width: w };
}

/** The URL path element of tile index `n`: 3-digit groups, all but the last prefixed `x`. */
export function tileIndexPath(n: number): string {
  const digits = String(n);
  const padded = digits.padStart(Math.ceil(digits.length / 3) * 3, '0');
  const groups = padded.match(/\d{3}/g) ?? ['000'];
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

interface Parsed {
  der: Buffer;
  cert: x509.X509Certificate;
}

function parseChain(chain: readonly Uint8Array[]): Parsed[] {
  if (chain.length > MAX_CHAIN)
    throw refused(`a chain of ${chain.length} certificates is longer than ${MAX_CHAIN}`);
  return chain.map((c, i) => {
    const der = Buffer.from(c);
    try {
      return { der, cert: new x509.X509Certificate(der) };
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', `chain certificate ${i} is not a DER X.509 certificate`, {
        cause: e,
      });
    }
  });
}

async function signedBy(child: Parsed, parent: Parsed): Promise<boolean> {
  try {
    return await child.cert.verify({ publicKey: parent.cert.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/** The log. One instance per process is the sequencer of its shard. */
export class CtLog implements PrecertificateLog {
  readonly origin: string;
  /** SHA-256 of the log key's DER SubjectPublicKeyInfo: the RFC 6962 LogID. */
  readonly logId: Buffer;
  readonly readOnly: boolean;
  readonly #store: CtLogStore;
  readonly #tree: LogStore;
  readonly #signer: Signer;
  readonly #roots: () => readonly Uint8Array[];
  readonly #now: () => Date;
  /** Appends in batches, each built at the index it takes (src/tlog/group-commit.ts). */
  readonly #batches: GroupCommit<(index: number) => CtBuiltEntry, { index: number; entry: CtBuiltEntry }>;
  readonly #checkedIssuers = new Map<string, Parsed[]>();
  readonly #issuerKeys = new WeakMap<Parsed, KeyObject>();
  /** Fingerprints of the issuers this instance has stored. */
  readonly #issuersStored = new Set<string>();

  /** @throws GatehouseError BAD_CONFIG when the origin cannot name a note key */
  constructor(o: CtLogOptions) {
    assertKeyName(o.origin);
    this.origin = o.origin;
    this.logId = sha256(o.signer.publicKeySpki());
    this.readOnly = o.readOnly === true;
    this.#store = o.store;
    this.#tree = o.store.shard(this.logId.toString('hex'));
    this.#signer = o.signer;
    this.#roots = o.acceptedRoots;
    this.#now = o.now ?? (() => new Date());
    this.#batches = new GroupCommit((builds) => appendEntriesAt(this.#tree, builds), o.batching);
  }

  /** The log's public key, DER SubjectPublicKeyInfo. */
  publicKeySpki(): Uint8Array {
    return this.#signer.publicKeySpki();
  }

  /** PrecertificateLog: log a precertificate chain and return the serialized SCT. */
  async addPreChain(chain: readonly Buffer[]): Promise<Buffer> {
    return (await this.#submit('precert', chain)).sct;
  }

  /**
   * RFC 6962 §4.1 and §4.2: log a chain and answer with the SCT in JSON.
   * @throws GatehouseError BAD_INPUT naming why the chain is refused, CONFLICT for a read-only shard
   */
  async addChainJson(type: CtEntryType, chain: readonly Uint8Array[]): Promise<AddChainResponse> {
    const r = await this.#submit(type, chain);
    return {
      sct_version: 0,
      id: this.logId.toString('base64'),
      timestamp: Number(r.timestamp),
      extensions: r.extensions.toString('base64'),
      signature: digitallySigned(r.signature).toString('base64'),
    };
  }

  /** RFC 6962 §4.7: the accepted roots, base64 DER. */
  roots(): { certificates: string[] } {
    return { certificates: this.#roots().map((r) => Buffer.from(r).toString('base64')) };
  }

  async #submit(
    type: CtEntryType,
    chain: readonly Uint8Array[],
  ): Promise<{ sct: Buffer; timestamp: bigint; extensions: Buffer; signature: Buffer; index: number }> {
    if (this.readOnly)
      throw new GatehouseError('CONFLICT', `the CT log ${this.origin} is retired and logs nothing more`);
    const { leaf, issuers } = await this.#verifyChain(type, chain);
    const [issuer] = issuers;
    if (issuer === undefined) throw refused('the chain names no issuer');
    const signed = type === 'precert' ? tbsWithout(leaf, PRECERT_POISON_OID) : leaf;
    const keyHash =
      type === 'precert' ? issuerKeyHash(new Uint8Array(issuer.cert.publicKey.rawData)) : undefined;
    const fingerprints = issuers.map((p) => sha256(p.der));
    // Batched with the submissions of the same tick, in one transaction, sequenced within the
    // process; the store refuses an append another process overtook, and each entry (which names
    // its own index) is built again. The SCT is signed only once the entry is durable.
    const { index, entry } = await this.#batches.submit((i) => {
      const timestamp = BigInt(this.#now().getTime());
      const te = {
        timestamp,
        type,
        signed,
        ...(keyHash === undefined ? {} : { issuerKeyHash: keyHash }),
        extensions: leafIndexExtension(i),
      };
      // TileLeaf: the TimestampedEntry, the precertificate as submitted, the chain's fingerprints.
      const body = Buffer.concat([
        timestampedEntry(te),
        ...(type === 'precert' ? [u24(leaf.length), leaf] : []),
        u16(fingerprints.length * 32),
        ...fingerprints,
      ]);
      return {
        body,
        leafHash: leafHash(merkleTreeLeaf(te)),
        integratedTime: Math.floor(Number(timestamp) / 1000),
        te,
      };
    });
    for (const p of issuers) {
      // The CA's issuers are the same every time: stored once per process, not per submission.
      const fingerprint = sha256(p.der).toString('hex');
      if (this.#issuersStored.has(fingerprint)) continue;
      await this.#store.addIssuer(fingerprint, p.der);
      this.#issuersStored.add(fingerprint);
    }
    const signature = Buffer.from(await this.#signer.sign(sctSignedData(entry.te)));
    const sct = encodeSct({
      logId: this.logId,
      timestamp: entry.te.timestamp,
      extensions: entry.te.extensions,
      signature,
    });
    return { sct, timestamp: entry.te.timestamp, extensions: entry.te.extensions, signature, index };
  }

  /**
   * Check a submitted chain: each certificate signed by the next, up to an accepted root (added
   * when the chain stops below it); issuers are CAs, none a precertificate signing certificate;
   * a precertificate carries the critical poison and no SCTs, a certificate no poison.
   */
  async #verifyChain(
    type: CtEntryType,
    chain: readonly Uint8Array[],
  ): Promise<{ leaf: Buffer; issuers: Parsed[] }> {
    const [first] = chain;
    if (first === undefined || chain.length > MAX_CHAIN)
      throw refused(`a chain must hold 2..${MAX_CHAIN} certificates`);
    // Every approval submits a leaf: it is read with the native parser and the project's own DER
    // reader (the extensions exactly as encoded); the issuers, the same every time, are cached.
    const leaf = Buffer.from(first);
    let native: X509Certificate;
    let extensions: ReturnType<typeof certificateParts>['extensions'];
    try {
      native = new X509Certificate(leaf);
      extensions = certificateParts(leaf).extensions;
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', 'chain certificate 0 is not a DER X.509 certificate', {
        cause: e,
      });
    }
    const poison = extensions.filter((e) => e.oid === PRECERT_POISON_OID);
    if (type === 'precert') {
      if (poison.length !== 1 || !poison[0]?.critical)
        throw refused('the precertificate does not carry exactly one critical poison extension');
      if (extensions.some((e) => e.oid === SCT_LIST_OID))
        throw refused('the precertificate already carries SCTs');
    } else if (poison.length > 0) {
      throw refused('a precertificate was submitted with add-chain; use add-pre-chain');
    }
    if (native.validToDate < this.#now()) throw refused('the certificate has expired');
    const issuers = await this.#verifiedIssuers(chain.slice(1));
    if (!native.verify(this.#publicKeyOf(issuers[0] as Parsed)))
      throw refused('chain certificate 0 is not signed by certificate 1');
    return { leaf, issuers };
  }

  /** An issuer's public key as node:crypto holds it, made once per issuer. */
  #publicKeyOf(issuer: Parsed): KeyObject {
    let key = this.#issuerKeys.get(issuer);
    if (key === undefined) {
      key = createPublicKey({ key: Buffer.from(issuer.cert.publicKey.rawData), format: 'der', type: 'spki' });
      this.#issuerKeys.set(issuer, key);
    }
    return key;
  }

  /**
   * The issuers of a chain, checked: each a CA and no precertificate signing certificate, each
   * signed by the next, ending at an accepted root (added when the chain stops below it). The
   * issuers of the CA's leaves are the same every time, so a checked chain is remembered (keyed by
   * its bytes and the accepted roots): only the leaf is parsed and checked per submission.
   */
  async #verifiedIssuers(ders: readonly Uint8Array[]): Promise<Parsed[]> {
    if (ders.length === 0) throw refused('the chain names no issuer');
    const roots = this.#roots().map((r) => Buffer.from(r));
    const key = sha256(Buffer.concat([...ders, Buffer.of(0), ...roots])).toString('hex');
    const hit = this.#checkedIssuers.get(key);
    if (hit !== undefined) return hit;
    const issuers = parseChain(ders);
    const last = issuers[issuers.length - 1] as Parsed;
    if (!roots.some((r) => r.equals(last.der))) {
      const root = roots
        .map((der) => ({ der, cert: new x509.X509Certificate(der) }))
        .find((r) => r.cert.subject === last.cert.issuer);
      if (root === undefined) throw refused('the chain does not end at a root this log accepts');
      issuers.push(root);
    }
    for (const [i, parent] of issuers.entries()) {
      const bc = parent.cert.getExtension(x509.BasicConstraintsExtension);
      if (bc === null || !bc.ca) throw refused(`chain certificate ${i + 1} is not a CA`);
      const eku = parent.cert.getExtension(x509.ExtendedKeyUsageExtension);
      if (eku?.usages.some((u) => String(u) === PRECERT_SIGNING_EKU))
        throw refused('precertificate signing certificates are not accepted');
      const next = issuers[i + 1];
      if (next !== undefined && !(await signedBy(parent, next)))
        throw refused(`chain certificate ${i + 1} is not signed by certificate ${i + 2}`);
    }
    if (this.#checkedIssuers.size >= 16) this.#checkedIssuers.clear();
    this.#checkedIssuers.set(key, issuers);
    return issuers;
  }

  /** Number of entries. */
  size(): Promise<number> {
    return this.#tree.size();
  }

  /** The root hash of the tree of `treeSize` entries. */
  async rootHash(treeSize: number): Promise<Uint8Array> {
    return foldSubtrees(await this.#tree.subtreeHashes(subtreesOf(0, treeSize)));
  }

  /**
   * The signed tree head as a Static CT checkpoint: the note body, and one RFC6962NoteSignature
   * (timestamp ‖ TreeHeadSignature) under the origin.
   */
  async checkpoint(): Promise<string> {
    const size = await this.#tree.size();
    const root = await this.rootHash(size);
    const timestamp = BigInt(this.#now().getTime());
    const body = `${this.origin}\n${size}\n${Buffer.from(root).toString('base64')}\n`;
    const signature = await this.#signer.sign(treeHeadSignatureInput(timestamp, size, root));
    const blob = Buffer.concat([
      rfc6962NoteKeyId(this.origin, this.logId),
      u64(timestamp),
      digitallySigned(signature),
    ]);
    return `${body}\n\u2014 ${this.origin} ${blob.toString('base64')}\n`;
  }

  /**
   * A hash tile or a data tile (https://c2sp.org/static-ct-api#merkle-tree), full or partial.
   * @throws GatehouseError NOT_FOUND for a tile beyond the tree
   */
  async tile(t: TilePath): Promise<Buffer> {
    const size = await this.#tree.size();
    const perHash = t.level === 'data' ? 1 : TILE_WIDTH ** t.level;
    const first = t.index * TILE_WIDTH;
    // Every hash of the tile must be a complete subtree of the current tree.
    if ((first + t.width) * perHash > size)
      throw new GatehouseError('NOT_FOUND', `the tile is beyond the tree of ${size} entries`);
    const indices = Array.from({ length: t.width }, (_, i) => first + i);
    if (t.level === 'data') {
      const entries = await Promise.all(indices.map((i) => this.#tree.get(i)));
      return Buffer.concat(
        entries.map((e, k) => {
          if (e === undefined) throw new GatehouseError('NOT_FOUND', `CT entry ${first + k} is missing`);
          return e.body;
        }),
      );
    }
    const level = 8 * t.level;
    return Buffer.concat(await this.#tree.subtreeHashes(indices.map((index) => ({ level, index }))));
  }

  /** An issuer by its SHA-256 fingerprint (hex). @throws GatehouseError NOT_FOUND */
  async issuer(fingerprint: string): Promise<Uint8Array> {
    const der = /^[0-9a-f]{64}$/.test(fingerprint) ? await this.#store.issuer(fingerprint) : undefined;
    if (der === undefined) throw new GatehouseError('NOT_FOUND', `no issuer ${fingerprint} in the CT log`);
    return der;
  }
}
