/**
 * Sigstore bundle v0.3 (https://github.com/sigstore/protobuf-specs): building one from a signed
 * envelope, its leaf certificate and its log entry, and parsing untrusted bundles strictly.
 */
import { X509Certificate } from 'node:crypto';
import { BUNDLE_V03_LEGACY_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPE, type SerializedBundle } from '@sigstore/bundle';
import { z } from 'zod';
import { toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { bundleError, decodeTlogEntry, readBundleJson } from './bundle-decoding.ts';
import { type Envelope, envelopeSchema } from './dsse.ts';
import { base64String } from './strict-base64.ts';

/** A log entry as the log returned it, with the proof to put in the bundle. */
export interface BundleLogEntry {
  index: number;
  integratedTime: number;
  /** Hex log ID. */
  logId: string;
  /** The SET. */
  inclusionPromise: Uint8Array;
  /** The canonicalized entry body. */
  body: Uint8Array;
  proof: {
    logIndex: number;
    treeSize: number;
    rootHash: Uint8Array;
    hashes: Uint8Array[];
    checkpoint: string;
  };
}

/** A transparency log entry of a parsed bundle, decoded. */
export interface ParsedTlogEntry {
  logIndex: number;
  logId: Buffer;
  kind: string;
  version: string;
  integratedTime: number;
  signedEntryTimestamp: Buffer | undefined;
  inclusionProof:
    | { logIndex: number; rootHash: Buffer; treeSize: number; hashes: Buffer[]; checkpoint: string }
    | undefined;
  canonicalizedBody: Buffer;
}

/** A bundle that passed {@link parseBundle}: decoded, not yet verified. */
export interface ParsedBundle {
  mediaType: string;
  /** DER of the signing (leaf) certificate. */
  leafCertificate: Buffer;
  tlogEntries: ParsedTlogEntry[];
  envelope: Envelope;
  /** DER RFC 3161 timestamps over the envelope signature. */
  rfc3161Timestamps: Buffer[];
}

const DSSE_KIND = { kind: 'dsse', version: '0.0.1' } as const;

/**
 * Assemble a v0.3 bundle: the leaf certificate alone, one `dsse` 0.0.1 log entry with its SET and
 * inclusion proof, and the envelope. The result is the JSON form (`SerializedBundle`).
 */
export function buildBundle(input: {
  envelope: Envelope;
  certificatePem: string;
  entry: BundleLogEntry;
  /** DER RFC 3161 TimeStampResp values over the envelope signature. */
  rfc3161Timestamps?: Uint8Array[];
}): SerializedBundle {
  const { envelope, entry } = input;
  const der = pemDer(input.certificatePem, 'CERTIFICATE');
  return {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: {
      certificate: { rawBytes: der.toString('base64') },
      tlogEntries: [
        {
          logIndex: String(entry.index),
          logId: { keyId: Buffer.from(entry.logId, 'hex').toString('base64') },
          kindVersion: { ...DSSE_KIND },
          integratedTime: String(entry.integratedTime),
          inclusionPromise: { signedEntryTimestamp: toBase64(entry.inclusionPromise) },
          inclusionProof: {
            logIndex: String(entry.proof.logIndex),
            rootHash: toBase64(entry.proof.rootHash),
            treeSize: String(entry.proof.treeSize),
            hashes: entry.proof.hashes.map(toBase64),
            checkpoint: { envelope: entry.proof.checkpoint },
          },
          canonicalizedBody: toBase64(entry.body),
        },
      ],
      timestampVerificationData:
        input.rfc3161Timestamps === undefined || input.rfc3161Timestamps.length === 0
          ? undefined
          : { rfc3161Timestamps: input.rfc3161Timestamps.map((t) => ({ signedTimestamp: toBase64(t) })) },
    },
    dsseEnvelope: {
      payload: envelope.payload,
      payloadType: envelope.payloadType,
      signatures: envelope.signatures.map((s) => ({ sig: s.sig, keyid: s.keyid })),
    },
  } as SerializedBundle;
}

/** The DER inside a PEM block of the given label (our own leaf, not untrusted input). */
function pemDer(pem: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (m?.[1] === undefined) throw new GatehouseError('BAD_INPUT', `not a PEM ${label.toLowerCase()}`);
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

const int64String = z.string().regex(/^(0|[1-9][0-9]{0,15})$/, 'not a non-negative decimal integer');

const tlogEntrySchema = z.object({
  logIndex: int64String,
  logId: z.object({ keyId: base64String.min(1) }),
  kindVersion: z.object({ kind: z.string().min(1), version: z.string().min(1) }),
  integratedTime: int64String,
  inclusionPromise: z.object({ signedEntryTimestamp: base64String.min(1) }).optional(),
  inclusionProof: z
    .object({
      logIndex: int64String,
      rootHash: base64String,
      treeSize: int64String,
      hashes: z.array(base64String).max(64),
      checkpoint: z.object({ envelope: z.string().min(1) }),
    })
    .optional(),
  canonicalizedBody: base64String.min(1),
});

const bundleSchema = z.object({
  mediaType: z.union([z.literal(BUNDLE_V03_MEDIA_TYPE), z.literal(BUNDLE_V03_LEGACY_MEDIA_TYPE)]),
  verificationMaterial: z.object({
    certificate: z.object({ rawBytes: base64String.min(1) }).optional(),
    x509CertificateChain: z.unknown().optional(),
    publicKey: z.unknown().optional(),
    tlogEntries: z.array(tlogEntrySchema).min(1).max(8),
    timestampVerificationData: z
      .object({
        rfc3161Timestamps: z
          .array(z.object({ signedTimestamp: base64String.min(1) }))
          .max(8)
          .default([]),
      })
      .optional(),
  }),
  dsseEnvelope: envelopeSchema.optional(),
  messageSignature: z.unknown().optional(),
});

/**
 * Parse an untrusted bundle (JSON text or a parsed value) into decoded values, refusing anything
 * gatehouse does not verify. `where` names the source (a file) in errors.
 * @throws GatehouseError BAD_BUNDLE naming the first problem
 */
export function parseBundle(json: unknown, where?: string): ParsedBundle {
  const b = readBundleJson(json, bundleSchema, where);
  if (b.verificationMaterial.certificate === undefined) {
    throw bundleError('the bundle has no verificationMaterial.certificate (v0.3 signing certificate)', where);
  }
  if (
    b.verificationMaterial.x509CertificateChain !== undefined ||
    b.verificationMaterial.publicKey !== undefined
  ) {
    throw bundleError('the bundle carries more than one kind of verification material', where);
  }
  if (b.dsseEnvelope === undefined) {
    throw bundleError(
      b.messageSignature === undefined
        ? 'the bundle has no dsseEnvelope'
        : 'message-signature bundles are not supported',
      where,
    );
  }
  if (b.messageSignature !== undefined)
    throw bundleError('the bundle has both a dsseEnvelope and a messageSignature', where);
  if (b.dsseEnvelope.signatures.length !== 1) {
    throw bundleError(
      `the bundle envelope has ${b.dsseEnvelope.signatures.length} signatures; exactly one is required`,
      where,
    );
  }
  const leafCertificate = Buffer.from(b.verificationMaterial.certificate.rawBytes, 'base64');
  try {
    new X509Certificate(leafCertificate);
  } catch (e) {
    throw bundleError('the bundle certificate is not a valid DER X.509 certificate', where, e);
  }
  const tlogEntries = b.verificationMaterial.tlogEntries.map((e, i): ParsedTlogEntry => {
    const { proof, ...decoded } = decodeTlogEntry(e, i, where);
    const p = e.inclusionProof;
    return {
      ...decoded,
      logIndex: Number(e.logIndex),
      integratedTime: Number(e.integratedTime),
      inclusionProof:
        p === undefined || proof === undefined
          ? undefined
          : {
              logIndex: Number(p.logIndex),
              rootHash: proof.rootHash,
              treeSize: Number(p.treeSize),
              hashes: proof.hashes,
              checkpoint: p.checkpoint.envelope,
            },
    };
  });
  return {
    mediaType: b.mediaType,
    leafCertificate,
    tlogEntries,
    envelope: b.dsseEnvelope,
    rfc3161Timestamps: (b.verificationMaterial.timestampVerificationData?.rfc3161Timestamps ?? []).map((t) =>
      Buffer.from(t.signedTimestamp, 'base64'),
    ),
  };
}
