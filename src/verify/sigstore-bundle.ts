/**
 * Parsing of any Sigstore bundle (v0.1, v0.2, v0.3 in both media type spellings), as other
 * signers produce them: message signatures or DSSE envelopes; a public key hint, a certificate
 * chain or a single certificate; Rekor v1 entries (SETs) and Rekor v2 entries (checkpoint only);
 * RFC 3161 timestamps. Strict where verification depends on it; decoded, not yet verified.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { bundleError, decodeTlogEntry, readBundleJson } from '../signing/bundle-decoding.ts';
import { type Envelope, envelopeSchema } from '../signing/dsse.ts';
import { base64String } from '../signing/strict-base64.ts';

const MEDIA_TYPES: Record<string, 1 | 2 | 3> = {
  'application/vnd.dev.sigstore.bundle+json;version=0.1': 1,
  'application/vnd.dev.sigstore.bundle+json;version=0.2': 2,
  'application/vnd.dev.sigstore.bundle+json;version=0.3': 3,
  'application/vnd.dev.sigstore.bundle.v0.3+json': 3,
};

const int64 = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = String(v);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(s) || !Number.isSafeInteger(Number(s))) {
    ctx.addIssue({ code: 'custom', message: 'not a non-negative integer' });
    return z.NEVER;
  }
  return Number(s);
});

const tlogEntrySchema = z.object({
  logIndex: int64,
  logId: z.object({ keyId: base64String.min(1) }),
  kindVersion: z.object({ kind: z.string().min(1), version: z.string().min(1) }),
  integratedTime: int64.optional(),
  inclusionPromise: z.object({ signedEntryTimestamp: base64String.min(1) }).optional(),
  inclusionProof: z
    .object({
      logIndex: int64,
      rootHash: base64String,
      treeSize: int64,
      hashes: z.array(base64String).max(64),
      checkpoint: z.object({ envelope: z.string().min(1) }).optional(),
    })
    .optional(),
  canonicalizedBody: base64String.min(1),
});

const rawBytes = z.object({ rawBytes: base64String.min(1) });

const bundleSchema = z.object({
  mediaType: z.string(),
  verificationMaterial: z.object({
    publicKey: z.object({ hint: z.string().optional() }).optional(),
    x509CertificateChain: z.object({ certificates: z.array(rawBytes) }).optional(),
    certificate: rawBytes.optional(),
    tlogEntries: z.array(tlogEntrySchema).max(16).default([]),
    timestampVerificationData: z
      .object({
        rfc3161Timestamps: z
          // Line breaks inside the base64 are tolerated here, as protobuf JSON decoders do.
          .array(
            z.object({
              signedTimestamp: z
                .string()
                .transform((s) => s.replace(/\n/g, ''))
                .pipe(base64String.min(1)),
            }),
          )
          .max(16)
          .default([]),
      })
      .optional(),
  }),
  messageSignature: z
    .object({
      messageDigest: z.object({ algorithm: z.string(), digest: base64String }).optional(),
      signature: base64String.min(1),
    })
    .optional(),
  dsseEnvelope: envelopeSchema.optional(),
});

/** A transparency log entry of a bundle, decoded. */
export interface SigstoreTlogEntry {
  logIndex: number;
  logId: Buffer;
  kind: string;
  version: string;
  /** Seconds since the epoch; absent (or 0) for Rekor v2 entries. */
  integratedTime: number | undefined;
  signedEntryTimestamp: Buffer | undefined;
  inclusionProof:
    | {
        logIndex: number;
        rootHash: Buffer;
        treeSize: number;
        hashes: Buffer[];
        checkpoint: string | undefined;
      }
    | undefined;
  canonicalizedBody: Buffer;
}

/** What a bundle's signature is checked with. */
export type SigstoreMaterial =
  | { kind: 'publicKey'; hint: string | undefined }
  | { kind: 'certificate'; leaf: X509Certificate };

/** What was signed. */
export type SigstoreContent =
  | { kind: 'messageSignature'; signature: Buffer; digest: { algorithm: string; value: Buffer } | undefined }
  | { kind: 'dsse'; envelope: Envelope; signature: Buffer };

export interface SigstoreBundle {
  mediaType: string;
  /** Minor version of the bundle format: 1, 2 or 3. */
  version: 1 | 2 | 3;
  material: SigstoreMaterial;
  tlogEntries: SigstoreTlogEntry[];
  /** DER RFC 3161 timestamps over the signature. */
  rfc3161Timestamps: Buffer[];
  content: SigstoreContent;
}

