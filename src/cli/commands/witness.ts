import { GatehouseError } from '../../common/errors.ts';
import type { OpenHome } from '../../home/home.ts';
import { logsOfTrustedRoots, openWitness } from '../../home/witness-home.ts';
import { createWitnessServer } from '../../server/witness-server.ts';
import { UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { readJsonFile } from '../input-files.ts';
import { green, makeOutput, red } from '../output.ts';
import { parseListen } from './server.ts';

/**
 * `gatehouse log witness`: this home witnesses the logs of the given trusted roots over the
 * c2sp.org/tlog-witness protocol until SIGINT or SIGTERM.
 */
export async function runWitness(
  home: OpenHome,
  o: { trustedRoots: string[]; listen: string | undefined; name: string | undefined; usage: string },
): Promise<number> {
  if (o.trustedRoots.length === 0)
    throw new UsageError(`log witness needs --trusted-root F for each log it witnesses\nusage: ${o.usage}`);
  const roots = await Promise.all(
    o.trustedRoots.map(async (f) => ({ json: await readJsonFile(f, 'trusted root'), where: f })),
  );
  const { witness, identity } = await openWitness(home, logsOfTrustedRoots(roots), o.name);
  const { host, port } = parseListen(o.listen ?? '127.0.0.1:8710');
  const server = createWitnessServer(witness, {
    onError: (e) =>
      process.stderr.write(`gatehouse witness: ${e instanceof Error ? e.message : String(e)}\n`),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new GatehouseError('UNREACHABLE', `cannot listen on ${host}:${port}: ${(e as Error).message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  process.stdout.write(
    `gatehouse witness ${identity.name} listening on http://${shown}:${actual} for ${witness.origins().join(', ')}\nkey ${identity.vkey}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return EXIT.ok;
}

/** `gatehouse log cosign`: ask the configured witnesses to cosign the current tree now. */
export async function cosignNow(home: OpenHome, json: boolean): Promise<number> {
  if (home.witnessing === undefined)
    throw new GatehouseError('BAD_CONFIG', 'the config names no witnesses', {
      where: 'config.json witnesses',
    });
  const round = await home.witnessing.cosign(await home.log.size());
  const out = makeOutput(json);
  out.document(round);
  for (const r of round.results)
    out.line(
      r.cosigned
        ? `${green('COSIGNED')}  ${r.witness}  tree size ${round.treeSize}`
        : `${red('REFUSED')}  ${r.witness}  ${r.problem ?? ''}`,
    );
  return round.results.every((r) => r.cosigned) ? EXIT.ok : EXIT.error;
}
