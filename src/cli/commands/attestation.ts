import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addTrustedEkCa, attestationPaths, trustedEkCasLoader } from '../../attestation/trust-store.ts';
import { GatehouseError } from '../../common/errors.ts';
import { resolveHome } from '../../server/home.ts';
import { VtpmPool } from '../../tpm/swtpm.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { makeOutput } from '../output.ts';

const USAGE = `gatehouse attestation trust-ca add FILE | trust-ca list | vtpm-pool fill N [--home DIR] [--json]`;

/** `gatehouse attestation …`: the attestation authority's trust and vTPM pool. */
export async function attestationCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions }, { min: 1, max: 3, usage: USAGE });
  const root = resolveHome(values.home);
  const out = makeOutput(values.json === true);
  if (!existsSync(join(root, 'config.json'))) {
    throw new GatehouseError(
      'HOME_NOT_INITIALIZED',
      `no gatehouse home at ${root}: run \`gatehouse init\` first`,
    );
  }
  const [group, verb, arg] = positionals;
  if (group === 'trust-ca' && verb === 'add' && arg !== undefined) {
    const r = await addTrustedEkCa(root, arg);
    out.line(`${r.added ? 'trusted' : 'already trusted'}: ${r.subject} (${r.name})`);
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
  if (group === 'vtpm-pool' && verb === 'fill' && arg !== undefined) {
    const n = Number(arg);
    if (!Number.isInteger(n) || n < 1 || n > 256)
      throw new UsageError(`N must be a whole number from 1 to 256\nusage: ${USAGE}`);
    const p = attestationPaths(root);
    const pool = new VtpmPool(p.vtpmPool, { platformCaDir: p.platformCa });
    const made = await pool.fill(n);
    out.line(`manufactured ${made} vTPM state${made === 1 ? '' : 's'}; ${await pool.size()} ready`);
    out.document({ manufactured: made, ready: await pool.size() });
    return EXIT.ok;
  }
  throw new UsageError(`unknown attestation command\nusage: ${USAGE}`);
}
