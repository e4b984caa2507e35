import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson, sha256Hex, toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { preAuthEncoding } from '../signing/dsse.ts';
import { keyIdOf, type SecuritySignature, type TrustedKey } from '../signing/security-act.ts';
import type { Signer } from '../signing/signer.ts';
import type { AttestationStore, ReferenceValueBundleRecord } from '../store/store.ts';
import type { ReferenceValues } from './baseline.ts';
import { platformReferenceValuesSchema } from './evidence/platform-evidence.ts';

/** DSSE payload type of a reference-value bundle, signed by the security role. */
export const REFERENCE_VALUES_PAYLOAD_TYPE = 'application/vnd.gatehouse.reference-values.v1+json';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
const digests = z.array(hex64).min(1).max(256);

/** Reference values as published: every list non-empty, every digest SHA-256 hex. */
export const referenceValuesSchema = z.strictObject({
  agent: digests,
  sandboxProfile: digests,
  toolchain: z.record(z.string().regex(/^\/[^\0]{0,4095}$/, 'must be an absolute path'), digests),
  /** Cloud and TEE evidence: reference values per kind (docs/attestation.md). */
  platforms: platformReferenceValuesSchema.optional(),
});

/** A bundle in force: its values, version and the id tokens name as their appraisal policy. */
export interface ReferenceBundle {
  readonly version: number;
  /** sha256 hex of the signed payload. */
  readonly digest: string;
  readonly values: ReferenceValues;
  readonly keyId: string;
  readonly publishedAt: string;
  /** `gatehouse:reference-values:v<version>#sha256:<digest>`. */
  readonly policyId: string;
}

/** The exact bytes a bundle's signature covers: the canonical JSON of `{ version, values }`. */
export function referenceBundlePayload(version: number, values: ReferenceValues): string {
  return canonicalJson({ version, values });
}

/** The appraisal policy id of a bundle. */
export function referencePolicyId(version: number, digest: string): string {
  return `gatehouse:reference-values:v${version}#sha256:${digest}`;
}

/** Sign `payload` as the security role under one of the authority's payload types. */
export async function signSecurityPayload(
  payloadType: string,
  payload: string,
  signer: Signer,
): Promise<SecuritySignature> {
  const bytes = preAuthEncoding(payloadType, new TextEncoder().encode(payload));
  return { signature: toBase64(await signer.sign(bytes)), keyId: keyIdOf(signer.publicKeySpki()) };
}

/**
 * Sign a reference-value bundle with the security key. The signature covers the version, so a
 * bundle cannot be replayed later as a newer version (rolling back the reference values).
 */
export async function signReferenceValues(
  version: number,
  values: ReferenceValues,
  signer: Signer,
): Promise<SecuritySignature> {
  return signSecurityPayload(REFERENCE_VALUES_PAYLOAD_TYPE, referenceBundlePayload(version, values), signer);
}

/**
 * Verify a security-role signature over a bundle payload (the same DSSE PAE and ECDSA P-256 scheme
 * as signed policies, with its own payload type so that no other signed act can pass for one).
 * @throws GatehouseError SIGNATURE_INVALID
 */
function verifyBundleSignature(
  payload: string,
  sig: SecuritySignature,
  trusted: readonly TrustedKey[],
): void {
  verifySecurityPayload(REFERENCE_VALUES_PAYLOAD_TYPE, payload, sig, trusted);
}

/**
 * Verify a security-role signature over `payload` under a DSSE payload type of the attestation
 * authority's own (reference values, EK CA trust).
 * @throws GatehouseError SIGNATURE_INVALID
 */
export function verifySecurityPayload(
  payloadType: string,
  payload: string,
  sig: SecuritySignature,
  trusted: readonly TrustedKey[],
): void {
  const key = trusted.find((k) => k.keyId === sig.keyId);
  if (key === undefined)
    throw new GatehouseError(
      'SIGNATURE_INVALID',
      `signed by key ${sig.keyId.slice(0, 16)}…, which is not a trusted security key`,
    );
  let ok = false;
  try {
    ok = cryptoVerify(
      'sha256',
      preAuthEncoding(payloadType, new TextEncoder().encode(payload)),
      createPublicKey(key.publicKeyPem),
      Buffer.from(sig.signature, 'base64'),
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new GatehouseError('SIGNATURE_INVALID', 'the security signature does not verify');
}

/**
 * Parse reference values from untrusted input.
 * @throws GatehouseError BAD_INPUT naming the field
 */
export function parseReferenceValues(input: unknown, where: string): ReferenceValues {
  const r = referenceValuesSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `reference values ${i?.path.join('.') ?? ''}: ${i?.message ?? 'invalid'}`.replace(' :', ':'),
      { where },
    );
  }
  return r.data;
}

/**
 * Reference values as signed, versioned bundles in the store. Only the security role publishes
 * (its signature is checked before anything is stored); every load verifies the signature again,
 * so a bundle altered in the database is refused rather than appraised against.
 */
export class ReferenceValueService {
  readonly #store: AttestationStore;
  readonly #trusted: readonly TrustedKey[];
  #cache: { record: ReferenceValueBundleRecord; bundle: ReferenceBundle } | undefined;

  constructor(options: { store: AttestationStore; trustedKeys: readonly TrustedKey[] }) {
    this.#store = options.store;
    this.#trusted = options.trustedKeys;
  }

