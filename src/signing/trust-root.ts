/**
 * The Sigstore `trusted_root.json` (protobuf-specs TrustedRoot v0.1) that external verifiers and
 * `gatehouse verify` use: the internal CA chain, the transparency log key and the certificate
 * transparency log key, each generation with its validity window.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { sha256 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { base64String } from './strict-base64.ts';

export const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';

/** One certificate authority of a trusted root: its chain, nearest to the leaf first. */
export interface TrustedRootCaInput {
  /** Root certificate (PEM). */
  rootPem: string;
  /** Intermediate certificate (PEM), absent for a CA whose root signs directly (a TSA, say). */
  intermediatePem?: string;
  validFrom: Date;
  /** End of the window in which this CA may have issued; absent while it is current. */
  validTo?: Date;
  /** Where the CA lives; informational. */
  uri?: string;
  /** Organisation and common name shown for the CA. */
  subject?: { organization: string; commonName: string };
}

/** One transparency log key of a trusted root. */
export interface TrustedRootLogInput {
  spkiDer: Uint8Array;
  /**
   * The log's URL. sigstore-js accepts a checkpoint signature only when its key name matches this
   * URL, so use `https://<log origin>`.
   */
  baseUrl: string;
  validFrom: Date;
  /** End of the key's window (inclusive); absent while the key is current. */
  validTo?: Date;
}

export interface TrustedRootInput {
  /** The CA, or every CA generation (current and retired) when keys were rotated. */
  ca: TrustedRootCaInput | TrustedRootCaInput[];
  /** The log key, or every log key generation. */
  tlog: TrustedRootLogInput | TrustedRootLogInput[];
  /**
   * The certificate transparency log key of each generation (each its own CT log, `baseUrl` its
   * submission prefix), whose SCTs the CA's leaves embed.
   */
  ctlogs?: TrustedRootLogInput[];
  /** RFC 3161 timestamp authorities: leaf (signing) certificate first. */
  timestampAuthorities?: { chainPem: string[]; validFrom: Date; validTo?: Date; uri?: string }[];
}

/** The JSON of a trusted root, as written to `trusted_root.json`. */
export type TrustedRootJson = ReturnType<typeof buildTrustedRoot>;

function derBase64(pem: string): string {
  return new X509Certificate(pem).raw.toString('base64');
}

function validFor(from: Date, to: Date | undefined): { start: string; end?: string } {
  return to === undefined
    ? { start: from.toISOString() }
    : { start: from.toISOString(), end: to.toISOString() };
}

const asArray = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/** Build the trusted root JSON document. */
export function buildTrustedRoot(input: TrustedRootInput) {
  const log = (t: TrustedRootLogInput) => ({
    baseUrl: t.baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: {
      rawBytes: Buffer.from(t.spkiDer).toString('base64'),
      keyDetails: 'PKIX_ECDSA_P256_SHA_256',
      validFor: validFor(t.validFrom, t.validTo),
    },
    logId: { keyId: sha256(t.spkiDer).toString('base64') },
  });
  return {
    mediaType: TRUSTED_ROOT_MEDIA_TYPE,
    tlogs: asArray(input.tlog).map(log),
    certificateAuthorities: asArray(input.ca).map((ca) => ({
      subject: ca.subject ?? { organization: 'gatehouse', commonName: 'gatehouse' },
      uri: ca.uri ?? '',
      certChain: {
        certificates: [
          ...(ca.intermediatePem === undefined ? [] : [{ rawBytes: derBase64(ca.intermediatePem) }]),
          { rawBytes: derBase64(ca.rootPem) },
        ],
      },
      validFor: validFor(ca.validFrom, ca.validTo),
    })),
    ctlogs: (input.ctlogs ?? []).map(log),
    timestampAuthorities: (input.timestampAuthorities ?? []).map((tsa) => ({
      subject: { organization: 'gatehouse', commonName: 'gatehouse-tsa' },
      uri: tsa.uri ?? '',
      certChain: { certificates: tsa.chainPem.map((pem) => ({ rawBytes: derBase64(pem) })) },
      validFor: validFor(tsa.validFrom, tsa.validTo),
    })),
  };
}

