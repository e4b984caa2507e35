import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addPlatformAnchor, platformAnchorsLoader } from '../../attestation/evidence/trust-anchors.ts';
import { EVIDENCE_KINDS, isEvidenceKind } from '../../attestation/evidence/verifier.ts';
import {
  parseReferenceValues,
  type ReferenceBundle,
  signReferenceValues,
} from '../../attestation/reference-values.ts';
import { addTrustedEkCa, trustedEkCasLoader } from '../../attestation/trust-store.ts';
import { GatehouseError } from '../../common/errors.ts';
import { homeVtpmPool, resolveHome } from '../../home/home.ts';
import { revokeEkCa } from '../../home/host-tpm-home.ts';
import { commonOptions, parse, UsageError, wholeNumber } from '../args.ts';
import { releaseFillLock, takeFillLock } from '../background-fill.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { securitySigner, withHome } from '../home-access.ts';
import { readTextFile } from '../input-files.ts';
import { bold, green, makeOutput } from '../output.ts';

const USAGE = usageOf('attestation');

/** Call the control plane's API as the home's operator (GATEHOUSE_API_TOKEN). */
async function callServer(server: string, path: string, body?: unknown): Promise<unknown> {
  const token = process.env.GATEHOUSE_API_TOKEN;
  if (body !== undefined && (token === undefined || token === ''))
    throw new GatehouseError('BAD_INPUT', 'no API token for --server: set GATEHOUSE_API_TOKEN');
  let res: Response;
  try {
    res = await fetch(`${server.replace(/\/+$/, '')}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        'content-type': 'application/json',
        ...(body === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    throw new GatehouseError('UNREACHABLE', 'the control plane is unreachable', { where: server, cause: e });
  }
  const json = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    const code = json.error?.code;
    throw new GatehouseError(
      code === 'SIGNATURE_INVALID' || code === 'CONFLICT' || code === 'BAD_INPUT' || code === 'NOT_FOUND'
        ? code
        : 'UNREACHABLE',
      json.error?.message ?? `HTTP ${res.status}`,
      { where: server },
    );
  }
  return json;
}

/** `gatehouse attestation …`: the attestation authority's trust, reference values and vTPM pool. */
export async function attestationCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      key: { type: 'string' },
      server: { type: 'string' },
      version: { type: 'string' },
      limit: { type: 'string' },
      background: { type: 'boolean' },
    },
    { min: 1, max: 4, usage: USAGE },
  );
  const root = resolveHome(values.home);
  const out = makeOutput(values.json === true);
  if (values.server === undefined && !existsSync(join(root, 'config.json'))) {
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      `no gatehouse home at ${root}: run \`gatehouse init\` first`,
    );
  }
  const [group, verb, arg] = positionals;
  // Only `platform-root add KIND FILE` takes four words.
  if (positionals.length > 3 && !(group === 'platform-root' && verb === 'add'))
    throw new UsageError(`too many arguments\nusage: ${USAGE}`);
  if (group === 'trust-ca' && verb === 'add' && arg !== undefined) {
    const r = await addTrustedEkCa(root, arg);
    out.line(`${r.added ? 'trusted' : 'already trusted'}: ${r.subject} (${r.name})`);
    out.document(r);
    return EXIT.ok;
  }
  if (group === 'trust-ca' && verb === 'revoke' && arg !== undefined) {
    // An EK CA revoked by the security role: no host EK path may pass through it, whatever its
    // issuer's CRL says (a vendor whose CA key leaked may never publish one).
    const r = await revokeEkCa(root, arg);
    out.line(`${r.added ? 'revoked' : 'already revoked'}: EK CA sha256:${r.fingerprint}`);
    out.document(r);
    return EXIT.ok;
  }
  if (group === 'trust-ca' && verb === 'list' && arg === undefined) {
    const cas = trustedEkCasLoader(root)().map((c) => ({
      subject: c.subject.replace(/\n/g, ', '),
      fingerprint256: c.fingerprint256,
      validTo: c.validTo,
    }));
    for (const c of cas) out.line(`${c.subject}  ${c.fingerprint256}`);
    out.document({ trustedEkCas: cas });
    return EXIT.ok;
  }
  if (group === 'platform-root' && verb === 'add' && arg !== undefined) {
    const [kind, file] = [arg, positionals[3]];
    if (!isEvidenceKind(kind) || file === undefined)
      throw new UsageError(
        `platform-root add KIND FILE: KIND is one of ${EVIDENCE_KINDS.join(', ')}\nusage: ${USAGE}`,
      );
    const r = await addPlatformAnchor(root, kind, file);
    out.line(`${r.added ? 'installed' : 'already installed'} for ${kind}: ${r.what} (${r.name})`);
    out.document(r);
    return EXIT.ok;
  }
  if (group === 'platform-root' && verb === 'list' && arg === undefined) {
    const load = platformAnchorsLoader(root);
    const kinds = EVIDENCE_KINDS.map((kind) => {
      const a = load(kind);
      return {
        kind,
        roots: a.roots.map((c) => ({
          subject: c.subject.replace(/\n/g, ', '),
          fingerprint256: c.fingerprint256,
          validTo: c.validTo,
        })),
        crls: (a.crls ?? []).map((c) => ({ issuer: c.issuer, nextUpdate: c.nextUpdate?.toISOString() })),
        ...(a.issuer === undefined ? {} : { issuer: a.issuer }),
      };
    });
    for (const k of kinds)
      out.line(
        `${bold(k.kind)}: ${k.roots.length} root${k.roots.length === 1 ? '' : 's'}, ${k.crls.length} CRL${k.crls.length === 1 ? '' : 's'}${k.issuer === undefined ? '' : `, provider ${k.issuer}`}`,
      );
    out.document({ platformRoots: kinds });
    return EXIT.ok;
  }
  if (group === 'vtpm-pool' && verb === 'fill') {
    const pooled = await homeVtpmPool(root);
    if (pooled === undefined)
      throw new GatehouseError(
        'BAD_CONFIG',
        'this home attests in software (runner.attestation): it has no vTPM pool to fill',
        { where: join(root, 'config.json') },
      );
    let n = pooled.target;
    if (arg !== undefined) {
      n = Number(arg);
      if (!/^\d{1,3}$/.test(arg) || n < 1 || n > 256)
        throw new UsageError(`N must be a whole number from 1 to 256\nusage: ${USAGE}`);
    }
    // A background filler (started by init, run or the server) leaves quietly when another fills.
    if (values.background === true && !takeFillLock(pooled.pool)) return EXIT.ok;
    try {
      const made = await pooled.pool.fill(n);
      // Every refill re-quotes the host's boot state (host attestation), in the background filler
      // too: a drifted host is quarantined here, not in a job's critical path.
      if (made > 0) await withHome(root, (home) => home.requoteHost({ force: true }));
      out.line(`manufactured ${made} vTPM state${made === 1 ? '' : 's'}; ${await pooled.pool.size()} ready`);
      out.document({ manufactured: made, ready: await pooled.pool.size() });
    } finally {
      if (values.background === true) releaseFillLock(pooled.pool);
    }
    return EXIT.ok;
  }
  if (group === 'reference-values' && verb !== undefined)
    return referenceValues(verb, arg, values, root, out);
  if (group === 'refusals' && verb === undefined) {
    const limit = optionalWholeNumber(values.limit, '--limit') ?? 100;
    const refusals = await withHome(root, (home) => home.controlPlane.attestationRefusals({ limit }));
    out.document({ refusals });
    for (const r of refusals)
      out.line(
        `${r.createdAt}  ${r.stage}${r.jobId === undefined ? '' : ` job ${r.jobId}`}  ${r.failedChecks.map((f) => f.check).join(', ')}`,
      );
    return EXIT.ok;
  }
  throw new UsageError(`unknown attestation command\nusage: ${USAGE}`);
}

