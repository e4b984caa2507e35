import { posix } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { deepFreeze } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

/** The file a project keeps at its root to tell gatehouse how to build it. */
export const PROJECT_CONFIG_FILE = 'gatehouse.yaml';

/** Build timeout in seconds when `build.timeout` is absent. */
export const DEFAULT_BUILD_TIMEOUT_SECONDS = 300;
/** The longest build timeout a project may ask for, in seconds. */
export const MAX_BUILD_TIMEOUT_SECONDS = 3600;
/** What `fetch: npm` runs: exactly the lockfile, no install scripts, nothing sent back. */
export const NPM_FETCH = ['npm', 'ci', '--ignore-scripts', '--no-audit', '--no-fund'] as const;
/** The largest `gatehouse.yaml` we read. */
export const MAX_PROJECT_CONFIG_BYTES = 64 * 1024;

/** A project's parsed, frozen `gatehouse.yaml`. */
export interface ProjectConfig {
  readonly project: string;
  readonly build: {
    /** The argv run inside the sandbox; a string command becomes `['/bin/sh', '-c', command]`. */
    readonly command: readonly string[];
    readonly timeoutSeconds: number;
    /** Plain, non-secret variables added to the sandbox's otherwise empty environment. */
    readonly env: Readonly<Record<string, string>>;
  };
  /**
   * The dependency-fetch phase, when the project has one: run before the build in the same kind
   * of sandbox, whose only way out is the agent's allowlisting egress proxy.
   */
  readonly fetch?: { readonly command: readonly string[]; readonly timeoutSeconds: number };
  /** Workspace-relative, normalised POSIX paths of the files the build produces (none for an image). */
  readonly outputs: readonly string[];
  /** The container image gatehouse assembles from the build's files, when the project declares one. */
  readonly image?: ImageOutputConfig;
  readonly sbom: {
    /** Workspace-relative lockfiles to catalogue. */
    readonly lockfiles: readonly string[];
    /** False when the list is the default (`package-lock.json`, used only if present). */
    readonly required: boolean;
  };
}

/** Where an image's base comes from: nothing, the runner host's image store, or an OCI layout in the source. */
export type ImageBaseConfig =
  | { readonly kind: 'scratch' }
  | { readonly kind: 'store'; readonly digest: string }
  | { readonly kind: 'oci-layout'; readonly path: string; readonly digest: string };

