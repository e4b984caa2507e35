import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { OciDistributionClient } from './oci-client.ts';
import { OciDistributionRegistry } from './oci-distribution-registry.ts';
import { OciLayoutRegistry } from './oci-layout-registry.ts';
import type { ArtifactRegistry } from './registry.ts';
import type { RegistryCredentials } from './registry-auth.ts';

/** The registry part of the home's config (validated in `home/config.ts`). */
export type RegistryConfig =
  | { kind: 'oci-layout'; path: string }
  | {
      kind: 'oci-distribution';
      url: string;
      repositoryPrefix: string;
      quarantinePrefix: string;
      auth: { kind: 'anonymous' } | { kind: 'basic'; username: string; passwordFile: string };
    };

/** Credentials from `GATEHOUSE_REGISTRY_USERNAME` / `GATEHOUSE_REGISTRY_PASSWORD`, if both are set. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): RegistryCredentials | undefined {
  const username = env.GATEHOUSE_REGISTRY_USERNAME;
  const password = env.GATEHOUSE_REGISTRY_PASSWORD;
  return username !== undefined && username !== '' && password !== undefined && password !== ''
    ? { username, password }
    : undefined;
}

/**
 * The registry adapter a config names; paths are relative to `home`.
 * @throws GatehouseError BAD_CONFIG when the password file cannot be read
 */
export function registryFromConfig(config: RegistryConfig, home: string): ArtifactRegistry {
  switch (config.kind) {
    case 'oci-layout':
      return new OciLayoutRegistry({ root: resolve(home, config.path) });
    case 'oci-distribution': {
      let credentials: RegistryCredentials | undefined;
      if (config.auth.kind === 'basic') {
        const path = resolve(home, config.auth.passwordFile);
        let password: string;
        try {
          password = readFileSync(path, 'utf8').trim();
        } catch (e) {
          throw new GatehouseError('BAD_CONFIG', 'cannot read the registry password file', {
            where: path,
            cause: e,
          });
        }
        credentials = { username: config.auth.username, password };
      }
      const client = new OciDistributionClient({
        baseUrl: config.url,
        ...(credentials === undefined ? {} : { credentials }),
      });
      return new OciDistributionRegistry({
        client,
        repositoryPrefix: config.repositoryPrefix,
        quarantinePrefix: config.quarantinePrefix,
      });
    }
  }
}

/** Repository prefixes `gatehouse run --registry URL` uses. */
export const RUN_PREFIXES = {
  repositoryPrefix: 'gatehouse/promoted',
  quarantinePrefix: 'gatehouse/quarantine',
};

/**
 * The registry override of `gatehouse run --registry URL`: a distribution registry at URL with
 * the default prefixes and credentials from the environment. With `--server`, the server's
 * registry applies, so the two do not go together.
 * @throws GatehouseError BAD_INPUT
 */
export function registryOption(
  url: string | undefined,
  server: string | undefined,
): { registry?: ArtifactRegistry } {
  if (url === undefined) return {};
  if (server !== undefined) {
    throw new GatehouseError(
      'BAD_INPUT',
      '--registry applies to the embedded control plane; a --server uses its own registry',
    );
  }
  const credentials = credentialsFromEnv();
  const client = new OciDistributionClient({
    baseUrl: url,
    ...(credentials === undefined ? {} : { credentials }),
  });
  return { registry: new OciDistributionRegistry({ client, ...RUN_PREFIXES }) };
}
