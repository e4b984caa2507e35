import type { Store } from '../store/store.ts';
import type { SourceConfig } from './config.ts';
import { GitHubProvider } from './github-provider.ts';
import { GitLabProvider } from './gitlab-provider.ts';
import { LocalGitProvider } from './local-git-provider.ts';
import type { SourceFacts, SourceProvider, SourceVerification } from './source-provider.ts';
import { verifySubmittedSource } from './verify-submission.ts';

/** The providers of one installation: local git always, hosted ones as configured. */
export function sourceProviders(
  store: Store,
  config: { source?: SourceConfig | undefined },
): SourceProvider[] {
  const providers: SourceProvider[] = [new LocalGitProvider({ store: store.source })];
  for (const p of config.source?.providers ?? []) {
    switch (p.kind) {
      case 'github':
      case 'gitlab': {
        const token = p.tokenEnv === undefined ? undefined : process.env[p.tokenEnv];
        const options = {
          apiUrl: p.apiUrl,
          webUrl: p.webUrl,
          store: store.source,
          ...(token === undefined || token === '' ? {} : { token }),
          ...(p.maxRateLimitWaitSeconds === undefined
            ? {}
            : { maxRateLimitWaitSeconds: p.maxRateLimitWaitSeconds }),
        };
        providers.push(p.kind === 'github' ? new GitHubProvider(options) : new GitLabProvider(options));
        break;
      }
    }
  }
  return providers;
}

/**
 * The gate's source step for one installation: the facts from the repository, plus the project
 * binding. A project named in a protection (`source protect … --project NAME`) must be built from
 * that repository: a build of it from a directory or another repository is refused.
 */
export function sourceVerifier(
  store: Store,
  config: { source?: SourceConfig | undefined },
): (facts: SourceFacts, project: string) => Promise<SourceVerification> {
  const providers = sourceProviders(store, config);
  return async (facts, project) => {
    const v = await verifySubmittedSource(providers, facts);
    const bound = [
      ...new Set(
        (await store.source.protections())
          .filter((p) => p.rule.projects?.includes(project) === true)
          .map((p) => p.repository),
      ),
    ];
    if (bound.length > 0 && !(facts.kind === 'git' && bound.includes(facts.uri))) {
      v.violations.push({
        requirement: 'repository',
        message: `project ${project} must be built from ${bound.join(' or ')}, not ${facts.kind === 'directory' ? 'a directory' : facts.uri}`,
      });
    }
    return v;
  };
}
