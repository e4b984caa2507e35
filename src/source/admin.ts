import { fileURLToPath } from 'node:url';
import { GatehouseError } from '../common/errors.ts';
import type { SourceProtectionRecord, SourceSignerRecord, SourceStore } from '../store/store.ts';
import { git } from './git.ts';
import { canonicalRepositoryUri } from './local-git-provider.ts';
import { checkPrincipal, inspectGpgKey, parseSshPublicKey } from './signers.ts';
import { refMatches } from './source-provider.ts';

/** A branch name or tag pattern as a full ref pattern. @throws GatehouseError BAD_INPUT */
export function refPattern(kind: 'branch' | 'tag', name: string): string {
  const full = name.startsWith('refs/') ? name : `refs/${kind === 'branch' ? 'heads' : 'tags'}/${name}`;
  // Same rules as git check-ref-format, plus `*` as the only pattern character.
  if (!/^refs\/(heads|tags)\/[A-Za-z0-9._\-/*]+$/.test(full) || /\.\.|\/\/|\/$|\.lock(\/|$)|@\{/.test(full)) {
    throw new GatehouseError('BAD_INPUT', `'${name}' is not a valid ${kind} name or pattern`);
  }
  return full;
}

/**
 * Protect a ref pattern of a repository centrally, and accept the current heads of the refs it
 * matches (so that a later rewrite is detected against them). With `acceptHead`, a ref that was
 * marked rewritten is accepted at its new head: a deliberate operator act.
 * @throws GatehouseError BAD_INPUT (not a repository, bad ref name)
 */
export async function protectRef(
  store: SourceStore,
  repository: string,
  ref: string,
  rule: SourceProtectionRecord['rule'],
  options: { acceptHead?: boolean } = {},
): Promise<{ repository: string; accepted: { ref: string; head: string }[] }> {
  const uri = await canonicalRepositoryUri(repository);
  if (!Number.isInteger(rule.minApprovals) || rule.minApprovals < 0 || rule.minApprovals > 20) {
    throw new GatehouseError('BAD_INPUT', `required approvals must be 0 to 20, not ${rule.minApprovals}`);
  }
  for (const p of rule.projects ?? []) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(p))
      throw new GatehouseError('BAD_INPUT', `'${p.slice(0, 80)}' is not a project name`);
  }
  await store.protect({ repository: uri, ref, rule, createdAt: new Date().toISOString() });
  const accepted: { ref: string; head: string }[] = [];
  if (uri.startsWith('file://')) {
    const listing = await git(fileURLToPath(uri), [
      'for-each-ref',
      '--format=%(refname)%00%(objectname)%00%(*objectname)',
      'refs/heads',
      'refs/tags',
    ]);
    for (const line of listing.split('\n')) {
      const [name, object, peeled] = line.split('\0');
      if (name === undefined || object === undefined || !refMatches(ref, name)) continue;
      const head = peeled !== undefined && peeled !== '' ? peeled : object;
      const seen = await store.refHead(uri, name);
      if (seen === undefined || options.acceptHead === true) {
        await store.setRefHead({ repository: uri, ref: name, head, seenAt: new Date().toISOString() });
        accepted.push({ ref: name, head });
      }
    }
  }
  return { repository: uri, accepted };
}

/**
 * Trust a signer's public key (SSH public key line, or armoured GPG public key), for one
 * repository or all. @throws GatehouseError BAD_INPUT, CONFLICT
 */
export async function addSigner(
  store: SourceStore,
  options: { principal: string; format: 'ssh' | 'gpg'; key: string; repository?: string },
): Promise<SourceSignerRecord> {
  const principal = checkPrincipal(options.principal);
  let id: string;
  let publicKey: string;
  if (options.format === 'ssh') {
    const k = parseSshPublicKey(options.key);
    id = k.fingerprint;
    publicKey = k.key;
  } else {
    const k = await inspectGpgKey(options.key);
    id = k.fingerprint;
    publicKey = options.key;
  }
  const record: SourceSignerRecord = {
    id,
    principal,
    format: options.format,
    publicKey,
    createdAt: new Date().toISOString(),
  };
  if (options.repository !== undefined) record.repository = await canonicalRepositoryUri(options.repository);
  await store.addSigner(record);
  return record;
}
