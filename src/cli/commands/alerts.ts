import { resolveHome } from '../../home/home.ts';
import type { AlertDeliveryState } from '../../store/store.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { withHome } from '../home-access.ts';
import { bold, makeOutput } from '../output.ts';

const USAGE = usageOf('alerts');
const STATES = ['pending', 'delivered', 'dead'] as const;

/**
 * `gatehouse alerts`: the webhook outbox. `list` shows deliveries (dead letters by default),
 * `replay ID` sends one again now and says how it went.
 */
export async function alertsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, state: { type: 'string' }, limit: { type: 'string' }, all: { type: 'boolean' } },
    { min: 1, max: 2, usage: USAGE },
  );
  const [sub, id] = positionals;
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  if (sub === 'list') {
    if (id !== undefined) throw new UsageError(`usage: ${USAGE}`);
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000)
      throw new UsageError(`--limit must be a whole number from 1 to 10000\nusage: ${USAGE}`);
    const state = values.state ?? (values.all === true ? undefined : 'dead');
    if (state !== undefined && !(STATES as readonly string[]).includes(state))
      throw new UsageError(`--state must be one of ${STATES.join(', ')}\nusage: ${USAGE}`);
    const items = await withHome(root, (home) =>
      home.store.alerts.list({
        limit,
        ...(state === undefined ? {} : { state: state as AlertDeliveryState }),
      }),
    );
    out.document({ deliveries: items.map(({ event, ...d }) => ({ ...d, event: JSON.parse(event) })) });
    if (items.length === 0) out.line(state === 'dead' ? 'no dead letters' : 'no alert deliveries');
    for (const d of items)
      out.line(
        `${bold(d.id)}  ${d.state}  ${d.endpoint}  ${d.type}  ${d.attempts} attempt(s)  ${d.createdAt}${d.lastError === undefined ? '' : `  (${d.lastError})`}`,
      );
    return EXIT.ok;
  }
  if (sub !== 'replay') throw new UsageError(`unknown alerts command '${sub ?? ''}'\nusage: ${USAGE}`);
  if (id === undefined) throw new UsageError(`alerts replay needs a delivery ID\nusage: ${USAGE}`);
  const result = await withHome(root, (home) => home.alerts.replay(id));
  out.document(result);
  out.line(
    result.state === 'delivered'
      ? `delivered ${bold(id)}`
      : `${bold(id)} not delivered (${result.lastError ?? 'unknown error'}); ${result.state === 'dead' ? 'still a dead letter' : 'retried on schedule'}`,
  );
  return result.state === 'delivered' ? EXIT.ok : EXIT.error;
}
