/**
 * Webhook signatures in the Standard Webhooks scheme (standardwebhooks.com): three headers,
 * `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,<base64 of
 * HMAC-SHA256 over "<id>.<timestamp>.<body>">`). The id and the timestamp are inside the MAC, so a
 * receiver that checks the timestamp window and remembers ids refuses a replayed delivery.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';

/** The HMAC key of a secret: `whsec_<base64>` as Standard Webhooks writes it, else its UTF-8 bytes. */
export function webhookKey(secret: string): Buffer {
  const s = secret.trim();
  if (s.startsWith('whsec_')) return Buffer.from(s.slice('whsec_'.length), 'base64');
  return Buffer.from(s, 'utf8');
}

/** The three headers of one signed delivery. */
export function signWebhook(
  key: Buffer,
  id: string,
  timestamp: number,
  body: string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${mac}` };
}

/**
 * Verify a delivery as a receiver does: a `v1` signature over id, timestamp and body, with a
 * timestamp at most `toleranceSeconds` from `now`.
 * @returns the webhook id
 * @throws GatehouseError SIGNATURE_INVALID naming what is wrong
 */
export function verifyWebhook(
  key: Buffer,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  options: { now?: number; toleranceSeconds?: number } = {},
): string {
  const one = (name: string): string => {
    const v = headers[name];
    if (typeof v !== 'string' || v === '')
      throw new GatehouseError('SIGNATURE_INVALID', `the webhook has no ${name} header`);
    return v;
  };
  const id = one('webhook-id');
  const ts = one('webhook-timestamp');
  if (!/^\d{1,12}$/.test(ts))
    throw new GatehouseError('SIGNATURE_INVALID', 'webhook-timestamp is not Unix seconds');
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(ts)) > (options.toleranceSeconds ?? 300))
    throw new GatehouseError('SIGNATURE_INVALID', 'webhook-timestamp is outside the tolerance window');
  const expected = Buffer.from(
    signWebhook(key, id, Number(ts), body)['webhook-signature'].slice(3),
    'base64',
  );
  // Several space-separated signatures may be sent while a secret is rotated; one must match.
  for (const part of one('webhook-signature').split(' ')) {
    const [version, sig] = part.split(',');
    if (version !== 'v1' || sig === undefined) continue;
    const given = Buffer.from(sig, 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return id;
  }
  throw new GatehouseError('SIGNATURE_INVALID', 'no webhook-signature matches the body');
}
