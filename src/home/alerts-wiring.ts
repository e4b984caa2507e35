import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { WebhookDispatcher, type WebhookEndpoint } from '../alerts/webhook-dispatcher.ts';
import { webhookKey } from '../alerts/webhook-signature.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Store } from '../store/store.ts';
import type { Config } from './config.ts';

/**
 * The webhook dispatcher the config's `alerts` names, each secret read from its file, which must be
 * readable by its owner alone. With no `alerts`, a dispatcher with no endpoint (it records nothing).
 * @throws GatehouseError BAD_CONFIG naming the endpoint
 */
export async function alertDispatcher(
  root: string,
  config: Config,
  store: Store,
): Promise<WebhookDispatcher> {
  const endpoints: WebhookEndpoint[] = [];
  for (const [i, w] of (config.alerts?.webhooks ?? []).entries()) {
    const where = `config.json alerts.webhooks.${i}.secretFile`;
    const path = resolve(root, w.secretFile);
    const info = await stat(path).catch((e: unknown) => {
      throw new GatehouseError('BAD_CONFIG', `cannot read the secret of webhook ${w.name}`, {
        where,
        cause: e,
      });
    });
    if ((info.mode & 0o077) !== 0)
      throw new GatehouseError(
        'BAD_CONFIG',
        `the secret file of webhook ${w.name} is readable by others: chmod 600 it`,
        {
          where,
        },
      );
    const key = webhookKey(await readFile(path, 'utf8'));
    if (key.length < 16)
      throw new GatehouseError('BAD_CONFIG', `the secret of webhook ${w.name} is shorter than 16 bytes`, {
        where,
      });
    endpoints.push({
      name: w.name,
      url: w.url,
      key,
      ...(w.events === undefined ? {} : { events: w.events }),
      ...(w.maxAttempts === undefined ? {} : { maxAttempts: w.maxAttempts }),
      ...(w.timeoutSeconds === undefined ? {} : { timeoutSeconds: w.timeoutSeconds }),
    });
  }
  return new WebhookDispatcher({ store: store.alerts, endpoints, source: config.identityBase });
}
