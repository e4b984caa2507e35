// Types of note.js, the page's checkpoint verifier.
export function derToRaw(der: Uint8Array, size?: number): Uint8Array;
export function verifyCheckpoint(
  text: string,
  logKeys: readonly string[],
): Promise<{ origin: string; treeSize: number; rootHash: Uint8Array; keyName: string }>;
