import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CI_HOST_CLAIMS, type HostEnrollment } from '../../attestation/hosts.ts';
import { GatehouseError } from '../../common/errors.ts';
import { homePaths, openHome, resolveHome } from '../../home/home.ts';
import { loadSecuritySigner, securityKeyPath } from '../../home/security-role.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, dim, makeOutput, type Output, red } from '../output.ts';

const USAGE = usageOf('host');

function print(out: Output, h: HostEnrollment): void {
  out.line(
    `${bold(h.name)}  version ${h.version}  pool ${h.pool}  ${h.attestation}${h.revoked === true ? `  ${red('revoked')}` : ''}  ${dim(`by ${h.actor.slice(0, 12)} ${h.enrolledAt}`)}`,
  );
}

async function publicJwk(path: string): Promise<{ kty: 'EC'; crv: 'P-256'; x: string; y: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', 'cannot read the host public key', { where: path, cause });
  }
  try {
    const jwk = text.trimStart().startsWith('{')
      ? (JSON.parse(text) as { x?: string; y?: string })
      : createPublicKey(text).export({ format: 'jwk' });
    return { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', 'the host public key is neither a PEM public key nor a JWK', {
      where: path,
      cause,
    });
  }
}

/**
 * `gatehouse host`: the security role enrolls runner hosts (one key each, in a declared pool, with
 * the attestation their runners give) and revokes them; `key` prints this home's own host public
 * key, to enroll it with another control plane.
 */
export async function hostCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      'public-key': { type: 'string' },
      pool: { type: 'string' },
      attestation: { type: 'string' },
      key: { type: 'string' },
      'ci-claim': { type: 'string', multiple: true },
    },
    { min: 1, max: 2, usage: USAGE },
  );
  const [sub, name] = positionals;
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  const home = await openHome(root);
  try {
    if (sub === 'list') {
      const all = await home.hosts.list();
      out.document({ hosts: all });
      for (const h of all) print(out, h);
      return EXIT.ok;
    }
    if (sub === 'key') {
      const pem = Buffer.from(home.host.signer.publicKeySpki()).toString('base64');
      out.document({ host: home.host.name, publicKeySpki: pem });
      out.line(`-----BEGIN PUBLIC KEY-----\n${pem.replace(/.{64}/g, '$&\n')}\n-----END PUBLIC KEY-----`);
      return EXIT.ok;
    }
    if (sub !== 'enroll' && sub !== 'revoke')
      throw new UsageError(`unknown host command '${sub ?? ''}'\nusage: ${USAGE}`);
    if (name === undefined) throw new UsageError(`host ${sub} needs a NAME\nusage: ${USAGE}`);
    const signer = await loadSecuritySigner(values.key ?? securityKeyPath(homePaths(root).keys), {
      home: root,
    });
    const current = await home.hosts.get(name);
    let content: Record<string, unknown>;
    if (sub === 'revoke') {
      if (current === undefined) throw new GatehouseError('NOT_FOUND', `no runner host ${name} is enrolled`);
      content = {
        publicKey: current.publicKey,
        pool: current.pool,
        attestation: current.attestation,
        ...(current.ci === undefined ? {} : { ci: current.ci }),
        revoked: true,
      };
    } else {
      if (values['public-key'] === undefined || values.pool === undefined)
        throw new UsageError(`host enroll needs --public-key and --pool\nusage: ${USAGE}`);
      const attestation = values.attestation ?? 'tpm';
      if (attestation !== 'tpm' && attestation !== 'software' && attestation !== 'ci')
        throw new UsageError(`--attestation is tpm, software or ci\nusage: ${USAGE}`);
      const ci = ciClaimsOf(values['ci-claim'] ?? []);
      if (ci !== undefined && attestation !== 'ci')
        throw new UsageError(`--ci-claim is for hosts enrolled --attestation ci\nusage: ${USAGE}`);
      content = {
        publicKey: await publicJwk(values['public-key']),
        pool: values.pool,
        attestation,
        ...(ci === undefined ? {} : { ci: { claims: ci } }),
      };
    }
    const version = await home.hosts.nextVersion(name);
    const sig = await signSecurityAct({ kind: 'host', name, version, content }, signer);
    const enrolled = await home.hosts.enroll(name, version, content, sig);
    out.document(enrolled);
    print(out, enrolled);
    return EXIT.ok;
  } finally {
    await home.close();
  }
}

/** `--ci-claim repository=octo-org/app` (repeatable) as allowed values per CI identity claim. */
function ciClaimsOf(flags: readonly string[]): Record<string, string[]> | undefined {
  if (flags.length === 0) return undefined;
  const claims: Record<string, string[]> = {};
  for (const f of flags) {
    const eq = f.indexOf('=');
    const claim = f.slice(0, eq);
    const value = f.slice(eq + 1);
    if (eq < 1 || value === '' || !(CI_HOST_CLAIMS as readonly string[]).includes(claim))
      throw new UsageError(
        `--ci-claim '${f}' must be CLAIM=VALUE with CLAIM one of ${CI_HOST_CLAIMS.join(', ')}\nusage: ${USAGE}`,
      );
    claims[claim] = [...(claims[claim] ?? []), value];
  }
  return claims;
}
