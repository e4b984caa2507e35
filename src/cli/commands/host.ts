import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CI_HOST_CLAIMS, type HostEnrollment } from '../../attestation/hosts.ts';
import { jwkThumbprint } from '../../attestation/token.ts';
import { GatehouseError } from '../../common/errors.ts';
import { homePaths, openHome, resolveHome } from '../../home/home.ts';
import { openHostTpm } from '../../home/host-tpm-home.ts';
import { loadSecuritySigner, securityKeyPath } from '../../home/security-role.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { describeBootEvent } from '../../tpm/event-log.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, dim, makeOutput, type Output, red } from '../output.ts';

const USAGE = usageOf('host');

function print(out: Output, h: HostEnrollment): void {
  out.line(
    `${bold(h.name)}  version ${h.version}  pool ${h.pool}  ${h.attestation}${h.tpm === undefined ? '' : `  host TPM AK ${h.tpm.akName.slice(4, 20)}`}${h.revoked === true ? `  ${red('revoked')}` : ''}  ${dim(`by ${h.actor.slice(0, 12)} ${h.enrolledAt}`)}`,
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

function ownPublicJwk(spki: Uint8Array): { kty: 'EC'; crv: 'P-256'; x: string; y: string } {
  const jwk = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).export({
    format: 'jwk',
  });
  return { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
}

/** Boot reference values from a file: `{ "pcrs": { "0": hex, …, "7": hex } }`. */
async function bootReference(path: string): Promise<Record<string, string>> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', 'the boot reference values are not readable JSON', {
      where: path,
      cause,
    });
  }
  const pcrs = (doc as { pcrs?: unknown } | null)?.pcrs;
  const ok =
    typeof pcrs === 'object' &&
    pcrs !== null &&
    [0, 1, 2, 3, 4, 5, 6, 7].every((i) =>
      /^[0-9a-f]{64}$/.test(String((pcrs as Record<string, unknown>)[String(i)])),
    );
  if (!ok)
    throw new GatehouseError('BAD_INPUT', 'boot reference values need pcrs "0" to "7", each 64 hex digits', {
      where: path,
    });
  return pcrs as Record<string, string>;
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
      tpm: { type: 'boolean' },
      'boot-reference': { type: 'string' },
      'accept-current': { type: 'boolean' },
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
    if (sub === 'quote') {
      // This host quotes its boot state now (what the interval, the pool refill and a claim do).
      const record = await home.requoteHost({ force: true });
      if (record === undefined)
        throw new GatehouseError('BAD_CONFIG', `runner host ${home.host.name} is not enrolled with a TPM`);
      out.document(record);
      out.line(
        `${bold(record.host)}  ${record.status === 'trusted' ? 'trusted' : red('quarantined')}  quoted ${new Date(record.quotedAt).toISOString()}${record.reason === undefined ? '' : `\n  ${record.reason}`}`,
      );
      return record.status === 'trusted' ? EXIT.ok : EXIT.quarantined;
    }
    if (sub !== 'enroll' && sub !== 'revoke' && sub !== 'clear')
      throw new UsageError(`unknown host command '${sub ?? ''}'\nusage: ${USAGE}`);
    if (name === undefined) throw new UsageError(`host ${sub} needs a NAME\nusage: ${USAGE}`);
    const signer = await loadSecuritySigner(values.key ?? securityKeyPath(homePaths(root).keys), {
      home: root,
    });
    const current = await home.hosts.get(name);
    let content: Record<string, unknown>;
    if (sub === 'clear') {
      // A quarantine lasts for the enrollment version it was found under: the next version clears
      // it, with the boot state of the last quote accepted as the reference when asked.
      if (current === undefined) throw new GatehouseError('NOT_FOUND', `no runner host ${name} is enrolled`);
      if (current.tpm === undefined)
        throw new GatehouseError(
          'BAD_INPUT',
          `runner host ${name} is not enrolled with a TPM: nothing to clear`,
        );
      const last = await home.store.attestation.hostAttestation(name);
      const { name: _n, version: _v, actor: _a, enrolledAt: _e, ...rest } = current;
      content = {
        ...rest,
        tpm: {
          ...current.tpm,
          ...(values['accept-current'] === true && last !== undefined ? { bootPcrs: last.pcrs } : {}),
        },
      };
    } else if (sub === 'revoke') {
      if (current === undefined) throw new GatehouseError('NOT_FOUND', `no runner host ${name} is enrolled`);
      content = {
        publicKey: current.publicKey,
        pool: current.pool,
        attestation: current.attestation,
        ...(current.ci === undefined ? {} : { ci: current.ci }),
        ...(current.tpm === undefined ? {} : { tpm: current.tpm }),
        revoked: true,
      };
    } else if (values.tpm === true) {
      // The host TPM of this machine, appraised now; the host's request key is this home's host
      // key for its own host, else --public-key.
      const own = name === home.host.name;
      if (!own && values['public-key'] === undefined)
        throw new UsageError(`host enroll --tpm for another host needs its --public-key\nusage: ${USAGE}`);
      const publicKey = own
        ? ownPublicJwk(home.host.signer.publicKeySpki())
        : await publicJwk(values['public-key'] ?? '');
      const reference =
        values['boot-reference'] === undefined ? undefined : await bootReference(values['boot-reference']);
      const tpm = await openHostTpm();
      const appraised = await home.hostAttestation.appraiseForEnrollment(
        tpm,
        jwkThumbprint(publicKey.x, publicKey.y),
        reference,
      );
      for (const e of appraised.events) out.line(dim(`  ${describeBootEvent(e)}`));
      content = {
        publicKey,
        pool: values.pool ?? current?.pool ?? 'local',
        attestation: 'tpm',
        tpm: appraised.tpm,
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
    // Enrolled or cleared with a TPM: its first quote under this version, so that it stands now.
    if (enrolled.tpm !== undefined && enrolled.revoked !== true && name === home.host.name)
      await home.requoteHost({ force: true });
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