  /**
   * Publish the next version. The signature must be a trusted security key's over
   * `{ version, values }`, and `version` must be the next one.
   * @throws GatehouseError SIGNATURE_INVALID, BAD_INPUT, CONFLICT (not the next version)
   */
  async publish(body: {
    version: number;
    values: unknown;
    signature: string;
    keyId: string;
  }): Promise<ReferenceBundle> {
    const values = parseReferenceValues(body.values, 'the published reference values');
    const payload = referenceBundlePayload(body.version, values);
    verifyBundleSignature(payload, body, this.#trusted);
    const latest = await this.#store.latestReferenceValues();
    const next = (latest?.version ?? 0) + 1;
    if (body.version !== next)
      throw new GatehouseError(
        'CONFLICT',
        `reference values version ${body.version} is not the next version (${next})`,
      );
    const record: ReferenceValueBundleRecord = {
      version: body.version,
      digest: sha256Hex(payload),
      payload,
      signature: body.signature,
      keyId: body.keyId,
      publishedAt: new Date().toISOString(),
    };
    await this.#store.publishReferenceValues(record);
    return this.#verified(record);
  }

  /**
   * The newest bundle, verified. There is no fallback to an older bundle: that would let whoever
   * can write the database roll the reference values back.
   * @throws GatehouseError NOT_FOUND (none published), SIGNATURE_INVALID (altered or untrusted)
   */
  async current(): Promise<ReferenceBundle> {
    const record = await this.#store.latestReferenceValues();
    if (record === undefined)
      throw new GatehouseError(
        'NOT_FOUND',
        'no reference values are published: run `gatehouse init` or `gatehouse attestation reference-values publish`',
      );
    return this.#verified(record);
  }

  /**
   * One version, verified.
   * @throws GatehouseError NOT_FOUND, SIGNATURE_INVALID
   */
  async get(version: number): Promise<ReferenceBundle> {
    const record = await this.#store.getReferenceValues(version);
    if (record === undefined) throw new GatehouseError('NOT_FOUND', `no reference values version ${version}`);
    return this.#verified(record);
  }

  /** Every version, newest first, each with whether its signature verifies now. */
  async history(): Promise<(Omit<ReferenceValueBundleRecord, 'payload'> & { valid: boolean })[]> {
    return (await this.#store.referenceValueHistory()).map(({ payload: _p, ...r }) => {
      let valid = true;
      try {
        this.#verifyRecord({ ...r, payload: _p });
      } catch {
        valid = false;
      }
      return { ...r, valid };
    });
  }

  /**
   * Sign `values` with the security key and publish them as the next version, unless the newest
   * bundle already holds exactly these values (what `init` and `init --update-reference-values` do).
   * @returns the bundle published, or undefined when nothing changed
   * @throws GatehouseError SIGNATURE_INVALID (the signer is not a trusted security key), BAD_INPUT, CONFLICT
   */
  async publishIfChanged(measured: ReferenceValues, signer: Signer): Promise<ReferenceBundle | undefined> {
    const latest = await this.#store.latestReferenceValues();
    let values = measured;
    if (latest !== undefined) {
      try {
        const current = this.#verified(latest);
        // Cloud and TEE reference values are not measured here: a re-measurement keeps them.
        if (values.platforms === undefined && current.values.platforms !== undefined)
          values = { ...values, platforms: current.values.platforms };
        if (canonicalJson(current.values) === canonicalJson(values)) return undefined;
      } catch {
        // An unverifiable newest bundle is superseded by a freshly signed one.
      }
    }
    const version = (latest?.version ?? 0) + 1;
    return this.publish({ version, values, ...(await signReferenceValues(version, values, signer)) });
  }

  #verified(record: ReferenceValueBundleRecord): ReferenceBundle {
    const hit = this.#cache;
    if (
      hit !== undefined &&
      hit.record.version === record.version &&
      hit.record.payload === record.payload &&
      hit.record.signature === record.signature &&
      hit.record.keyId === record.keyId &&
      hit.record.digest === record.digest
    )
      return hit.bundle;
    const bundle = this.#verifyRecord(record);
    this.#cache = { record: { ...record }, bundle };
    return bundle;
  }

  #verifyRecord(record: ReferenceValueBundleRecord): ReferenceBundle {
    const where = `reference values version ${record.version}`;
    verifyBundleSignature(record.payload, record, this.#trusted);
    // The signed payload names its own version and must hash to the recorded digest, so that a
    // validly signed bundle cannot be stored under another version number or digest.
    let parsed: { version?: unknown; values?: unknown };
    try {
      parsed = JSON.parse(record.payload) as typeof parsed;
    } catch (e) {
      throw new GatehouseError('SIGNATURE_INVALID', `${where} is not JSON`, { cause: e });
    }
    if (parsed.version !== record.version || sha256Hex(record.payload) !== record.digest)
      throw new GatehouseError('SIGNATURE_INVALID', `${where} does not match its signed version or digest`);
    const values = parseReferenceValues(parsed.values, where);
    return Object.freeze({
      version: record.version,
      digest: record.digest,
      values,
      keyId: record.keyId,
      publishedAt: record.publishedAt,
      policyId: referencePolicyId(record.version, record.digest),
    });
  }
}
