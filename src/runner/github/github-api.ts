/**
 * The part of GitHub's REST API the just-in-time runner backend uses, for one repository, as
 * GitHub documents it (https://docs.github.com/en/rest/actions/self-hosted-runners and
 * …/rest/actions/workflows): register a just-in-time runner
 * (`POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig`), list and delete self-hosted
 * runners (`GET …/actions/runners`, `DELETE …/actions/runners/{runner_id}`), and dispatch a
 * workflow (`POST …/actions/workflows/{workflow_id}/dispatches`). Answers are parsed with schemas
 * and bounded; a refusal names the call and GitHub's own message, never the token or a JIT config.
 */
import { z } from 'zod';
import { readBoundedText } from '../../common/bounded-body.ts';
import { GatehouseError } from '../../common/errors.ts';

/** Where and as whom to call the API. */
export interface GithubAccess {
  /** `https://api.github.com`, or a GitHub Enterprise Server's `https://HOST/api/v3` (http only on loopback). */
  readonly apiUrl: string;
  /** `owner/repo`. */
  readonly repository: string;
  /** A token allowed to administer the repository's self-hosted runners (and dispatch workflows). */
  readonly token: string;
}

/** The API version the requests and recorded answers are in. */
export const GITHUB_API_VERSION = '2022-11-28';
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const TIMEOUT_MS = 30_000;
const REPOSITORY = /^[A-Za-z0-9][A-Za-z0-9-]{0,38}\/[A-Za-z0-9._-]{1,100}$/;

const runnerSchema = z.looseObject({
  id: z.number().int().positive(),
  name: z.string().min(1),
  status: z.string().optional(),
  busy: z.boolean().optional(),
  labels: z.array(z.looseObject({ name: z.string() })).optional(),
});

/** A self-hosted runner as the API describes it. */
export type GithubRunner = z.infer<typeof runnerSchema>;

const jitConfigSchema = z.looseObject({
  runner: runnerSchema,
  encoded_jit_config: z.string().min(1).max(65_536),
});

const runnerListSchema = z.looseObject({
  total_count: z.number().int().nonnegative(),
  runners: z.array(runnerSchema),
});

/** The registration of one just-in-time runner: its id and the single-use configuration. */
export interface JitRegistration {
  readonly runner: GithubRunner;
  /** The base64 runner configuration for `run.sh --jitconfig`: a credential, used once. */
  readonly encodedJitConfig: string;
}

