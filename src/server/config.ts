import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

/**
 * The home's config.json: data, validated once at start-up, then frozen. The wiring switches
 * over each discriminated union exhaustively, so a new backend cannot be half-added.
 */
const storeConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite'), path: z.string().min(1) }).strict(),
  z.object({ kind: z.literal('postgres'), url: z.string().min(1) }).strict(),
]);

const registryConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('oci-layout'), path: z.string().min(1) }).strict(),
]);

const runnerConfig = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('bubblewrap'),
      /** Absolute paths of the toolchain binaries every runner measures. */
      toolchain: z.array(z.string().startsWith('/')).min(1),
    })
    .strict(),
]);

export const configSchema = z
  .object({
    version: z.literal(1),
    /** The issuer named in attestation tokens and in signing certificates. */
    issuer: z.url(),
    /** Base URI of build identities: a certificate's SAN is `<identityBase>/projects/<project>`. */
    identityBase: z.url(),
    store: storeConfig,
    registry: registryConfig,
    runner: runnerConfig,
    tokenTtlSeconds: z.number().int().min(30).max(900),
    certValidityMinutes: z.number().int().min(1).max(60),
    /** Path (relative to the home) of the central policy every project is held to. */
    policy: z.string().min(1),
  })
  .strict();

export type Config = Readonly<z.infer<typeof configSchema>>;

/** The config `gatehouse init` writes. */
export function defaultConfig(): Config {
  return {
    version: 1,
    issuer: 'https://gatehouse.internal/attestation',
    identityBase: 'https://gatehouse.internal',
    store: { kind: 'sqlite', path: 'gatehouse.db' },
    registry: { kind: 'oci-layout', path: 'registry' },
    runner: {
      kind: 'bubblewrap',
      toolchain: ['/usr/bin/sh', '/usr/bin/tar', '/usr/bin/gzip', '/usr/bin/env'],
    },
    tokenTtlSeconds: 300,
    certValidityMinutes: 10,
    policy: 'policy.yaml',
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Parse and freeze a config document.
 * @throws GatehouseError BAD_CONFIG naming the file and the first bad field
 */
export function parseConfig(text: string, where: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', `not valid JSON: ${(e as Error).message}`, { where, cause: e });
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    throw new GatehouseError(
      'BAD_CONFIG',
      `${path === '' ? 'config' : path}: ${issue?.message ?? 'invalid'}`,
      {
        where,
      },
    );
  }
  return deepFreeze(parsed.data);
}

/** Read and parse `path`. @throws GatehouseError HOME_NOT_INITIALIZED, BAD_CONFIG */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new GatehouseError('HOME_NOT_INITIALIZED', 'no config.json: run `gatehouse init` first', {
      where: path,
      cause: e,
    });
  }
  return parseConfig(text, path);
}
