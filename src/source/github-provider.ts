import { z } from 'zod';
import { sha256Hex } from '../common/encoding.ts';
import { describeError } from '../common/errors.ts';
import type { SourceProtectionRecord } from '../store/store.ts';
import { OBJECT_ID } from './git.ts';
import { HostedProvider, type HostedProviderOptions } from './hosted-provider.ts';
import { signatureFormat, verifyGpgSignature, verifySshSignature } from './signers.ts';
import type { SourceApproval, SourceClaim, SourceRefFact, SourceVerification } from './source-provider.ts';
import { refMatches } from './source-provider.ts';
import { acceptHead, establishedSource, noSuchCommit, refFact } from './verification.ts';

const user = z.object({ login: z.string() });
const commitSchema = z.object({
  sha: z.string().regex(OBJECT_ID),
  commit: z.object({
    author: z.object({ name: z.string(), email: z.string() }).nullable(),
    verification: z
      .object({
        verified: z.boolean(),
        reason: z.string(),
        signature: z.string().nullable(),
        payload: z.string().nullable(),
      })
      .optional(),
  }),
  author: user.nullable(),
});
const branchSchema = z.object({
  name: z.string(),
  commit: z.object({ sha: z.string().regex(OBJECT_ID) }),
  protected: z.boolean(),
});
const compareSchema = z.object({ status: z.enum(['diverged', 'ahead', 'behind', 'identical']) });
const pullSchema = z.object({
  number: z.number().int(),
  state: z.string(),
  user: user.nullable(),
  merged_at: z.string().nullable().optional(),
  merge_commit_sha: z.string().nullable().optional(),
  head: z.object({ sha: z.string().regex(OBJECT_ID) }),
  base: z.object({ ref: z.string() }),
});
const reviewSchema = z.object({
  id: z.number(),
  user: user.nullable(),
  state: z.string(),
  commit_id: z.string().nullable(),
  submitted_at: z.string().optional(),
});
const contentSchema = z.object({
  type: z.literal('file'),
  encoding: z.literal('base64'),
  content: z.string(),
});
const protectionSchema = z.object({
  required_pull_request_reviews: z
    .object({ required_approving_review_count: z.number().int().optional() })
    .optional(),
  required_signatures: z.object({ enabled: z.boolean() }).optional(),
  allow_force_pushes: z.object({ enabled: z.boolean() }).optional(),
});
const ruleSchema = z.object({ type: z.string(), parameters: z.record(z.string(), z.unknown()).optional() });

/**
 * Source facts from GitHub's REST API: branch protection and rulesets, pull-request reviews,
 * commit signatures (verified by gatehouse against its own trusted signers from the signature and
 * payload GitHub returns, not by GitHub's verdict), the build configuration at the commit, and the
 * CI identity token's claims tying the job to repository, ref and commit.
 */