function isLoopback(u: URL): boolean {
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

/** A client of one repository's self-hosted runners and workflows. */
export class GithubRunnersApi {
  readonly #token: string;
  readonly #base: URL;
  readonly repository: string;

  /** @throws GatehouseError BAD_CONFIG for a bad URL or repository name */
  constructor(access: GithubAccess) {
    let base: URL;
    try {
      base = new URL(access.apiUrl.replace(/\/+$/, ''));
    } catch (cause) {
      throw new GatehouseError('BAD_CONFIG', `the GitHub API URL '${access.apiUrl}' is not a URL`, { cause });
    }
    if (base.protocol !== 'https:' && !(base.protocol === 'http:' && isLoopback(base)))
      throw new GatehouseError(
        'BAD_CONFIG',
        `the GitHub API ${base.origin} must be https (http only on loopback)`,
      );
    if (!REPOSITORY.test(access.repository))
      throw new GatehouseError(
        'BAD_CONFIG',
        `'${access.repository}' is not a GitHub repository (owner/repo)`,
      );
    if (access.token === '') throw new GatehouseError('BAD_CONFIG', 'the GitHub token is empty');
    this.#base = base;
    this.#token = access.token;
    this.repository = access.repository;
  }

  /** Never prints the token. */
  toJSON(): Record<string, string> {
    return { apiUrl: this.#base.href, repository: this.repository };
  }

  /**
   * Register a just-in-time runner that takes one job and is then removed by GitHub.
   * @throws GatehouseError UNAUTHORIZED (401/403), BAD_CONFIG (404: no such repository or group;
   *   422: refused input), CONFLICT (409: the name is taken), UNREACHABLE
   */
  async generateJitConfig(request: {
    name: string;
    runnerGroupId: number;
    labels: readonly string[];
    workFolder?: string;
  }): Promise<JitRegistration> {
    const path = `${this.#repoPath()}/actions/runners/generate-jitconfig`;
    const answer = await this.#call('POST', path, {
      name: request.name,
      runner_group_id: request.runnerGroupId,
      labels: [...request.labels],
      work_folder: request.workFolder ?? '_work',
    });
    if (answer.status !== 201) throw refusal('POST', path, answer);
    const r = jitConfigSchema.safeParse(answer.body);
    if (!r.success)
      throw new GatehouseError(
        'UNREACHABLE',
        `GitHub POST ${path}: the answer is not a JIT runner configuration`,
      );
    return { runner: r.data.runner, encodedJitConfig: r.data.encoded_jit_config };
  }

  /**
   * Remove a self-hosted runner. @returns false when it was already gone (404: a JIT runner is
   * removed by GitHub once its job ends)
   * @throws GatehouseError UNAUTHORIZED, UNREACHABLE
   */
  async deleteRunner(id: number): Promise<boolean> {
    const path = `${this.#repoPath()}/actions/runners/${id}`;
    const answer = await this.#call('DELETE', path);
    if (answer.status === 204) return true;
    if (answer.status === 404) return false;
    throw refusal('DELETE', path, answer);
  }

  /** The repository's self-hosted runners (the first 100). @throws GatehouseError UNAUTHORIZED, UNREACHABLE */
  async listRunners(): Promise<GithubRunner[]> {
    const path = `${this.#repoPath()}/actions/runners?per_page=100`;
    const answer = await this.#call('GET', path);
    if (answer.status !== 200) throw refusal('GET', path, answer);
    const r = runnerListSchema.safeParse(answer.body);
    if (!r.success)
      throw new GatehouseError('UNREACHABLE', `GitHub GET ${path}: the answer is not a runner list`);
    return r.data.runners;
  }

  /**
   * Start a workflow run (`workflow_dispatch`) on `ref` with `inputs`.
   * @throws GatehouseError UNAUTHORIZED, BAD_CONFIG (404, 422), UNREACHABLE
   */
  async dispatchWorkflow(
    workflow: string,
    ref: string,
    inputs: Readonly<Record<string, string>>,
  ): Promise<void> {
    const path = `${this.#repoPath()}/actions/workflows/${encodeURIComponent(workflow)}/dispatches`;
    const answer = await this.#call('POST', path, { ref, inputs: { ...inputs } });
    if (answer.status !== 204) throw refusal('POST', path, answer);
  }

  #repoPath(): string {
    const [owner, repo] = this.repository.split('/');
    return `/repos/${encodeURIComponent(owner ?? '')}/${encodeURIComponent(repo ?? '')}`;
  }

  async #call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Answer> {
    const url = new URL(`${this.#base.pathname.replace(/\/$/, '')}${path}`, this.#base);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          accept: 'application/vnd.github+json',
          authorization: `Bearer ${this.#token}`,
          'x-github-api-version': GITHUB_API_VERSION,
          'user-agent': 'gatehouse',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: 'error',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (cause) {
      throw new GatehouseError(
        'UNREACHABLE',
        `GitHub ${method} ${path}: ${this.#base.origin} cannot be reached`,
        {
          cause,
        },
      );
    }
    const text = await readBoundedText(res, MAX_ANSWER_BYTES, `GitHub ${method} ${path}`);
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: res.status, body: parsed };
  }
}

interface Answer {
  status: number;
  body: unknown;
}

/** GitHub's refusal, with its own `message` (never the request's body, which may hold secrets). */
function refusal(method: string, path: string, answer: Answer): GatehouseError {
  const body = answer.body as { message?: unknown } | undefined;
  const message =
    typeof body === 'object' && body !== null && typeof body.message === 'string'
      ? body.message.slice(0, 200)
      : `HTTP ${answer.status}`;
  const code =
    answer.status === 401 || answer.status === 403
      ? 'UNAUTHORIZED'
      : answer.status === 404 || answer.status === 422
        ? 'BAD_CONFIG'
        : answer.status === 409
          ? 'CONFLICT'
          : 'UNREACHABLE';
  return new GatehouseError(code, `GitHub ${method} ${path}: ${answer.status} ${message}`);
}
