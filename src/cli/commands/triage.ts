import { resolveHome } from '../../home/home.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { triageAct } from '../../triage/triage-service.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { securitySigner, withHome } from '../home-access.ts';
import { bold, makeOutput } from '../output.ts';

const USAGE = usageOf('triage');

/**
 * `gatehouse triage`: list quarantined artifacts with their reasons; the security role releases
 * or rejects one with a reason, signed with its key and logged as a decision of its own.
 */
export async function triageCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, reason: { type: 'string' }, key: { type: 'string' }, limit: { type: 'string' } },
    { min: 1, max: 2, usage: USAGE },
  );
  const [sub, decisionId] = positionals;
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  if (sub === 'list') {
    if (decisionId !== undefined) throw new UsageError(`usage: ${USAGE}`);
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new UsageError(`--limit must be a whole number\nusage: ${USAGE}`);
    const items = await withHome(root, (home) => home.triage.quarantined(limit));
    out.document({ quarantined: items });
    if (items.length === 0) out.line('nothing is waiting in quarantine');
    for (const d of items) {
      out.line(`${bold(d.id)}  ${d.project}  job ${d.jobId}  ${d.createdAt}`);
      for (const r of d.reasons) out.line(`  • [${r.rule}] ${r.message}`);
    }
    return EXIT.ok;
  }
  if (sub !== 'release' && sub !== 'reject')
    throw new UsageError(`unknown triage command '${sub ?? ''}'\nusage: ${USAGE}`);
  if (decisionId === undefined || values.reason === undefined || values.reason.trim() === '')
    throw new UsageError(`triage ${sub} needs a DECISION and --reason\nusage: ${USAGE}`);
  const act = { decisionId, action: sub, reason: values.reason } as const;
  const sig = await signSecurityAct(triageAct(act), await securitySigner(root, values.key));
  const record = await withHome(root, (home) => home.triage.triage(act, sig));
  out.document(record);
  out.line(
    `${sub === 'release' ? 'released' : 'rejected'} ${bold(decisionId)} (${record.project}); logged as entry #${record.logIndex}`,
  );
  if (record.placement !== undefined) out.line(`  signed and promoted: ${record.placement.reference}`);
  else out.line('  kept in quarantine, marked rejected');
  return EXIT.ok;
}
