// C2SP signed-note checkpoints, verified in the browser: the log's ECDSA P-256 signature over the
// note body, with the key from the trusted root (never a key the note names itself).
import { equalBytes, fromBase64, sha256 } from './merkle.js';

const subtle = globalThis.crypto.subtle;

/** A DER ECDSA signature as the raw r || s that WebCrypto verifies. @throws Error when malformed */
export function derToRaw(der, size = 32) {
  const fail = () => {
    throw new Error('the signature is not DER ECDSA');
  };
  if (der[0] !== 0x30) fail();
  let o = 2;
  if (der[1] & 0x80) o = 2 + (der[1] & 0x7f);
  const out = new Uint8Array(2 * size);
  for (let k = 0; k < 2; k++) {
    if (der[o] !== 0x02) fail();
    const len = der[o + 1];
    let v = der.subarray(o + 2, o + 2 + len);
    while (v.length > size && v[0] === 0) v = v.subarray(1);
    if (v.length > size) fail();
    out.set(v, k * size + (size - v.length));
    o += 2 + len;
  }
  return out;
}

/**
 * Parse and verify a checkpoint against the log keys (base64 DER SPKI) of the trusted root.
 * @returns { origin, treeSize, rootHash, keyName }
 * @throws Error naming what is wrong
 */
export async function verifyCheckpoint(text, logKeys) {
  const split = text.indexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint has no signature block');
  const body = text.slice(0, split + 1);
  const lines = body.split('\n');
  const [origin, size, root] = lines;
  if (origin === undefined || !/^\d{1,15}$/.test(size ?? '') || root === undefined)
    throw new Error('the checkpoint body is malformed');
  const rootHash = fromBase64(root);
  if (rootHash.length !== 32) throw new Error('the checkpoint root is not 32 bytes');
  const sigLines = text
    .slice(split + 2)
    .split('\n')
    .filter((l) => l !== '');
  const bodyBytes = new TextEncoder().encode(body);
  for (const key of logKeys) {
    const spki = fromBase64(key);
    const hint = (await sha256(spki)).subarray(0, 4);
    for (const line of sigLines) {
      const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
      if (m === null) continue;
      const sig = fromBase64(m[2]);
      if (sig.length < 5 || !equalBytes(sig.subarray(0, 4), hint)) continue;
      const pub = await subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, [
        'verify',
      ]);
      const ok = await subtle.verify(
        { name: 'ECDSA', hash: 'SHA-256' },
        pub,
        derToRaw(sig.subarray(4)),
        bodyBytes,
      );
      if (ok) return { origin, treeSize: Number(size), rootHash, keyName: m[1] };
      throw new Error(`the checkpoint signature by ${m[1]} does not verify`);
    }
  }
  throw new Error('no signature on the checkpoint is by a log key of the trusted root');
}
