import { GatehouseError } from '../common/errors.ts';
import type { SourceProtectionRecord, SourceStore } from '../store/store.ts';
import { RestClient } from './rest-client.ts';
import type { SourceClaim, SourceProvider, SourceVerification } from './source-provider.ts';
import { unverified } from './source-provider.ts';
import { buildConfigPath, verifyRegistered } from './verification.ts';

export interface HostedProviderOptions {
  /** REST API base (`https://api.github.com`, `https://gitlab.example/api/v4`). */
  apiUrl: string;
  /** Web base that repository URIs start with (`https://github.com`). */
  webUrl: string;
  token?: string;
  /** Central configuration: protections, trusted signers, accepted heads. */
  store: SourceStore;
  maxRateLimitWaitSeconds?: number;
  /** Build configuration file name (default `gatehouse.yaml`). */
  buildConfigFile?: string;
}

/** How one hosting service differs from the others where {@link HostedProvider} is concerned. */
export interface HostedService {
  kind: 'github' | 'gitlab';
  /** The service's name in messages (`GitHub`). */
  name: string;
  /** The repository paths below the web base it has (`owner/name`, `group/…/project`). */
  path: RegExp;
  /** The problem of a repository URI whose path is not one of them. */
  notAPath: string;
  /** Headers its REST API wants on every request. */
  headers?: Record<string, string>;
}

/** The claims of a CI identity token, already verified by the attestation stage. */
type CiClaims = Readonly<Record<string, unknown>>;

/**
 * A source provider over a hosting service's REST API (GitHub, GitLab). What they share is here:
 * the repository URIs they answer for, the CI identity binding the claim must pass before anything
 * is read, the registered-repository verification around the facts the service's subclass reads
 * (see {@link verifyRegistered}), and the limits of a hosted API noted on the result.
 */
export abstract class HostedProvider implements SourceProvider {
  readonly kind: HostedService['kind'];
  protected readonly options: HostedProviderOptions;
  protected readonly api: RestClient;
  readonly #service: HostedService;
  readonly #web: string;

  protected constructor(options: HostedProviderOptions, service: HostedService) {
    this.kind = service.kind;
    this.options = options;
    this.#service = service;
    this.#web = options.webUrl.replace(/\/+$/, '');
    this.api = new RestClient({
      baseUrl: options.apiUrl,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(service.headers === undefined ? {} : { headers: service.headers }),
      ...(options.maxRateLimitWaitSeconds === undefined
        ? {}
        : { maxRateLimitWaitSeconds: options.maxRateLimitWaitSeconds }),
    });
  }

  handles(repository: string): boolean {
    return repository.startsWith(`${this.#web}/`);
  }

  async verify(claim: SourceClaim): Promise<SourceVerification> {
    const { repository, commit } = claim;
    const path = repository.slice(this.#web.length + 1);
    if (!this.#service.path.test(path))
      return unverified(this.kind, repository, this.#service.notAPath, commit);
    return verifyRegistered(this.kind, this.options.store, claim, async (protections) => {
      const ci = this.#ciIdentity(claim, path);
      if (ci !== undefined && !ci.matched)
        throw new GatehouseError('SOURCE_MISMATCH', ci.detail ?? 'CI identity mismatch');
      const v = await this.establish(path, claim, protections);
      return noteHostedLimits(v, claim, ci, this.#service.name);
    });
  }

  /** The facts of the claimed commit of the repository at `path`, read from the service. */
  protected abstract establish(
    path: string,
    claim: SourceClaim,
    protections: readonly SourceProtectionRecord[],
  ): Promise<SourceVerification>;

  /** What the token names instead of the repository at `path` (`repository x/y`), or undefined. */
  protected abstract otherRepository(t: CiClaims, path: string): string | undefined;

  /** True when the token's ref is the claimed full ref name. */
  protected abstract sameRef(t: CiClaims, ref: string): boolean;

  /** The run the token names, for a matched binding's detail. */
  protected abstract runOf(t: CiClaims): string;

  /** The build configuration file of the claim, from the repository root. */
  protected configPath(claim: SourceClaim): string {
    return buildConfigPath(claim, this.options.buildConfigFile ?? 'gatehouse.yaml');
  }

  /** Compare the claim's CI identity token with its repository, commit and ref. */
  #ciIdentity(claim: SourceClaim, path: string): SourceVerification['ciIdentity'] {
    const t = claim.ciIdentity;
    if (t === undefined) return undefined;
    const wrong: string[] = [];
    const repository = this.otherRepository(t, path);
    if (repository !== undefined) wrong.push(repository);
    if (t.sha !== claim.commit) wrong.push(`sha ${String(t.sha).slice(0, 12)}`);
    if (claim.ref !== undefined && !this.sameRef(t, claim.ref)) wrong.push(`ref ${String(t.ref)}`);
    if (wrong.length > 0) {
      return {
        matched: false,
        detail: `the CI identity token names ${wrong.join(', ')}, not ${path}@${claim.commit.slice(0, 12)}`,
      };
    }
    return { matched: true, detail: this.runOf(t) };
  }
}

/**
 * The facts only a hosted API cannot give: the CI identity binding (required; its absence is a
 * problem) and the pinned tree digest, which the attested agent compares against its clone's
 * objects since the API has no content digest of a whole tree (see docs/source.md).
 */
function noteHostedLimits(
  v: SourceVerification,
  claim: SourceClaim,
  ci: SourceVerification['ciIdentity'],
  host: string,
): SourceVerification {
  if (ci !== undefined) v.ciIdentity = ci;
  else v.problems.push('no CI identity token ties the job to this repository and commit');
  if (claim.treeDigest !== undefined)
    v.problems.push(`the pinned tree digest is not compared through the ${host} API`);
  return v;
}
