// Types of provenance.js, the page's build-log check (checked by tsc for the tests that import it).
export const INTOTO_PAYLOAD_TYPE: string;
export const SLSA_PROVENANCE_V1: string;
export const BUILD_LOG_BYPRODUCT: string;
export function sha256Hex(bytes: Uint8Array): Promise<string>;
export function buildLogOfBundle(
  bundle: unknown,
): Promise<{ digest: string | null; logIndex: number; payloadSha256: string }>;
export function entryRecordsPayload(entryBody: Uint8Array, payloadSha256: string): boolean;
