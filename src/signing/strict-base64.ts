import { z } from 'zod';

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** True when `s` is canonical standard base64 with padding (what gatehouse and Sigstore write). */
export function isStrictBase64(s: string): boolean {
  return STRICT_BASE64.test(s);
}

/** A zod string that must be strict base64. */
export const base64String = z.string().refine(isStrictBase64, { message: 'not valid base64' });
