import { GatehouseError } from '../../common/errors.ts';
import { homeVtpmPool, openHome, resolveHome } from '../../home/home.ts';
import { consoleRoutes } from '../../server/console/console-routes.ts';
import { loadOidcClientSecret } from '../../server/console/oidc-login.ts';
import { loadTriagerToken, loadViewerToken } from '../../server/console/viewer-token.ts';
import { ctRoutes } from '../../server/ct-routes.ts';
import { createApiServer } from '../../server/http-server.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { backgroundFillEnabled, releaseFillLock, takeFillLock } from '../background-fill.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';

/** Parse HOST:PORT (IPv6 as [::1]:PORT). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw new UsageError(`--listen '${value}' is not HOST:PORT`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

/** Fill the home's vTPM pool to its target in this process, unless another process is filling it. */
async function refillPool(root: string): Promise<void> {
  if (!backgroundFillEnabled()) return;
  const pooled = await homeVtpmPool(root).catch(() => undefined);
  if (pooled === undefined || pooled.target === 0 || (await pooled.pool.size()) >= pooled.target) return;
  if (!takeFillLock(pooled.pool)) return;
  try {
    await pooled.pool.fill(pooled.target);
  } catch {
    // The next tick tries again; a job meanwhile manufactures its own vTPM.
  } finally {
    releaseFillLock(pooled.pool);
  }
}

export async function serverCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      ...commonOptions,
      listen: { type: 'string' },
      store: { type: 'string' },
      'viewer-token-file': { type: 'string' },
    },
    { min: 0, max: 0, usage: usageOf('server') },
  );
  const { host, port } = parseListen(values.listen ?? '127.0.0.1:8700');
  // --store: the PostgreSQL database this instance shares with the others (the config's otherwise).
  if (values.store !== undefined && !/^postgres(?:ql)?:\/\//.test(values.store))
    throw new UsageError(`--store '${values.store.slice(0, 80)}' is not a postgres:// URL`);
  const home = await openHome(resolveHome(values.home), {
    ...(values.store === undefined ? {} : { store: { kind: 'postgres', url: values.store } }),
  });
  // Settle what a crash left unfinished before taking new work, then keep settling.
  const settled = await home.reconciler.run();
  const total = settled.completed.length + settled.failed.length + settled.expired.length;
  if (total > 0)
    process.stdout.write(
      `reconciled ${total} unfinished jobs: ${settled.completed.length} completed, ${settled.failed.length} failed, ${settled.expired.length} expired\n`,
    );
  // Every 30 s, or as often as the shortest grace (a job abandoned by another instance that died is
  // settled by the survivors within about twice its grace). A grace must exceed the longest
  // decision: no instance can tell another that is slow from one that is dead.
  const jobs = home.config.jobs;
  const every = Math.min(30, jobs?.submittedGraceSeconds ?? 30, jobs?.deadlineSeconds ?? 30) * 1000;
  const reconciling = setInterval(() => void home.reconciler.run().catch(() => undefined), every);
  reconciling.unref();
  // Runners on this host take vTPMs from the home's pool; the server keeps it filled.
  const refilling = setInterval(() => void refillPool(home.root), 10_000);
  refilling.unref();
  void refillPool(home.root);
  const consoleConfig = home.config.console;
  const access = await (async () => {
    const viewer = await loadViewerToken(
      home.root,
      values['viewer-token-file'] ?? consoleConfig?.viewerTokenFile,
    );
    const triagerToken = await loadTriagerToken(home.root, consoleConfig?.triagerTokenFile, viewer.token);
    const oidc = consoleConfig?.oidc;
    // The client secret is read now, so a bad file stops the start rather than the first login.
    const clientSecret = oidc === undefined ? undefined : await loadOidcClientSecret(home.root, oidc);
    return { viewer, triagerToken, oidc, clientSecret };
  })().catch(async (e: unknown) => {
    await home.close();
    throw e;
  });
  const { viewer } = access;
  // Alerts the outbox holds (from this process, `gatehouse run`, or a restart) go out from here.
  home.alerts.start();
  // Continuous host attestation: this host quotes its boot state on the configured interval (a
  // drifted host is quarantined here, between jobs, not in one's critical path).
  const quoteEvery = (home.config.attestation?.hostQuote?.intervalSeconds ?? 300) * 1000;
  const quoting = setInterval(
    () =>
      void home
        .requoteHost({ force: true })
        .then((r) => {
          // Said at every quote while it lasts; /metrics counts it (gatehouse_runner_hosts).
          if (r?.status === 'quarantined')
            process.stderr.write(
              `gatehouse server: runner host ${r.host} is quarantined: ${r.reason ?? ''}\n`,
            );
        })
        .catch(() => undefined),
    quoteEvery,
  );
  quoting.unref();
  const server = createApiServer({
    controlPlane: home.controlPlane,
    apiToken: home.apiToken,
    extraRoutes: [
      ...ctRoutes(home.ct),
      ...consoleRoutes({
        controlPlane: home.controlPlane,
        store: home.store,
        policies: home.policies,
        registry: home.registry,
        viewerToken: viewer.token,
        ...(access.triagerToken === undefined ? {} : { triagerToken: access.triagerToken }),
        ...(access.oidc === undefined
          ? {}
          : {
              oidc: {
                config: access.oidc,
                ...(access.clientSecret === undefined ? {} : { clientSecret: access.clientSecret }),
              },
            }),
      }),
    ],
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
  process.stdout.write(`gatehouse server listening on http://${shown}:${actual} (home ${home.root})\n`);
  process.stdout.write(`console at http://${shown}:${actual}/console/ (viewer token in ${viewer.path})\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  clearInterval(reconciling);
  clearInterval(refilling);
  await home.close();
  return EXIT.ok;
}
