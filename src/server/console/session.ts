/**
 * Console sessions without server state: the cookie is `v1.<expiry>.<csrf>.<mac>`, MACed with a key
 * derived from the viewer token, so any instance with the same token checks it, and changing the
 * token ends every session. The CSRF token inside it is what a write must echo in a header
 * (a cross-site page can neither read the HttpOnly cookie nor learn the value).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The session cookie's name. */
export const SESSION_COOKIE = 'gatehouse_console';

/** How long a console session lasts. */
export const SESSION_SECONDS = 8 * 3600;

export interface ConsoleSession {
  csrf: string;
  expiresAt: number;
}

/** Constant-time equality of two strings. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Issues and checks session cookies for one viewer token. */
export class SessionKeeper {
  readonly #key: Buffer;
  readonly #token: string;

  constructor(viewerToken: string) {
    this.#token = viewerToken;
    this.#key = createHmac('sha256', viewerToken).update('gatehouse console session v1').digest();
  }

  /** Whether `given` is the viewer token. */
  isViewerToken(given: string): boolean {
    return sameSecret(given, this.#token);
  }

  /** A new session: its cookie value and what the page may know of it. */
  issue(now = Date.now()): { cookie: string; session: ConsoleSession } {
    const expiresAt = Math.floor(now / 1000) + SESSION_SECONDS;
    const csrf = randomBytes(24).toString('base64url');
    const body = `v1.${expiresAt}.${csrf}`;
    return { cookie: `${body}.${this.#mac(body)}`, session: { csrf, expiresAt } };
  }

  /** The session a cookie value carries, if it is ours and unexpired. */
  check(cookie: string | undefined, now = Date.now()): ConsoleSession | undefined {
    if (cookie === undefined) return undefined;
    const m = /^(v1\.(\d{1,12})\.([A-Za-z0-9_-]{32}))\.([A-Za-z0-9_-]{43})$/.exec(cookie);
    if (m === null) return undefined;
    const [, body = '', exp = '0', csrf = '', mac = ''] = m;
    if (!sameSecret(mac, this.#mac(body))) return undefined;
    if (Number(exp) <= Math.floor(now / 1000)) return undefined;
    return { csrf, expiresAt: Number(exp) };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

/** The value of one cookie in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}
