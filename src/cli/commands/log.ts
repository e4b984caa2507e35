import { GatehouseError } from '../../common/errors.ts';
import { openHome, resolveHome } from '../../server/home.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';

const USAGE =
  'gatehouse log checkpoint | inclusion INDEX [--tree-size N] | consistency FIRST SECOND [--home DIR] [--json]';

function whole(value: string | undefined, what: string): number {
  if (value === undefined || !/^\d{1,15}$/.test(value))
    throw new UsageError(`${what} must be a whole number\nusage: ${USAGE}`);
  return Number(value);
}

export async function logCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, 'tree-size': { type: 'string' } },
    { min: 1, max: 3, usage: USAGE },
  );
  const [sub, a, b] = positionals;
  const home = await openHome(resolveHome(values.home));
  try {
    const cp = home.controlPlane;
    switch (sub) {
      case 'checkpoint': {
        const note = await cp.checkpoint();
        process.stdout.write(values.json === true ? `${JSON.stringify({ checkpoint: note })}\n` : note);
        return EXIT.ok;
      }
      case 'inclusion': {
        const treeSize =
          values['tree-size'] === undefined ? undefined : whole(values['tree-size'], '--tree-size');
        const entry = await cp.logEntry(whole(a, 'INDEX'), treeSize);
        process.stdout.write(`${JSON.stringify(entry, null, 2)}\n`);
        return EXIT.ok;
      }
      case 'consistency': {
        const proof = await cp.consistencyProof(whole(a, 'FIRST'), whole(b, 'SECOND'));
        process.stdout.write(`${JSON.stringify(proof, null, 2)}\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown log command '${sub ?? ''}'\nusage: ${USAGE}`);
    }
  } catch (e) {
    if (e instanceof GatehouseError && e.code === 'BAD_INPUT') throw new UsageError(e.message);
    throw e;
  } finally {
    await home.close();
  }
}
