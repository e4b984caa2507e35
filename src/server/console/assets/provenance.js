// What the page checks of a job's build log: its bytes' SHA-256 against the digest the signed
// provenance names for its `build.log` byproduct, and the provenance statement against the
// transparency log entry its bundle cites. DOM-free, so the tests run it under Node's WebCrypto.
import { fromBase64, sha256, toHex } from './merkle.js';

export const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const BUILD_LOG_BYPRODUCT = 'build.log';

/** SHA-256 of bytes, as lowercase hex. */
export async function sha256Hex(bytes) {
  return toHex(await sha256(bytes));
}

/**
 * The build log a provenance bundle names: its digest, the log index of the bundle's entry, and
 * the SHA-256 of the statement (what that entry records as `payloadHash`). Throws naming what is
 * wrong with the bundle; returns `digest: null` when the provenance names no build log.
 */
export async function buildLogOfBundle(bundle) {
  const env = bundle?.dsseEnvelope;
  if (env === undefined || typeof env.payload !== 'string')
    throw new Error('the provenance bundle holds no DSSE envelope');
  if (env.payloadType !== INTOTO_PAYLOAD_TYPE)
    throw new Error(`the provenance's payload type is ${String(env.payloadType).slice(0, 80)}, not in-toto`);
  const payload = fromBase64(env.payload);
  const statement = JSON.parse(new TextDecoder().decode(payload));
  if (statement.predicateType !== SLSA_PROVENANCE_V1)
    throw new Error(
      `the statement's predicate is ${String(statement.predicateType).slice(0, 80)}, not SLSA provenance v1`,
    );
  const named = (statement.predicate?.runDetails?.byproducts ?? []).filter(
    (b) => b?.name === BUILD_LOG_BYPRODUCT,
  );
  if (named.length > 1) throw new Error('the provenance names two build logs');
  const digest = named[0]?.digest?.sha256 ?? null;
  if (digest !== null && !/^[0-9a-f]{64}$/.test(digest))
    throw new Error('the provenance names a build log digest that is not SHA-256 hex');
  const entries = bundle.verificationMaterial?.tlogEntries ?? [];
  const logIndex = entries.length === 1 ? Number(entries[0].logIndex) : NaN;
  if (!Number.isSafeInteger(logIndex) || logIndex < 0)
    throw new Error('the provenance bundle cites no single log entry');
  return { digest, logIndex, payloadSha256: await sha256Hex(payload) };
}

/** Whether a dsse log entry's body records the statement of SHA-256 `payloadSha256`. */
export function entryRecordsPayload(entryBody, payloadSha256) {
  const e = JSON.parse(new TextDecoder().decode(entryBody));
  return (
    e.kind === 'dsse' &&
    e.spec?.payloadHash?.algorithm === 'sha256' &&
    e.spec.payloadHash.value === payloadSha256
  );
}
