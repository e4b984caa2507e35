// Types of merkle.js, the page's RFC 6962 verifier (checked by tsc for the tests that import it).
export function sha256(...parts: Uint8Array[]): Promise<Uint8Array>;
export function leafHash(entry: Uint8Array): Promise<Uint8Array>;
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean;
export function rootFromInclusionProof(
  index: number,
  treeSize: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Promise<Uint8Array>;
export function verifyInclusion(
  index: number,
  treeSize: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): Promise<void>;
export function verifyConsistency(
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: readonly Uint8Array[],
): Promise<void>;
export function fromHex(hex: string): Uint8Array;
export function toHex(bytes: Uint8Array): string;
export function fromBase64(b64: string): Uint8Array;
export function toBase64(bytes: Uint8Array): string;
