import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { type RevocationList, readRevocations } from '../signing/revocation-list.ts';
import type { RevocationRecord } from '../store/store.ts';

/**
 * Add artifact digests to the home's revocation list (`revocations.json`, the file deploy-time
 * verification reads), keeping what is there; a digest already listed is left as it is. The
 * file is replaced atomically so a reader never sees half of it.
 * @throws GatehouseError BAD_INPUT when the existing list does not read (nothing is written)
 */
export async function addRevocations(
  path: string,
  digests: readonly string[],
  reason: string,
): Promise<number> {
  const list = await readRevocations(path, true);
  const known = new Set(list.revoked.map((r) => r.digest));
  const revokedAt = new Date().toISOString();
  let added = 0;
  for (const d of digests) {
    const digest = d.startsWith('sha256:') ? d : `sha256:${d}`;
    if (known.has(digest)) continue;
    known.add(digest);
    list.revoked.push({ digest, reason: reason.slice(0, 1000), revokedAt });
    added++;
  }
  if (added === 0) return 0;
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(list, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, path);
  return added;
}

/**
 * Mirror the recorded revocations into the home's list file (the file `verify` and `admission`
 * read without a URL), keeping entries already there, e.g. from before revocations were logged.
 * @throws GatehouseError BAD_INPUT when the existing list does not read (nothing is written)
 */
export async function mirrorRevocations(
  path: string,
  records: readonly { digest: string; reason: string }[],
): Promise<void> {
  for (const r of records) await addRevocations(path, [r.digest], r.reason);
}

/**
 * The revocation list as it stands: every recorded revocation (with its log index), plus entries
 * of the home's file that predate logged revocations, so nothing revoked before is dropped.
 * @throws GatehouseError BAD_INPUT when the file does not read
 */
export async function currentRevocations(
  path: string,
  records: readonly RevocationRecord[],
): Promise<RevocationList> {
  const legacy = await readRevocations(path, true);
  const known = new Set(records.map((r) => r.digest));
  return {
    version: 1,
    revoked: [
      ...legacy.revoked
        .filter((r) => !known.has(r.digest))
        .map((r) => ({ digest: r.digest, reason: r.reason, revokedAt: r.revokedAt })),
      ...records.map((r) => ({
        digest: r.digest,
        reason: r.reason.slice(0, 1000),
        revokedAt: r.revokedAt,
        logIndex: r.logIndex,
      })),
    ],
  };
}
