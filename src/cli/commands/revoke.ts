import { resolveHome } from '../../home/home.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { revocationAct } from '../../triage/triage-service.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { securitySigner, withHome } from '../home-access.ts';
import { bold, makeOutput } from '../output.ts';

const USAGE = usageOf('revoke');

/**
 * `gatehouse revoke`: the security role revokes an artifact (file or manifest digest). The act is
 * signed with its key, logged as a `revoke` decision, and lands in the revocation list that
 * `verify oci://` and `admission` read (the home's file and GET /v1/revocations).
 */
export async function revokeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, reason: { type: 'string' }, key: { type: 'string' } },
    { min: 1, max: 1, usage: USAGE },
  );
  const [digest] = positionals;
  if (digest === undefined || values.reason === undefined || values.reason.trim() === '')
    throw new UsageError(`revoke needs a DIGEST and --reason\nusage: ${USAGE}`);
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  const act = { digest: digest.startsWith('sha256:') ? digest : `sha256:${digest}`, reason: values.reason };
  const sig = await signSecurityAct(revocationAct(act), await securitySigner(root, values.key));
  const record = await withHome(root, (home) => home.triage.revoke(act, sig));
  out.document(record);
  out.line(`revoked ${bold(record.digest)}; logged as entry #${record.logIndex}`);
  return EXIT.ok;
}