/** A declared image output (gatehouse.yaml `image`), parsed. */
export interface ImageOutputConfig {
  /** The image's name: its archive is `<name>.oci.tar`, its ref name in the layout `<name>`. */
  readonly name: string;
  readonly base: ImageBaseConfig;
  /** Workspace paths (files or directories) and where they go in the image (absolute, normalised). */
  readonly files: readonly { readonly from: string; readonly to: string }[];
  readonly owner: { readonly uid: number; readonly gid: number };
  readonly platform: { readonly os: string; readonly architecture: string; readonly variant?: string };
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly user?: string;
  readonly workdir?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
// The sandbox sets these itself; letting a project replace them would change the measured profile.
const RESERVED_ENV = new Set(['PATH', 'HOME']);
// gatehouse.yaml is committed with the source, so anything secret in it is already leaked; refuse
// names that announce a secret so that nobody mistakes build.env for a secret store.
const SECRET_ENV = /SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL/i;
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** A workspace-relative path: no absolute, no `..`, no `.`, no empty segment, no control characters. */
const relativePath = z
  .string()
  .min(1, 'must not be empty')
  .max(1024, 'is longer than 1024 characters')
  .refine((p) => !hasControl(p), 'must not contain control characters')
  .refine((p) => !p.includes('\\'), 'must use / as the separator, not \\')
  .refine((p) => !p.startsWith('/'), 'must be relative to the workspace, not absolute')
  .refine((p) => !p.split('/').includes('..'), "must not contain '..'")
  .transform((p) => posix.normalize(p).replace(/\/+$/, ''))
  .refine(
    (p) => p !== '.' && p !== '' && !p.split('/').includes('.git'),
    'must name a file in the workspace',
  );

const argvItem = z
  .string()
  .min(1, 'must not be empty')
  .max(4096, 'is longer than 4096 characters')
  .refine((s) => !s.includes('\0'), 'must not contain NUL');

const envValue = z
  .union([z.string(), z.number(), z.boolean()], { error: 'must be a plain string, number or boolean' })
  .transform(String)
  .refine((s) => s.length <= 4096, 'is longer than 4096 characters')
  .refine((s) => !s.includes('\0'), 'must not contain NUL');

const envName = z
  .string()
  .regex(ENV_NAME, 'must be a variable name ([A-Za-z_][A-Za-z0-9_]*)')
  .refine((k) => !RESERVED_ENV.has(k), 'is set by the sandbox and cannot be overridden')
  .refine(
    (k) => !SECRET_ENV.test(k),
    'looks like a secret; build.env holds plain values only, never secrets',
  );

/** How long a build or fetch step may run. */
const timeoutSeconds = z
  .number({ error: 'must be a number of seconds' })
  .int('must be a whole number of seconds')
  .min(1, 'must be at least 1 second')
  .max(MAX_BUILD_TIMEOUT_SECONDS, `must be at most ${MAX_BUILD_TIMEOUT_SECONDS} seconds`)
  .optional();

const digestPin = z
  .string({ error: 'must be a sha256:<64 hex> digest' })
  .regex(/^sha256:[0-9a-f]{64}$/, 'must be a sha256:<64 hex> digest');

/** An absolute path inside the image: `/`-rooted, no `..`, normalised. */
const imagePath = z
  .string()
  .min(1, 'must not be empty')
  .max(1024, 'is longer than 1024 characters')
  .refine((p) => !hasControl(p), 'must not contain control characters')
  .refine((p) => !p.includes('\\'), 'must use / as the separator, not \\')
  .refine((p) => p.startsWith('/'), 'must be an absolute path in the image')
  .refine((p) => !p.split('/').includes('..'), "must not contain '..'")
  .transform((p) => posix.normalize(p).replace(/\/+$/, '') || '/');

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$/;

const imageSchema = z.strictObject(
  {
    name: z.string().regex(NAME, 'must match [a-z0-9][a-z0-9._-]{0,62}').optional(),
    base: z.union(
      [
        z.literal('scratch'),
        z.strictObject({ store: digestPin }),
        z.strictObject({ layout: relativePath, digest: digestPin }),
      ],
      {
        error:
          "must be 'scratch', {store: sha256:…} (the runner host's image store) or {layout: PATH, digest: sha256:…} (an OCI layout in the source, pinned by manifest digest)",
      },
    ),
    files: z
      .array(z.strictObject({ from: relativePath, to: imagePath }), {
        error: 'must be a list of {from, to}',
      })
      .min(1, 'must list at least one file or directory')
      .max(256),
    owner: z
      .string()
      .regex(/^\d{1,7}:\d{1,7}$/, 'must be numeric uid:gid')
      .optional(),
    platform: z
      .string({ error: 'is required: os/architecture[/variant], e.g. linux/amd64' })
      .regex(
        /^[a-z0-9]{1,32}\/[a-z0-9_]{1,32}(?:\/[a-z0-9]{1,32})?$/,
        'must be os/architecture[/variant], e.g. linux/amd64',
      ),
    entrypoint: z.array(argvItem).min(1).max(256).optional(),
    cmd: z.array(argvItem).max(256).optional(),
    env: z
      .record(z.string().regex(ENV_NAME, 'must be a variable name ([A-Za-z_][A-Za-z0-9_]*)'), envValue)
      .optional(),
    user: z
      .string()
      .regex(
        /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/,
        'must be user[:group]',
      )
      .optional(),
    workdir: imagePath.optional(),
    labels: z.record(z.string().regex(LABEL_KEY, 'must be a label key'), argvItem).optional(),
  },
  { error: 'must be a mapping' },
);

const schema = z.strictObject({
  project: z
    .string({ error: 'is required and must be a string' })
    .regex(NAME, 'must match [a-z0-9][a-z0-9._-]{0,62}'),
  build: z.strictObject(
    {
      command: z.union(
        [
          argvItem,
          z
            .array(argvItem, { error: 'must be a string or an array of strings' })
            .min(1, 'must not be empty')
            .max(256),
        ],
        { error: 'must be a string or a non-empty array of strings' },
      ),
      timeout: timeoutSeconds,
      env: z
        .record(envName, envValue, {
          error: (issue) =>
            issue.code === 'invalid_type' ? 'must be a mapping of names to plain values' : undefined,
        })
        .optional(),
    },
    { error: 'is required and must be a mapping' },
  ),
  fetch: z
    .union(
      [
        z.literal('npm'),
        z.strictObject({
          command: z.union([argvItem, z.array(argvItem).min(1).max(256)], {
            error: 'must be a string or a non-empty array of strings',
          }),
          timeout: timeoutSeconds,
        }),
      ],
      { error: "must be 'npm' or a mapping with command (and timeout)" },
    )
    .optional(),
  outputs: z
    .array(relativePath, { error: 'is required and must be a list of paths' })
    .min(1, 'must list at least one output')
    .max(256, 'must list at most 256 outputs')
    .optional(),
  image: imageSchema.optional(),
  sbom: z
    .strictObject(
      { lockfiles: z.array(relativePath, { error: 'must be a list of paths' }).max(64).optional() },
      { error: 'must be a mapping' },
    )
    .optional(),
});

function issuePath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

function fail(message: string, where: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'BAD_PROJECT_CONFIG',
    message,
    cause === undefined ? { where } : { where, cause },
  );
}

/**
 * Parse the text of a `gatehouse.yaml` into a frozen, typed config.
 * `where` names the file in errors.
 * @throws GatehouseError BAD_PROJECT_CONFIG naming the offending key
 */