/** An optional count or version option: a whole number from 1, of at most nine digits. */
function optionalWholeNumber(v: string | undefined, name: string): number | undefined {
  return v === undefined ? undefined : wholeNumber(v, name, USAGE, { min: 1, digits: 9 });
}

function describe(b: Pick<ReferenceBundle, 'version' | 'digest' | 'publishedAt' | 'keyId'>): string {
  return `version ${b.version}  sha256:${b.digest.slice(0, 12)}  published ${b.publishedAt}  by key ${b.keyId.slice(0, 12)}`;
}

async function referenceValues(
  verb: string,
  arg: string | undefined,
  values: { key?: string; server?: string; version?: string },
  root: string,
  out: ReturnType<typeof makeOutput>,
): Promise<number> {
  if (verb === 'publish' && arg !== undefined) {
    const text = await readTextFile(arg, 'reference values', 'NOT_FOUND');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', 'the reference values are not JSON', { where: arg, cause: e });
    }
    // Check locally first, so that a mistake is reported before anything is signed or sent.
    const parsed = parseReferenceValues(json, arg);
    const signer = await securitySigner(root, values.key);
    let bundle: ReferenceBundle;
    if (values.server !== undefined) {
      const history = (await callServer(values.server, '/v1/reference-values/history')) as {
        versions?: { version: number }[];
      };
      const version = (history.versions?.[0]?.version ?? 0) + 1;
      const sig = await signReferenceValues(version, parsed, signer);
      bundle = (await callServer(values.server, '/v1/reference-values', {
        version,
        values: parsed,
        ...sig,
      })) as ReferenceBundle;
    } else {
      bundle = await withHome(root, async (home) => {
        const history = await home.controlPlane.referenceValueHistory();
        const version = (history[0]?.version ?? 0) + 1;
        const sig = await signReferenceValues(version, parsed, signer);
        return home.controlPlane.publishReferenceValues({ version, values: parsed, ...sig });
      });
    }
    out.document(bundle);
    out.line(
      `${green('published')} reference values ${bold(`version ${bundle.version}`)}  ${bundle.policyId}`,
    );
    return EXIT.ok;
  }
  if ((verb === 'show' || verb === 'history') && arg === undefined) {
    const version = optionalWholeNumber(values.version, '--version');
    if (values.server !== undefined) {
      const doc =
        verb === 'history'
          ? await callServer(values.server, '/v1/reference-values/history')
          : await callServer(
              values.server,
              `/v1/reference-values${version === undefined ? '' : `?version=${version}`}`,
            );
      out.document(doc);
      out.line(JSON.stringify(doc, null, 2));
      return EXIT.ok;
    }
    if (verb === 'history') {
      const versions = await withHome(root, (home) => home.controlPlane.referenceValueHistory());
      out.document({ versions });
      for (const v of versions) out.line(`${describe(v)}${v.valid ? '' : '  SIGNATURE INVALID'}`);
      return EXIT.ok;
    }
    const bundle = await withHome(root, (home) => home.controlPlane.getReferenceValues(version));
    out.document(bundle);
    out.line(describe(bundle));
    out.line(bundle.policyId);
    out.line(JSON.stringify(bundle.values, null, 2));
    return EXIT.ok;
  }
  throw new UsageError(`unknown reference-values command\nusage: ${USAGE}`);
}
