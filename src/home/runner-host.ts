/**
 * The home's own runner host: the host `gatehouse run` (embedded or `--server`) runs its runners
 * on. `init` gives it a key of its own (sealed like the home's other keys) and, as the security
 * role, enrolls it in the `local` pool; it also registers the bundled example projects so that the
 * demo and the README's first steps work on a fresh home.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { RunnerHost } from '../agent/credentials.ts';
import type { HostTpmRecord } from '../attestation/host-tpm-record.ts';
import { HostRegistry } from '../attestation/hosts.ts';
import { jwkThumbprint } from '../attestation/token.ts';
import { GatehouseError } from '../common/errors.ts';
import { ProjectRegistry } from '../policy/projects.ts';
import { FileKeySigner } from '../signing/file-key-signer.ts';
import type { KeyProtection } from '../signing/key-file.ts';
import { signSecurityAct, type TrustedKey } from '../signing/security-act.ts';
import type { Signer } from '../signing/signer.ts';
import type { Store } from '../store/store.ts';

/** The pool the home's own host is enrolled in. */
export const LOCAL_POOL = 'local';
/** The example projects `init` registers (unverified directory builds, the default policy). */
export const EXAMPLE_PROJECTS = ['hello-app', 'vulnerable-app'] as const;
const HOST_KEY_PURPOSE = 'runner-host';

function hostKeyPath(keysDir: string): string {
  return join(keysDir, 'host.key.pem');
}

function hostInfoPath(keysDir: string): string {
  return join(keysDir, 'host.json');
}

/** This machine's name as a host name: lowercase, only the characters host names may have. */
function localHostName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return name === '' ? 'local' : name;
}

/** The public JWK of a signer's key. */
function publicJwkOf(signer: Signer): { kty: 'EC'; crv: 'P-256'; x: string; y: string } {
  const jwk = createPublicKey({
    key: Buffer.from(signer.publicKeySpki()),
    format: 'der',
    type: 'spki',
  }).export({
    format: 'jwk',
  });
  return { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
}

/**
 * Give the home its runner host (idempotent): a host key, and its enrollment by the security role
 * when it is not enrolled yet. The attestation it is enrolled for follows the home's config.
 * @returns what it created
 */
export async function initRunnerHost(options: {
  keysDir: string;
  store: Store;
  protection: KeyProtection;
  attestation: 'tpm' | 'software';
  security: Signer;
  trustedKeys: readonly TrustedKey[];
  /** Appraise the host TPM for the enrollment, bound to the host key's thumbprint. */
  appraiseTpm?: (hostKeyThumbprint: string) => Promise<HostTpmRecord>;
}): Promise<string[]> {
  const created: string[] = [];
  const keyPath = hostKeyPath(options.keysDir);
  const infoPath = hostInfoPath(options.keysDir);
  if (!existsSync(infoPath)) {
    await writeFile(infoPath, `${JSON.stringify({ name: localHostName(), pool: LOCAL_POOL }, null, 2)}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
  }
  const fresh = !existsSync(keyPath);
  const signer = fresh
    ? await FileKeySigner.generate(keyPath, options.protection, HOST_KEY_PURPOSE)
    : await FileKeySigner.load(keyPath, options.protection, HOST_KEY_PURPOSE);
  if (fresh) created.push('keys/host.key.pem');
  const { name, pool } = await readHostInfo(infoPath);
  const hosts = new HostRegistry({ ...options, acts: options.store.acts, tokens: options.store.tokens });
  const current = await hosts.get(name);
  // A TPM host is enrolled with its TPM appraised (a home enrolled before host attestation gets
  // the next version, with its TPM).
  if (
    current === undefined ||
    (options.attestation === 'tpm' && current.tpm === undefined && current.revoked !== true)
  ) {
    const publicKey = publicJwkOf(signer);
    const tpm =
      options.appraiseTpm === undefined
        ? undefined
        : await options.appraiseTpm(jwkThumbprint(publicKey.x, publicKey.y));
    const content = {
      publicKey,
      pool,
      attestation: options.attestation,
      ...(tpm === undefined ? {} : { tpm }),
    };
    const version = current === undefined ? 1 : current.version + 1;
    const act = { kind: 'host', name, version, content } as const;
    await hosts.enroll(name, version, content, await signSecurityAct(act, options.security));
    created.push(
      `runner host ${name} (pool ${pool}, ${options.attestation}${tpm === undefined ? '' : `, host TPM AK ${tpm.akName.slice(4, 20)}`})`,
    );
  }
  return created;
}

/** Register the example projects that are not registered yet. @returns what it registered */
export async function registerExampleProjects(options: {
  store: Store;
  security: Signer;
  trustedKeys: readonly TrustedKey[];
}): Promise<string[]> {
  const projects = new ProjectRegistry({ acts: options.store.acts, trustedKeys: options.trustedKeys });
  const created: string[] = [];
  for (const name of EXAMPLE_PROJECTS) {
    if ((await projects.get(name)) !== undefined) continue;
    const content = { source: { kind: 'unverified-directory' }, policy: 'default', pools: [LOCAL_POOL] };
    const act = { kind: 'project', name, version: 1, content } as const;
    await projects.register(name, 1, content, await signSecurityAct(act, options.security));
    created.push(`project ${name}`);
  }
  return created;
}

async function readHostInfo(path: string): Promise<{ name: string; pool: string }> {
  try {
    const info = JSON.parse(await readFile(path, 'utf8')) as { name?: unknown; pool?: unknown };
    if (typeof info.name === 'string' && typeof info.pool === 'string')
      return { name: info.name, pool: info.pool };
  } catch (cause) {
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      'the runner host file is unreadable: run `gatehouse init`',
      {
        where: path,
        cause,
      },
    );
  }
  throw new GatehouseError('BAD_CONFIG', 'the runner host file needs a name and a pool', { where: path });
}

/**
 * The home's runner host: its name and its key, to sign the agent's requests with.
 * @throws GatehouseError HOME_NOT_INITIALIZED (no host key: run `gatehouse init`), KEY_UNAVAILABLE
 */
export async function loadRunnerHost(keysDir: string, protection: KeyProtection): Promise<RunnerHost> {
  const keyPath = hostKeyPath(keysDir);
  if (!existsSync(keyPath))
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      'this home has no runner host key: run `gatehouse init` (the security role enrolls the host)',
      { where: keyPath },
    );
  const { name } = await readHostInfo(hostInfoPath(keysDir));
  return { name, signer: await FileKeySigner.load(keyPath, protection, HOST_KEY_PURPOSE) };
}