/** A validity window; `end` absent means open-ended. */
export interface ValidFor {
  start: Date | undefined;
  end: Date | undefined;
}

/** A trusted transparency log, decoded. */
export interface TrustedLog {
  baseUrl: string;
  spkiDer: Buffer;
  keyDetails: string;
  logId: Buffer;
  validFor: ValidFor;
}

/** A trusted CA, decoded: certificates DER, nearest to the leaf first. */
export interface TrustedCa {
  certChain: Buffer[];
  validFor: ValidFor;
}

export interface ParsedTrustedRoot {
  tlogs: TrustedLog[];
  certificateAuthorities: TrustedCa[];
  /** Certificate transparency logs (SCTs in Fulcio-style certificates). */
  ctlogs: TrustedLog[];
  /** RFC 3161 timestamp authorities: chain with the TSA's signing certificate first. */
  timestampAuthorities: TrustedCa[];
}

const timestamp = z.iso.datetime({ offset: true });
// A TimeRange's start is required: a window without one is a malformed root, not an unbounded one.
const validForSchema = z.object({ start: timestamp, end: timestamp.nullish() }).optional();
const logSchema = z.object({
  baseUrl: z.string(),
  hashAlgorithm: z.string().optional(),
  publicKey: z.object({
    rawBytes: base64String.min(1),
    keyDetails: z.string(),
    validFor: validForSchema,
  }),
  logId: z.object({ keyId: base64String.min(1) }),
});
const caSchema = z.object({
  certChain: z.object({ certificates: z.array(z.object({ rawBytes: base64String.min(1) })).min(1) }),
  validFor: validForSchema,
});
const trustedRootSchema = z.object({
  mediaType: z.string().startsWith('application/vnd.dev.sigstore.trustedroot'),
  tlogs: z.array(logSchema).default([]),
  certificateAuthorities: z.array(caSchema).default([]),
  ctlogs: z.array(logSchema).default([]),
  timestampAuthorities: z.array(caSchema).default([]),
});

function window(v: { start?: string | undefined; end?: string | null | undefined } | undefined): ValidFor {
  return {
    start: v?.start === undefined ? undefined : new Date(v.start),
    end: v?.end === undefined || v.end === null ? undefined : new Date(v.end),
  };
}

/** True when `when` lies in the window. */
export function isWithin(v: ValidFor, when: Date): boolean {
  return (v.start === undefined || v.start <= when) && (v.end === undefined || when <= v.end);
}

/**
 * Parse a trusted root JSON document into decoded keys and certificates.
 * @throws GatehouseError BAD_CONFIG naming the first problem
 */
export function parseTrustedRoot(json: unknown, where?: string): ParsedTrustedRoot {
  const parsed = trustedRootSchema.safeParse(json);
  const opts = where === undefined ? {} : { where };
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new GatehouseError(
      'BAD_CONFIG',
      `trusted root field ${issue?.path.join('.') || '(root)'} is invalid: ${issue?.message ?? 'unknown'}`,
      { cause: parsed.error, ...opts },
    );
  }
  const log = (t: z.infer<typeof logSchema>): TrustedLog => ({
    baseUrl: t.baseUrl,
    spkiDer: Buffer.from(t.publicKey.rawBytes, 'base64'),
    keyDetails: t.publicKey.keyDetails,
    logId: Buffer.from(t.logId.keyId, 'base64'),
    validFor: window(t.publicKey.validFor),
  });
  const ca = (c: z.infer<typeof caSchema>): TrustedCa => ({
    certChain: c.certChain.certificates.map((x) => Buffer.from(x.rawBytes, 'base64')),
    validFor: window(c.validFor),
  });
  return {
    tlogs: parsed.data.tlogs.map(log),
    certificateAuthorities: parsed.data.certificateAuthorities.map(ca),
    ctlogs: parsed.data.ctlogs.map(log),
    timestampAuthorities: parsed.data.timestampAuthorities.map(ca),
  };
}
