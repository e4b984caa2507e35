/**
 * cosign's tag-schema formats, for deploy-time tools that read `sha256-<hex>.sig` and `.att`
 * rather than OCI 1.1 referrers (cosign, Kyverno, policy-controller): the simple-signing payload
 * that names a manifest digest, the `hashedrekord` log body of its signature, the annotations a
 * signature or attestation layer carries, and the Rekor-style log bundle cosign checks offline.
 * Field names and encodings follow what cosign writes and decodes (docs/decisions.md, issue 16).
 */
import { X509Certificate } from 'node:crypto';
import { BUNDLE_V03_MEDIA_TYPE } from '@sigstore/bundle';
import { canonicalJson, sha256Hex, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { type Envelope, envelopeSchema } from './dsse.ts';

/** The layer media type of a cosign signature: a simple-signing payload. */
export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
/** The layer media type of a cosign attestation: a DSSE envelope. */
export const DSSE_ENVELOPE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
/** `critical.type` of a simple-signing payload written for cosign. */
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';

/** The layer annotations cosign reads. */
export const COSIGN_ANNOTATION = {
  /** Base64 signature over the layer (empty for an attestation: the envelope carries it). */
  signature: 'dev.cosignproject.cosign/signature',
  /** PEM of the signing certificate. */
  certificate: 'dev.sigstore.cosign/certificate',
  /** PEM of the certificates above it, nearest first, the root last. */
  chain: 'dev.sigstore.cosign/chain',
  /** The Rekor-style log bundle: the entry body, its index, time, log ID and signed entry timestamp. */
  bundle: 'dev.sigstore.cosign/bundle',
  /** The in-toto predicate type of an attestation layer. */
  predicateType: 'predicateType',
} as const;

/**
 * gatehouse's own annotation on an attestation layer: the Sigstore bundle's verification material
 * (certificate, log entry with its inclusion proof, timestamps), verbatim, so that the bundle can
 * be rebuilt from the layer and verified in full where only cosign's tags were copied. Tools that
 * do not know it ignore it.
 */
export const VERIFICATION_MATERIAL_ANNOTATION = 'dev.gatehouse.bundle.verificationMaterial';

/** A layer under a cosign tag, before it is placed. */
export interface CosignLayerContent {
  kind: 'sig' | 'att';
  mediaType: string;
  bytes: Uint8Array;
  annotations: Record<string, string>;
}

/** A log entry as cosign's bundle annotation records it. */
export interface CosignLogEntry {
  body: Uint8Array;
  integratedTime: number;
  logIndex: number;
  /** Hex log ID (SHA-256 of the log key's SubjectPublicKeyInfo). */
  logId: string;
  signedEntryTimestamp: Uint8Array;
}

/**
 * The simple-signing payload of a manifest: the repository it was pushed to (`docker-reference`)
 * and its digest, which is what cosign's verifier compares with the image it checks.
 */
export function simpleSigningPayload(dockerReference: string, manifestDigest: string): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': dockerReference },
        image: { 'docker-manifest-digest': manifestDigest },
        type: COSIGN_SIGNATURE_TYPE,
      },
      optional: null,
    }),
    'utf8',
  );
}

/**
 * The Rekor `hashedrekord` 0.0.1 body of a signature over `payload` by the certified key: what
 * cosign compares with the signature layer (same signature, same certificate, payload hash).
 */
export function hashedRekordBody(
  payload: Uint8Array,
  signature: Uint8Array,
  certificatePem: string,
): Uint8Array {
  return Buffer.from(
    canonicalJson({
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: { hash: { algorithm: 'sha256', value: sha256Hex(payload) } },
        signature: {
          content: toBase64(signature),
          publicKey: { content: Buffer.from(certificatePem, 'utf8').toString('base64') },
        },
      },
    }),
    'utf8',
  );
}

/**
 * cosign's log-bundle annotation: the JSON of its RekorBundle, whose signed entry timestamp is
 * the log's signature over the canonical JSON of the payload (the same SET a Sigstore bundle's
 * inclusion promise carries).
 */
export function logBundleAnnotation(entry: CosignLogEntry): string {
  return JSON.stringify({
    SignedEntryTimestamp: toBase64(entry.signedEntryTimestamp),
    Payload: {
      body: toBase64(entry.body),
      integratedTime: entry.integratedTime,
      logIndex: entry.logIndex,
      logID: entry.logId,
    },
  });
}

function pemOf(der: Uint8Array): string {
  return new X509Certificate(der).toString();
}

