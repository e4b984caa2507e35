/**
 * Signed requests to the control plane about a job: who speaks (an enrolled runner host, or the
 * job's own key after attestation), for which act and job, over exactly which request, when, and
 * once. A compact ES256 JWS whose payload is `{ act, job, digest, iat, jti }`; `digest` is the
 * SHA-256 of the request's canonical JSON, so a proof signed for one request, act or job verifies
 * for no other. The same proofs travel in-process and over HTTP (the `Gatehouse-Proof` header).
 */
import { createPublicKey, verify as cryptoVerify, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { derToP1363 } from '../signing/ca.ts';
import type { Signer } from '../signing/signer.ts';
import type { TokenStore } from '../store/store.ts';
import { jwkThumbprint, runnerPublicJwkSchema } from './token.ts';

/** What a signed request asks. */
export type RequestAct =
  | 'create'
  | 'claim'
  | 'attest'
  | 'challenge'
  | 'evidence'
  | 'upload'
  | 'environment'
  | 'log'
  | 'fail'
  | 'finish'
  | 'host-quote';

/** `typ` of a runner host's signed request. */
export const HOST_REQUEST_TYP = 'gatehouse-host-request+jws';
/** `typ` of a request signed with a job's key. */
export const JOB_REQUEST_TYP = 'gatehouse-job-request+jws';
/** How long after signing a request proof is accepted, and the clock skew allowed. */
export const REQUEST_MAX_AGE_SECONDS = 300;
const CLOCK_SKEW_SECONDS = 60;
const MAX_PROOF_CHARS = 4096;

const claimsSchema = z.strictObject({
  act: z.enum([
    'create',
    'claim',
    'attest',
    'challenge',
    'evidence',
    'upload',
    'environment',
    'log',
    'fail',
    'finish',
    'host-quote',
  ]),
  job: z.string().min(1).max(128).optional(),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  iat: z.number().int().nonnegative(),
  jti: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
});

/** The verified claims of a request proof. */
export type RequestClaims = z.infer<typeof claimsSchema>;

/** What a proof must say: the act, the job (absent for acts before one exists) and the request. */
export interface ExpectedRequest {
  act: RequestAct;
  job?: string;
  request: unknown;
}

/** The digest a proof carries for a request: SHA-256 hex of its canonical JSON. */
export function requestDigest(request: unknown): string {
  return sha256Hex(canonicalJson(request ?? null));
}

function b64url(data: Uint8Array | string): string {
  return Buffer.from(data).toString('base64url');
}

function claimsFor(expected: ExpectedRequest): RequestClaims {
  return {
    act: expected.act,
    ...(expected.job === undefined ? {} : { job: expected.job }),
    digest: requestDigest(expected.request),
    iat: Math.floor(Date.now() / 1000),
    jti: randomBytes(18).toString('base64url'),
  };
}

/** Sign a request as the runner host `host`, with its enrolled key. */
export async function signHostRequest(
  signer: Signer,
  host: string,
  expected: ExpectedRequest,
): Promise<string> {
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: HOST_REQUEST_TYP, kid: host }));
  const payload = b64url(JSON.stringify(claimsFor(expected)));
  const der = await signer.sign(new TextEncoder().encode(`${header}.${payload}`));
  return `${header}.${payload}.${b64url(derToP1363(der))}`;
}

/** Sign a request with a job key (anything that signs a JWS with its public JWK in the header). */
export function signJobRequest(
  key: { signJws(payload: Uint8Array, typ: string): Promise<string> },
  expected: ExpectedRequest,
): Promise<string> {
  return key.signJws(new TextEncoder().encode(JSON.stringify(claimsFor(expected))), JOB_REQUEST_TYP);
}

function refused(message: string): GatehouseError {
  return new GatehouseError('UNAUTHORIZED', message);
}

/** A proof split and its header read, not yet verified. */
interface ParsedProof {
  header: Record<string, unknown>;
  signingInput: Buffer;
  payload: Buffer;
  signature: Buffer;
}

