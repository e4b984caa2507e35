// Types of act.js, the page's triage act preparation and signing.
export interface PageAct {
  kind: 'triage';
  name: string;
  version: 1;
  content: { action: 'release' | 'reject'; reason: string };
}
export const SECURITY_ACT_PAYLOAD: string;
export function canonicalJson(v: unknown): string;
export function triageAct(decisionId: string, action: 'release' | 'reject', reason: string): PageAct;
export function actBytes(act: PageAct): Uint8Array;
export function actDigest(act: PageAct): Promise<string>;
export function loadSigningKey(pem: string): Promise<{ key: CryptoKey; keyId: string }>;
export function signAct(act: PageAct, key: CryptoKey): Promise<string>;
