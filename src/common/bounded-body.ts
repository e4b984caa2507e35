import { GatehouseError } from './errors.ts';

/**
 * The body of a `fetch` answer as text, refused once it passes `maxBytes` (declared or as it
 * streams), so that a misbehaving or hostile server cannot make us buffer without bound.
 * @param what names the call in the error, e.g. `GitHub POST /repos/o/r/…`
 * @throws GatehouseError UNREACHABLE when the answer is larger than `maxBytes`
 */
export async function readBoundedText(res: Response, maxBytes: number, what: string): Promise<string> {
  const tooLarge = () =>
    new GatehouseError('UNREACHABLE', `${what}: the answer is larger than ${maxBytes} bytes`);
  if (Number(res.headers.get('content-length') ?? '0') > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
