import { join } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';
import { HttpControlPlane } from '../../control-plane/http-control-plane.ts';
import { type OpenHome, openHome, resolveHome } from '../../home/home.ts';
import { witnessIdentity } from '../../home/witness-home.ts';
import { parseTrustedRoot } from '../../signing/trust-root.ts';
import { type AuditedLog, auditLog } from '../../tlog/monitor.ts';
import { commonOptions, parse, UsageError, wholeNumber } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { readJsonFile } from '../input-files.ts';
import { green, makeOutput } from '../output.ts';
import { cosignNow, runWitness } from './witness.ts';

const USAGE = usageOf('log');

/** A log index or tree size: a whole number from 0, of at most 15 digits. */
function whole(value: string | undefined, what: string): number {
  return wholeNumber(value, what, USAGE, { min: 0, digits: 15 });
}

export async function logCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      'tree-size': { type: 'string' },
      state: { type: 'string' },
      server: { type: 'string' },
      // Several for `witness` (one per log it watches); one for `audit`.
      'trusted-root': { type: 'string', multiple: true },
      listen: { type: 'string' },
      name: { type: 'string' },
    },
    { min: 1, max: 3, usage: USAGE },
  );
  const [sub, a, b] = positionals;
  // The monitor may watch a remote server; everything else reads the local home.
  const remote = sub === 'audit' && values.server !== undefined;
  let home: OpenHome | undefined;
  try {
    const auditValues = { ...values, 'trusted-root': values['trusted-root']?.at(-1) };
    if (remote)
      return await audit(new HttpControlPlane({ url: values.server ?? '' }), undefined, auditValues);
    home = await openHome(resolveHome(values.home));
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
      case 'audit':
        return await audit(cp, home, auditValues);
      case 'witness':
        return await runWitness(home, {
          trustedRoots: values['trusted-root'] ?? [],
          listen: values.listen,
          name: values.name,
          usage: USAGE,
        });
      case 'witness-key': {
        const id = await witnessIdentity(home.root, values.name);
        const out = makeOutput(values.json === true);
        out.document({ name: id.name, key: id.vkey });
        out.line(id.vkey);
        return EXIT.ok;
      }
      case 'cosign':
        return await cosignNow(home, values.json === true);
      default:
        throw new UsageError(`unknown log command '${sub ?? ''}'\nusage: ${USAGE}`);
    }
  } catch (e) {
    if (e instanceof GatehouseError && e.code === 'BAD_INPUT' && sub !== 'audit')
      throw new UsageError(e.message);
    throw e;
  } finally {
    await home?.close();
  }
}

async function audit(
  cp: AuditedLog,
  home: OpenHome | undefined,
  values: { state?: string | undefined; 'trusted-root'?: string | undefined; json?: boolean | undefined },
): Promise<number> {
  // The log key comes from a pinned trusted root, never from the server being audited.
  const rootJson =
    values['trusted-root'] !== undefined
      ? await readJsonFile(values['trusted-root'], 'trusted root')
      : await home?.trustedRoot();
  if (rootJson === undefined)
    throw new UsageError(`log audit --server needs --trusted-root F\nusage: ${USAGE}`);
  const root = parseTrustedRoot(rootJson, values['trusted-root']);
  // The current log key: the one whose window is still open.
  const log = root.tlogs.find((t) => t.validFor.end === undefined) ?? root.tlogs.at(-1);
  if (log === undefined) throw new GatehouseError('BAD_CONFIG', 'the trusted root lists no transparency log');
  const statePath = values.state ?? (home === undefined ? undefined : join(home.root, 'log-audit.json'));
  if (statePath === undefined) throw new UsageError(`log audit --server needs --state F\nusage: ${USAGE}`);
  const result = await auditLog({
    log: cp,
    key: { name: log.baseUrl.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, ''), spkiDer: log.spkiDer },
    statePath,
  });
  const out = makeOutput(values.json === true);
  out.document(result);
  const what =
    result.status === 'first'
      ? `first audit: remembering tree size ${result.treeSize}`
      : result.status === 'unchanged'
        ? `unchanged at tree size ${result.treeSize}`
        : `grew from ${result.previousSize} to ${result.treeSize} entries, proven consistent`;
  out.line(`${green('CONSISTENT')}  ${what}  root ${result.rootHash.slice(0, 16)}…`);
  return EXIT.ok;
}
