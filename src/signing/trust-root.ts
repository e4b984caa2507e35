/**
 * The Sigstore `trusted_root.json` (protobuf-specs TrustedRoot v0.1) that external verifiers and
 * `gatehouse verify` use: the internal CA chain and the transparency log key.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { sha256 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { base64String } from './strict-base64.ts';

export const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';

export interface TrustedRootInput {
  ca: {
    rootPem: string;
    intermediatePem: string;
    validFrom: Date;
    /** Where the CA lives; informational. */
    uri?: string;
    /** Organisation and common name shown for the CA. */
    subject?: { organization: string; commonName: string };
  };
  tlog: {
    spkiDer: Uint8Array;
    /**
     * The log's URL. sigstore-js accepts a checkpoint signature only when its key name matches this
     * URL, so use `https://<log origin>`.
     */
    baseUrl: string;
    validFrom: Date;
  };
}

/** The JSON of a trusted root, as written to `trusted_root.json`. */
export type TrustedRootJson = ReturnType<typeof buildTrustedRoot>;

function derBase64(pem: string): string {
  return new X509Certificate(pem).raw.toString('base64');
}

/** Build the trusted root JSON document. */
export function buildTrustedRoot(input: TrustedRootInput) {
  return {
    mediaType: TRUSTED_ROOT_MEDIA_TYPE,
    tlogs: [
      {
        baseUrl: input.tlog.baseUrl,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: Buffer.from(input.tlog.spkiDer).toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start: input.tlog.validFrom.toISOString() },
        },
        logId: { keyId: sha256(input.tlog.spkiDer).toString('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: input.ca.subject ?? { organization: 'gatehouse', commonName: 'gatehouse' },
        uri: input.ca.uri ?? '',
        certChain: {
          certificates: [
            { rawBytes: derBase64(input.ca.intermediatePem) },
            { rawBytes: derBase64(input.ca.rootPem) },
          ],
        },
        validFor: { start: input.ca.validFrom.toISOString() },
      },
    ],
    ctlogs: [] as unknown[],
    timestampAuthorities: [] as unknown[],
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
}

const timestamp = z.iso.datetime({ offset: true });
const validForSchema = z.object({ start: timestamp.optional(), end: timestamp.optional() }).optional();
const trustedRootSchema = z.object({
  mediaType: z.string().startsWith('application/vnd.dev.sigstore.trustedroot'),
  tlogs: z
    .array(
      z.object({
        baseUrl: z.string(),
        hashAlgorithm: z.string().optional(),
        publicKey: z.object({
          rawBytes: base64String.min(1),
          keyDetails: z.string(),
          validFor: validForSchema,
        }),
        logId: z.object({ keyId: base64String.min(1) }),
      }),
    )
    .default([]),
  certificateAuthorities: z
    .array(
      z.object({
        certChain: z.object({ certificates: z.array(z.object({ rawBytes: base64String.min(1) })).min(1) }),
        validFor: validForSchema,
      }),
    )
    .default([]),
});

function window(v: { start?: string | undefined; end?: string | undefined } | undefined): ValidFor {
  return {
    start: v?.start === undefined ? undefined : new Date(v.start),
    end: v?.end === undefined ? undefined : new Date(v.end),
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
  return {
    tlogs: parsed.data.tlogs.map((t) => ({
      baseUrl: t.baseUrl,
      spkiDer: Buffer.from(t.publicKey.rawBytes, 'base64'),
      keyDetails: t.publicKey.keyDetails,
      logId: Buffer.from(t.logId.keyId, 'base64'),
      validFor: window(t.publicKey.validFor),
    })),
    certificateAuthorities: parsed.data.certificateAuthorities.map((c) => ({
      certChain: c.certChain.certificates.map((x) => Buffer.from(x.rawBytes, 'base64')),
      validFor: window(c.validFor),
    })),
  };
}