/** The signature layer of `.sig`: the payload, signed by the leaf, its certificate, chain and log bundle. */
export function signatureLayer(p: {
  payload: Uint8Array;
  signature: Uint8Array;
  certificatePem: string;
  chainPem: readonly string[];
  entry: CosignLogEntry;
}): CosignLayerContent {
  return {
    kind: 'sig',
    mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
    bytes: p.payload,
    annotations: {
      [COSIGN_ANNOTATION.signature]: toBase64(p.signature),
      [COSIGN_ANNOTATION.certificate]: p.certificatePem,
      [COSIGN_ANNOTATION.chain]: p.chainPem.join(''),
      [COSIGN_ANNOTATION.bundle]: logBundleAnnotation(p.entry),
    },
  };
}

/**
 * The bytes of an envelope as the log entry hashed them (`envelopeHash`): cosign checks the layer
 * against that hash, so the layer must be exactly these bytes.
 */
export function envelopeLayerBytes(envelope: Envelope): Uint8Array {
  return Buffer.from(canonicalJson(envelope), 'utf8');
}

/**
 * The attestation layer of `.att` for a bundle gatehouse signed (its JSON form): its envelope, with
 * the predicate type, an empty signature annotation (as cosign writes for attestations), the
 * certificate, the chain, the log bundle of its `dsse` entry, and gatehouse's verification material.
 * @throws GatehouseError BAD_BUNDLE when the bundle has no certificate, log entry or envelope
 */
export function attestationLayer(
  bundle: Record<string, unknown>,
  predicateType: string,
  chainPem: readonly string[],
): CosignLayerContent {
  const b = bundle as unknown as Partial<BundleJson>;
  const entry = b.verificationMaterial?.tlogEntries?.[0];
  const der = b.verificationMaterial?.certificate?.rawBytes;
  if (b.dsseEnvelope === undefined || entry?.inclusionPromise === undefined || der === undefined)
    throw new GatehouseError(
      'BAD_BUNDLE',
      'only a DSSE bundle with a certificate and a promised log entry has a cosign attestation layer',
    );
  return {
    kind: 'att',
    mediaType: DSSE_ENVELOPE_MEDIA_TYPE,
    bytes: envelopeLayerBytes(b.dsseEnvelope),
    annotations: {
      [COSIGN_ANNOTATION.predicateType]: predicateType,
      [COSIGN_ANNOTATION.signature]: '',
      [COSIGN_ANNOTATION.certificate]: pemOf(Buffer.from(der, 'base64')),
      [COSIGN_ANNOTATION.chain]: chainPem.join(''),
      [COSIGN_ANNOTATION.bundle]: logBundleAnnotation({
        body: Buffer.from(entry.canonicalizedBody, 'base64'),
        integratedTime: Number(entry.integratedTime),
        logIndex: Number(entry.logIndex),
        logId: Buffer.from(entry.logId.keyId, 'base64').toString('hex'),
        signedEntryTimestamp: Buffer.from(entry.inclusionPromise.signedEntryTimestamp, 'base64'),
      }),
      [VERIFICATION_MATERIAL_ANNOTATION]: JSON.stringify(b.verificationMaterial),
    },
  };
}

interface BundleJson {
  verificationMaterial: {
    certificate: { rawBytes: string };
    tlogEntries: {
      logIndex: string;
      logId: { keyId: string };
      integratedTime: string;
      inclusionPromise: { signedEntryTimestamp: string };
      canonicalizedBody: string;
    }[];
  };
  dsseEnvelope: Envelope;
}

/**
 * Rebuild the Sigstore bundle of an attestation layer gatehouse wrote, from its verification
 * material annotation and its envelope: byte for byte the bundle its referrer carries. What comes
 * back is untrusted, to be verified like any bundle.
 * @throws GatehouseError BAD_BUNDLE when the layer is not a DSSE envelope or lacks the annotation
 */
export function bundleFromAttestationLayer(
  bytes: Uint8Array,
  annotations: Record<string, string> | undefined,
  where: string,
): Uint8Array {
  const material = annotations?.[VERIFICATION_MATERIAL_ANNOTATION];
  if (material === undefined)
    throw new GatehouseError(
      'BAD_BUNDLE',
      `the attestation layer has no ${VERIFICATION_MATERIAL_ANNOTATION}`,
      {
        where,
      },
    );
  let verificationMaterial: unknown;
  let envelope: Envelope;
  try {
    verificationMaterial = JSON.parse(material);
    envelope = envelopeSchema.parse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)));
  } catch (e) {
    throw new GatehouseError('BAD_BUNDLE', 'the attestation layer is not a DSSE envelope with its material', {
      where,
      cause: e,
    });
  }
  // The key order of a bundle gatehouse builds, so that the bytes (and the digest the VSA names
  // them by) are those of the bundle signed.
  return Buffer.from(
    JSON.stringify({
      mediaType: BUNDLE_V03_MEDIA_TYPE,
      verificationMaterial,
      dsseEnvelope: {
        payload: envelope.payload,
        payloadType: envelope.payloadType,
        signatures: envelope.signatures.map((s) => ({ sig: s.sig, keyid: s.keyid })),
      },
    }),
    'utf8',
  );
}