export class GitHubProvider extends HostedProvider {
  constructor(options: HostedProviderOptions) {
    super(options, {
      kind: 'github',
      name: 'GitHub',
      path: /^[\w.-]+\/[\w.-]+$/,
      notAPath: 'not an owner/name repository URI',
      headers: { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' },
    });
  }

  protected override async establish(
    slug: string,
    claim: SourceClaim,
    protections: readonly SourceProtectionRecord[],
  ): Promise<SourceVerification> {
    const { repository, commit } = claim;
    const repo = `repos/${slug}`;
    const c = await this.api.get(`${repo}/commits/${commit}`, commitSchema);
    if (c === undefined || c.sha !== commit) throw noSuchCommit(claim);
    const store = this.options.store;
    const refs: SourceRefFact[] = [];
    const isAncestor = async (a: string, b: string): Promise<boolean> => {
      if (a === b) return true;
      const cmp = await this.api.get(`${repo}/compare/${a}...${b}`, compareSchema);
      return cmp?.status === 'ahead' || cmp?.status === 'identical';
    };
    for (const b of await this.api.list(`${repo}/branches?protected=true&per_page=100`, branchSchema)) {
      const ref = `refs/heads/${b.name}`;
      if (!protections.some((p) => refMatches(p.ref, ref))) continue;
      const seen = await acceptHead(store, isAncestor, repository, ref, 'branch', b.commit.sha);
      refs.push({
        ...refFact(ref, 'branch', b.commit.sha, await isAncestor(commit, b.commit.sha), seen),
        ...(await this.#hostProtection(repo, b.name)),
      });
    }

    // Reviews of the pull requests that brought the commit in; the latest review per user counts.
    const prs = await this.api.list(`${repo}/commits/${commit}/pulls?per_page=100`, pullSchema);
    const approvals: SourceApproval[] = [];
    let reviewedCommit: string | undefined;
    const authorLogins = new Set<string>([c.author?.login ?? ''].filter((x) => x !== ''));
    for (const pr of prs) {
      const inPr = pr.head.sha === commit || pr.merge_commit_sha === commit;
      if (!inPr) continue;
      const prAuthor = pr.user?.login;
      const latest = new Map<string, z.infer<typeof reviewSchema>>();
      for (const r of await this.api.list(`${repo}/pulls/${pr.number}/reviews?per_page=100`, reviewSchema)) {
        if (r.user !== null && r.state !== 'COMMENTED' && r.state !== 'PENDING') latest.set(r.user.login, r);
      }
      for (const [login, r] of latest) {
        if (r.state !== 'APPROVED' || r.commit_id === null) continue;
        approvals.push({
          reviewer: login,
          commit: r.commit_id,
          // An approval counts for the commit when it is of the PR's final head (not a stale one).
          exact: r.commit_id === pr.head.sha,
          byAuthor: login === prAuthor || authorLogins.has(login),
          via: 'github-review',
          ...(r.submitted_at === undefined ? {} : { at: r.submitted_at }),
        });
      }
      reviewedCommit ??= pr.head.sha;
    }
    const independent = approvals.filter((a) => !a.byAuthor);
    const exact = new Set(independent.filter((a) => a.exact).map((a) => a.reviewer));
    const any = new Set(independent.map((a) => a.reviewer));
    if (exact.size === 0) reviewedCommit = independent[0]?.commit;

    const configPath = this.configPath(claim);
    return establishedSource({
      provider: 'github',
      repository,
      commit,
      problems: [],
      refs,
      author: {
        ...(c.commit.author === null ? {} : { name: c.commit.author.name, email: c.commit.author.email }),
        ...(c.author === null ? {} : { login: c.author.login }),
      },
      approvals,
      independentApprovals: { exact: exact.size, any: any.size },
      selfApproved: approvals.some((a) => a.byAuthor && a.exact),
      signature: await this.#signature(c.commit.verification, repository),
      buildConfig: {
        path: configPath,
        digestAt: async (ref) => {
          const f = await this.api.get(`${repo}/contents/${configPath}?ref=${ref}`, contentSchema);
          return f === undefined
            ? undefined
            : sha256Hex(Buffer.from(f.content.replace(/\s+/g, ''), 'base64'));
        },
      },
      reviewedCommit,
    });
  }

  protected override otherRepository(t: Readonly<Record<string, unknown>>, slug: string): string | undefined {
    return typeof t.repository !== 'string' || t.repository.toLowerCase() !== slug.toLowerCase()
      ? `repository ${String(t.repository)}`
      : undefined;
  }

  protected override sameRef(t: Readonly<Record<string, unknown>>, ref: string): boolean {
    return t.ref === ref;
  }

  protected override runOf(t: Readonly<Record<string, unknown>>): string {
    return `run ${String(t.run_id ?? '?')} of ${String(t.workflow_ref ?? t.job_workflow_ref ?? '?')}`;
  }

  async #hostProtection(repo: string, branch: string): Promise<Partial<SourceRefFact>> {
    const classic = await this.api.get(
      `${repo}/branches/${encodeURIComponent(branch)}/protection`,
      protectionSchema,
    );
    const rules = await this.api.list(
      `${repo}/rules/branches/${encodeURIComponent(branch)}?per_page=100`,
      ruleSchema,
    );
    const pr = rules.find((r) => r.type === 'pull_request');
    const fromRules = Number(pr?.parameters?.required_approving_review_count ?? 0);
    return {
      host: {
        requiredApprovals: Math.max(
          classic?.required_pull_request_reviews?.required_approving_review_count ?? 0,
          fromRules,
        ),
        signedCommits:
          classic?.required_signatures?.enabled === true ||
          rules.some((r) => r.type === 'required_signatures'),
        forcePushAllowed:
          classic?.allow_force_pushes?.enabled === true && !rules.some((r) => r.type === 'non_fast_forward'),
      },
    };
  }

  async #signature(
    verification: z.infer<typeof commitSchema>['commit']['verification'],
    repository: string,
  ): Promise<SourceVerification['signature']> {
    if (verification === undefined || verification.signature === null || verification.payload === null) {
      return {
        present: false,
        trusted: false,
        ...(verification === undefined ? {} : { detail: verification.reason }),
      };
    }
    const format = signatureFormat(verification.signature);
    if (format !== 'ssh' && format !== 'gpg')
      return { present: true, trusted: false, detail: `unsupported signature (${verification.reason})` };
    const signers = await this.options.store.signers(repository);
    try {
      const ok =
        format === 'ssh'
          ? await verifySshSignature(signers, 'git', verification.signature, verification.payload)
          : await verifyGpgSignature(signers, verification.signature, verification.payload);
      return {
        present: true,
        format,
        trusted: true,
        signer: ok.principal,
        keyId: ok.keyId,
        detail: `GitHub: ${verification.reason}`,
      };
    } catch (e) {
      return {
        present: true,
        format,
        trusted: false,
        detail: `${describeError(e)}; GitHub: ${verification.reason}`,
      };
    }
  }
}
