/**
 * Test support (not product code): GitHub Actions OIDC identity tokens in the claim shape GitHub
 * documents ("OpenID Connect reference": the example token's claims), signed with a key the test
 * generates, for tests of the CI token path where GitHub's token service cannot run.
 */
import type { KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';

/** The issuer of GitHub Actions' OIDC tokens. */
export const GITHUB_ACTIONS_ISSUER = 'https://token.actions.githubusercontent.com';

/** A token for `audience` of a push to `refs/heads/main` of `repository`, valid five minutes. */
export function githubActionsToken(
  key: KeyObject,
  o: { audience: string; repository?: string; runnerEnvironment?: string; kid?: string },
): Promise<string> {
  const repository = o.repository ?? 'octo-org/octo-repo';
  const workflow = `${repository}/.github/workflows/build.yml@refs/heads/main`;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    sub: `repo:${repository}:ref:refs/heads/main`,
    ref: 'refs/heads/main',
    ref_type: 'branch',
    sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
    repository,
    repository_owner: repository.split('/')[0],
    run_id: '5678',
    run_attempt: '1',
    runner_environment: o.runnerEnvironment ?? 'github-hosted',
    event_name: 'push',
    workflow_ref: workflow,
    job_workflow_ref: workflow,
  })
    .setProtectedHeader({ alg: 'RS256', kid: o.kid ?? 'gh-1', typ: 'JWT' })
    .setIssuer(GITHUB_ACTIONS_ISSUER)
    .setAudience(o.audience)
    .setIssuedAt(now)
    .setNotBefore(now - 5)
    .setExpirationTime(now + 300)
    .sign(key);
}