function parseProof(jws: unknown): ParsedProof {
  if (typeof jws !== 'string' || jws.length === 0 || jws.length > MAX_PROOF_CHARS)
    throw refused('the request carries no proof (a signed Gatehouse-Proof)');
  const parts = jws.split('.');
  const [h, p, s] = parts;
  if (
    parts.length !== 3 ||
    h === undefined ||
    p === undefined ||
    s === undefined ||
    !parts.every((x) => /^[A-Za-z0-9_-]+$/.test(x))
  )
    throw refused('the request proof is not a compact JWS');
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch {
    throw refused('the request proof header is not JSON');
  }
  if (typeof header !== 'object' || header === null)
    throw refused('the request proof header is not an object');
  return {
    header: header as Record<string, unknown>,
    signingInput: Buffer.from(`${h}.${p}`, 'ascii'),
    payload: Buffer.from(p, 'base64url'),
    signature: Buffer.from(s, 'base64url'),
  };
}

/** The host a host proof says signed it (read before its key is looked up). @throws UNAUTHORIZED */
export function proofHost(jws: unknown): string {
  const { header } = parseProof(jws);
  const r = z
    .strictObject({
      alg: z.literal('ES256'),
      typ: z.literal(HOST_REQUEST_TYP),
      kid: z.string().min(1).max(64),
    })
    .safeParse(header);
  if (!r.success) throw refused(`the request proof is not an ES256 ${HOST_REQUEST_TYP} naming its host`);
  return r.data.kid;
}

/** Whether a proof is signed with a job key (rather than by a host). */
export function isJobProof(jws: unknown): boolean {
  try {
    return parseProof(jws).header.typ === JOB_REQUEST_TYP;
  } catch {
    return false;
  }
}

/**
 * Verify a request proof: its signature with `publicJwk` (the host's enrolled key, or the job's
 * key), that it says exactly the expected act, job and request, that it is fresh, and that it was
 * not used before (its id is then kept until it could no longer be fresh).
 * @throws GatehouseError UNAUTHORIZED
 */
export async function verifyRequestProof(
  jws: unknown,
  key: { publicJwk: JWK; typ: string },
  expected: ExpectedRequest,
  tokens: TokenStore,
): Promise<RequestClaims> {
  const proof = parseProof(jws);
  if (proof.header.alg !== 'ES256' || proof.header.typ !== key.typ)
    throw refused(`the request proof is not an ES256 ${key.typ}`);
  let ok = false;
  try {
    const pub = createPublicKey({ key: key.publicJwk, format: 'jwk' });
    ok =
      proof.signature.length === 64 &&
      cryptoVerify('sha256', proof.signingInput, { key: pub, dsaEncoding: 'ieee-p1363' }, proof.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw refused('the request proof signature does not verify with the key that must have made it');
  let raw: unknown;
  try {
    raw = JSON.parse(proof.payload.toString('utf8'));
  } catch {
    throw refused('the request proof payload is not JSON');
  }
  const parsed = claimsSchema.safeParse(raw);
  if (!parsed.success) throw refused('the request proof claims are malformed');
  const c = parsed.data;
  if (c.act !== expected.act || c.job !== expected.job)
    throw refused(
      `the request proof was signed for ${c.act}${c.job === undefined ? '' : ` of ${c.job}`}, not this request`,
    );
  if (c.digest !== requestDigest(expected.request))
    throw refused('the request proof covers a different request');
  const now = Math.floor(Date.now() / 1000);
  if (c.iat > now + CLOCK_SKEW_SECONDS || now - c.iat > REQUEST_MAX_AGE_SECONDS)
    throw refused(`the request proof is stale: signed at ${new Date(c.iat * 1000).toISOString()}`);
  const id = `request:${c.jti}`;
  if (await tokens.isRevoked(id)) throw refused('the request proof was already used');
  await tokens.revoke(id, c.iat + REQUEST_MAX_AGE_SECONDS + CLOCK_SKEW_SECONDS);
  return c;
}

/** The job-key public JWK a job proof carries in its header, checked against the job's thumbprint. */
export function jobProofKey(jws: unknown, thumbprint: string): JWK {
  const { header } = parseProof(jws);
  const r = z
    .strictObject({ alg: z.literal('ES256'), typ: z.literal(JOB_REQUEST_TYP), jwk: runnerPublicJwkSchema })
    .safeParse(header);
  if (!r.success) throw refused(`the request proof is not an ES256 ${JOB_REQUEST_TYP} with its public key`);
  const { x, y } = r.data.jwk;
  // The key in the header counts only because its thumbprint is the one the job's attestation bound.
  if (jwkThumbprint(x, y) !== thumbprint)
    throw refused('the request was signed by a key other than the job key');
  return { kty: 'EC', crv: 'P-256', x, y };
}
