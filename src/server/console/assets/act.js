// Triage acts as the security role signs them: the DSSE pre-authentication encoding of the act's
// canonical JSON, signed with ECDSA P-256 / SHA-256. Prepared here, in the page; the signature is
// made with a key the person loads (never sent anywhere) or outside with `gatehouse triage`.
import { sha256, toBase64, toHex } from './merkle.js';

const subtle = globalThis.crypto.subtle;
export const SECURITY_ACT_PAYLOAD = 'application/vnd.gatehouse.security-act.v1+json';

/** Canonical JSON: keys sorted, no whitespace (the server's encoding). */
export function canonicalJson(v) {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string')
    return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v)
    .filter((k) => v[k] !== undefined)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
}

/** The act a triage is (one per decision, version 1). */
export function triageAct(decisionId, action, reason) {
  return { kind: 'triage', name: decisionId, version: 1, content: { action, reason } };
}

/** The bytes the security key signs for an act. */
export function actBytes(act) {
  const enc = new TextEncoder();
  const payload = enc.encode(canonicalJson(act));
  const type = enc.encode(SECURITY_ACT_PAYLOAD);
  const head = enc.encode(`DSSEv1 ${type.length} `);
  const mid = enc.encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + mid.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(mid, head.length + type.length);
  out.set(payload, head.length + type.length + mid.length);
  return out;
}

/** The act's digest as the console shows it: sha256 of the signed bytes, hex. */
export async function actDigest(act) {
  return toHex(await sha256(actBytes(act)));
}

function rawToDer(raw) {
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.subarray(i);
    if (v[0] & 0x80) v = Uint8Array.of(0, ...v);
    return Uint8Array.of(0x02, v.length, ...v);
  };
  const r = int(raw.subarray(0, 32));
  const s = int(raw.subarray(32));
  return Uint8Array.of(0x30, r.length + s.length, ...r, ...s);
}

/**
 * Open a PKCS#8 PEM P-256 private key: a non-extractable signing key and its key id (sha256 hex of
 * the public key's DER SPKI, as the server names trusted security keys).
 * @throws Error when it is not an unencrypted P-256 PKCS#8 key
 */
export async function loadSigningKey(pem) {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (m === null) throw new Error('not an unencrypted PKCS#8 PEM private key (BEGIN PRIVATE KEY)');
  const der = Uint8Array.from(atob(m[1].replace(/\s+/g, '')), (c) => c.charCodeAt(0));
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  // Extractable only long enough to derive the public half; the key that signs is not.
  const loose = await subtle.importKey('pkcs8', der, alg, true, ['sign']);
  const { kty, crv, x, y } = await subtle.exportKey('jwk', loose);
  const pub = await subtle.importKey('jwk', { kty, crv, x, y }, alg, true, ['verify']);
  const spki = new Uint8Array(await subtle.exportKey('spki', pub));
  const key = await subtle.importKey('pkcs8', der, alg, false, ['sign']);
  der.fill(0);
  return { key, keyId: toHex(await sha256(spki)) };
}

/** Sign an act: base64 DER ECDSA, as the server verifies it. */
export async function signAct(act, key) {
  const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, actBytes(act)));
  return toBase64(rawToDer(raw));
}