export function parseProjectConfig(text: string, where: string): ProjectConfig {
  if (Buffer.byteLength(text, 'utf8') > MAX_PROJECT_CONFIG_BYTES) {
    throw fail(`is larger than ${MAX_PROJECT_CONFIG_BYTES / 1024} KiB`, where);
  }
  // YAML 1.2 core schema (no `yes`/`no` booleans, no merge keys), duplicate keys refused, and no
  // aliases at all: a build config has no use for them and they are the billion-laughs vector.
  const doc = parseDocument(text, { version: '1.2', schema: 'core', uniqueKeys: true, merge: false });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem !== undefined) {
    throw fail(`is not valid YAML: ${problem.message.split('\n')[0] ?? problem.code}`, where, problem);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 0 });
  } catch (e) {
    throw fail(`cannot be read: ${e instanceof Error ? e.message : String(e)}`, where, e);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw fail('must be a YAML mapping with the keys project, build and outputs', where);
  }
  // zod drops a `__proto__` key silently; refuse it so that what we parse is what was written.
  const proto = findProtoKey(raw, []);
  if (proto !== undefined) throw fail(`${proto} uses the reserved key __proto__`, where);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const at = issue.path.length === 0 ? '' : ` in ${issuePath(issue.path)}`;
        return `unknown key${issue.keys.length > 1 ? 's' : ''}${at}: ${issue.keys.join(', ')}`;
      }
      if (issue.code === 'invalid_key') {
        return `${issuePath(issue.path)} ${issue.issues.map((i) => i.message).join(', ')}`;
      }
      return `${issuePath(issue.path)} ${issue.message}`;
    });
    throw fail(lines.join('; '), where, parsed.error);
  }
  const c = parsed.data;
  // An image project's one output is its image; files for it are listed under image.files.
  if (c.image !== undefined && c.outputs !== undefined)
    throw fail('declares both outputs and image: an image project lists its files under image.files', where);
  if (c.image === undefined && c.outputs === undefined) throw fail('outputs is required (or image)', where);
  const outputs = c.outputs ?? [];
  const dup = outputs.find((p, i) => outputs.indexOf(p) !== i);
  if (dup !== undefined) throw fail(`outputs lists '${dup}' twice`, where);

  const command = typeof c.build.command === 'string' ? ['/bin/sh', '-c', c.build.command] : c.build.command;
  const env = Object.fromEntries(Object.entries(c.build.env ?? {}));
  const lockfiles = c.sbom?.lockfiles;
  const fetch =
    c.fetch === undefined
      ? undefined
      : c.fetch === 'npm'
        ? { command: [...NPM_FETCH], timeoutSeconds: DEFAULT_BUILD_TIMEOUT_SECONDS }
        : {
            command:
              typeof c.fetch.command === 'string' ? ['/bin/sh', '-c', c.fetch.command] : [...c.fetch.command],
            timeoutSeconds: c.fetch.timeout ?? DEFAULT_BUILD_TIMEOUT_SECONDS,
          };
  return deepFreeze({
    project: c.project,
    build: {
      command: [...command],
      timeoutSeconds: c.build.timeout ?? DEFAULT_BUILD_TIMEOUT_SECONDS,
      env,
    },
    ...(fetch === undefined ? {} : { fetch }),
    outputs: [...outputs],
    ...(c.image === undefined ? {} : { image: imageOutputOf(c.image, c.project, where) }),
    sbom:
      lockfiles === undefined
        ? { lockfiles: ['package-lock.json'], required: false }
        : { lockfiles, required: true },
  });
}

function imageOutputOf(i: z.infer<typeof imageSchema>, project: string, where: string): ImageOutputConfig {
  const tos = i.files.map((f) => f.to);
  const dup = tos.find((t, n) => tos.indexOf(t) !== n);
  if (dup !== undefined) throw fail(`image.files puts two entries at '${dup}'`, where);
  const [os, architecture, variant] = i.platform.split('/') as [string, string, string | undefined];
  const [uid, gid] = (i.owner ?? '0:0').split(':').map(Number) as [number, number];
  const base: ImageBaseConfig =
    i.base === 'scratch'
      ? { kind: 'scratch' }
      : 'store' in i.base
        ? { kind: 'store', digest: i.base.store }
        : { kind: 'oci-layout', path: i.base.layout, digest: i.base.digest };
  return {
    name: i.name ?? project,
    base,
    files: i.files.map((f) => ({ from: f.from, to: f.to })),
    owner: { uid, gid },
    platform: { os, architecture, ...(variant === undefined ? {} : { variant }) },
    ...(i.entrypoint === undefined ? {} : { entrypoint: [...i.entrypoint] }),
    ...(i.cmd === undefined ? {} : { cmd: [...i.cmd] }),
    ...(i.env === undefined ? {} : { env: { ...i.env } }),
    ...(i.user === undefined ? {} : { user: i.user }),
    ...(i.workdir === undefined ? {} : { workdir: i.workdir }),
    ...(i.labels === undefined ? {} : { labels: { ...i.labels } }),
  };
}

function findProtoKey(value: unknown, path: string[]): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  for (const key of Object.keys(value)) {
    const at = [...path, key];
    if (key === '__proto__') return path.length === 0 ? '(top level)' : path.join('.');
    const found = findProtoKey((value as Record<string, unknown>)[key], at);
    if (found !== undefined) return found;
  }
  return undefined;
}
