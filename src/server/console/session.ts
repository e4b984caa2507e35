/**
 * Console sessions without server state: the cookie is `v2.<expiry>.<csrf>.<role>.<who>.<mac>`,
 * MACed with a key derived from the viewer token, so any instance with the same token checks it,
 * and changing the token ends every session. The CSRF token inside it is what a write must echo in
 * a header (a cross-site page can neither read the HttpOnly cookie nor learn the value). The role
 * is under the MAC: a viewer cannot make its own cookie a triager's.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The session cookie's name. */
export const SESSION_COOKIE = 'gatehouse_console';

/** How long a console session lasts. */
export const SESSION_SECONDS = 8 * 3600;

/**
 * What a console user may do: a viewer reads; a triager also submits triage acts (which the
 * security role's signature still has to authorize, act by act).
 */
export type ConsoleRole = 'viewer' | 'triager';

export interface ConsoleSession {
  csrf: string;
  expiresAt: number;
  role: ConsoleRole;
  /** Who logged in: `token` for a static token, else the OIDC issuer's `sub` (and name, if any). */
  who: string;
}

/** Constant-time equality of two strings. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const MAX_WHO = 200;

/** Issues and checks session cookies for one viewer token. */
export class SessionKeeper {
  readonly #key: Buffer;
  readonly #token: string;
  readonly #triagerToken: string | undefined;

  /** @param triagerToken the static token that logs in as a triager, when one is configured */
  constructor(viewerToken: string, triagerToken?: string) {
    this.#token = viewerToken;
    this.#triagerToken = triagerToken;
    this.#key = createHmac('sha256', viewerToken).update('gatehouse console session v2').digest();
  }

  /** The role a static token logs in as, if it is one of the console's tokens. */
  roleOfToken(given: string): ConsoleRole | undefined {
    // Both compared, always: which one matched must not show in the time taken.
    const viewer = sameSecret(given, this.#token);
    const triager = this.#triagerToken !== undefined && sameSecret(given, this.#triagerToken);
    return triager ? 'triager' : viewer ? 'viewer' : undefined;
  }

  /** Whether `given` is the viewer token. */
  isViewerToken(given: string): boolean {
    return sameSecret(given, this.#token);
  }

  /**
   * A key for other short-lived console cookies (the OIDC login's state), derived from the same
   * secret under another label, so a value of one kind is never accepted as the other.
   */
  derivedKey(label: string): Buffer {
    return createHmac('sha256', this.#key).update(`derived ${label}`).digest();
  }

  /** A new session: its cookie value and what the page may know of it. */
  issue(
    now = Date.now(),
    who: { role: ConsoleRole; who: string } = { role: 'viewer', who: 'token' },
  ): { cookie: string; session: ConsoleSession } {
    const expiresAt = Math.floor(now / 1000) + SESSION_SECONDS;
    const csrf = randomBytes(24).toString('base64url');
    const name = Buffer.from(who.who.slice(0, MAX_WHO), 'utf8').toString('base64url');
    const body = `v2.${expiresAt}.${csrf}.${who.role}.${name}`;
    return {
      cookie: `${body}.${this.#mac(body)}`,
      session: { csrf, expiresAt, role: who.role, who: who.who.slice(0, MAX_WHO) },
    };
  }

  /** The session a cookie value carries, if it is ours and unexpired. */
  check(cookie: string | undefined, now = Date.now()): ConsoleSession | undefined {
    if (cookie === undefined) return undefined;
    const m =
      /^(v2\.(\d{1,12})\.([A-Za-z0-9_-]{32})\.(viewer|triager)\.([A-Za-z0-9_-]{0,1100}))\.([A-Za-z0-9_-]{43})$/.exec(
        cookie,
      );
    if (m === null) return undefined;
    const [, body = '', exp = '0', csrf = '', role = '', name = '', mac = ''] = m;
    if (!sameSecret(mac, this.#mac(body))) return undefined;
    if (Number(exp) <= Math.floor(now / 1000)) return undefined;
    return {
      csrf,
      expiresAt: Number(exp),
      role: role as ConsoleRole,
      who: Buffer.from(name, 'base64url').toString('utf8'),
    };
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