function certificate(der: Buffer, what: string, where: string | undefined): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (e) {
    throw bundleError(`${what} is not a valid DER X.509 certificate`, where, e);
  }
}

/**
 * Parse an untrusted Sigstore bundle (JSON text, bytes or a parsed value).
 * @throws GatehouseError BAD_BUNDLE naming the first problem
 */
export function parseSigstoreBundle(json: unknown, where?: string): SigstoreBundle {
  const b = readBundleJson(json, bundleSchema, where);
  const version = MEDIA_TYPES[b.mediaType];
  if (version === undefined) throw bundleError(`unsupported bundle media type '${b.mediaType}'`, where);
  const vm = b.verificationMaterial;
  const kinds = [vm.publicKey, vm.x509CertificateChain, vm.certificate].filter((m) => m !== undefined);
  if (kinds.length !== 1)
    throw bundleError('the bundle must carry exactly one kind of verification material', where);
  let material: SigstoreMaterial;
  if (vm.publicKey !== undefined) {
    material = { kind: 'publicKey', hint: vm.publicKey.hint };
  } else if (vm.certificate !== undefined) {
    material = {
      kind: 'certificate',
      leaf: certificate(Buffer.from(vm.certificate.rawBytes, 'base64'), 'the bundle certificate', where),
    };
  } else {
    const chain = (vm.x509CertificateChain?.certificates ?? []).map((c, i) =>
      certificate(Buffer.from(c.rawBytes, 'base64'), `bundle chain certificate ${i}`, where),
    );
    const [leaf] = chain;
    if (leaf === undefined) throw bundleError('the bundle certificate chain is empty', where);
    // Trust anchors come from the trusted root only: a bundle that ships a root is refused so no
    // verifier is tempted to trust it.
    if (chain.some((c) => c.checkIssued(c)))
      throw bundleError('the bundle certificate chain contains a root certificate', where);
    material = { kind: 'certificate', leaf };
  }
  if ((b.messageSignature === undefined) === (b.dsseEnvelope === undefined)) {
    throw bundleError('the bundle must carry exactly one of messageSignature and dsseEnvelope', where);
  }
  let content: SigstoreContent;
  if (b.messageSignature !== undefined) {
    const d = b.messageSignature.messageDigest;
    content = {
      kind: 'messageSignature',
      signature: Buffer.from(b.messageSignature.signature, 'base64'),
      digest:
        d === undefined ? undefined : { algorithm: d.algorithm, value: Buffer.from(d.digest, 'base64') },
    };
  } else {
    const envelope = b.dsseEnvelope as Envelope;
    const [sig, ...more] = envelope.signatures;
    if (sig === undefined || more.length > 0)
      throw bundleError('the bundle envelope must carry exactly one signature', where);
    content = { kind: 'dsse', envelope, signature: Buffer.from(sig.sig, 'base64') };
  }
  const tlogEntries = vm.tlogEntries.map((e, i): SigstoreTlogEntry => {
    const p = e.inclusionProof;
    // v0.1 bundles prove inclusion by promise; from v0.2 on the proof itself is required.
    if (version >= 2 && p === undefined) throw bundleError(`tlog entry ${i} has no inclusion proof`, where);
    if (version === 1 && e.inclusionPromise === undefined) {
      throw bundleError(`tlog entry ${i} of a v0.1 bundle has no inclusion promise`, where);
    }
    const { proof, ...decoded } = decodeTlogEntry(e, i, where);
    return {
      ...decoded,
      logIndex: e.logIndex,
      integratedTime: e.integratedTime === undefined || e.integratedTime === 0 ? undefined : e.integratedTime,
      inclusionProof:
        p === undefined || proof === undefined
          ? undefined
          : {
              logIndex: p.logIndex,
              rootHash: proof.rootHash,
              treeSize: p.treeSize,
              hashes: proof.hashes,
              checkpoint: p.checkpoint?.envelope,
            },
    };
  });
  return {
    mediaType: b.mediaType,
    version,
    material,
    tlogEntries,
    rfc3161Timestamps: (vm.timestampVerificationData?.rfc3161Timestamps ?? []).map((t) =>
      Buffer.from(t.signedTimestamp, 'base64'),
    ),
    content,
  };
}
