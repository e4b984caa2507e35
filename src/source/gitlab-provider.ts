import { z } from 'zod';
import { sha256Hex } from '../common/encoding.ts';
import type { SourceProtectionRecord } from '../store/store.ts';
import { OBJECT_ID } from './git.ts';
import { HostedProvider, type HostedProviderOptions } from './hosted-provider.ts';
import { parseSshPublicKey } from './signers.ts';
import type { SourceApproval, SourceClaim, SourceRefFact, SourceVerification } from './source-provider.ts';
import { refMatches } from './source-provider.ts';
import { acceptHead, establishedSource, noSuchCommit, refFact } from './verification.ts';

const commitSchema = z.object({
  id: z.string().regex(OBJECT_ID),
  author_name: z.string(),
  author_email: z.string(),
});
const signatureSchema = z.object({
  signature_type: z.enum(['PGP', 'SSH', 'X509']),
  verification_status: z.string(),
  gpg_key_primary_keyid: z.string().optional(),
  key: z.object({ key: z.string() }).nullable().optional(),
});
const refSchema = z.object({ type: z.enum(['branch', 'tag']), name: z.string() });
const branchSchema = z.object({
  name: z.string(),
  commit: z.object({ id: z.string().regex(OBJECT_ID) }),
  protected: z.boolean(),
});
const protectedBranchSchema = z.object({ name: z.string(), allow_force_push: z.boolean().optional() });
const mergeBaseSchema = z.object({ id: z.string().regex(OBJECT_ID) });
const mrSchema = z.object({
  iid: z.number().int(),
  state: z.string(),
  author: z.object({ username: z.string() }),
  sha: z.string().regex(OBJECT_ID),
  merge_commit_sha: z.string().nullable().optional(),
  squash_commit_sha: z.string().nullable().optional(),
});
const approvalsSchema = z.object({
  approved_by: z.array(z.object({ user: z.object({ username: z.string() }) })),
});
const ruleSchema = z.object({ approvals_required: z.number().int() });
const fileSchema = z.object({ encoding: z.literal('base64'), content: z.string() });

/**
 * Source facts from GitLab's REST API (v4): protected branches, the branches holding the commit,
 * merge-request approvals, GitLab's commit-signature verdict matched against gatehouse's trusted
 * keys, the build configuration at the commit, and the CI id_token's claims.
 */
export class GitLabProvider extends HostedProvider {
  constructor(options: HostedProviderOptions) {
    super(options, {
      kind: 'gitlab',
      name: 'GitLab',
      path: /^[\w.-]+(\/[\w.-]+)+$/,
      notAPath: 'not a group/project repository URI',
    });
  }

  protected override async establish(
    path: string,
    claim: SourceClaim,
    protections: readonly SourceProtectionRecord[],
  ): Promise<SourceVerification> {
    const { repository, commit } = claim;
    const project = `projects/${encodeURIComponent(path)}`;
    const c = await this.api.get(`${project}/repository/commits/${commit}`, commitSchema);
    if (c === undefined || c.id !== commit) throw noSuchCommit(claim);
    const store = this.options.store;
    const isAncestor = async (a: string, b: string): Promise<boolean> => {
      if (a === b) return true;
      const base = await this.api.get(
        `${project}/repository/merge_base?refs[]=${a}&refs[]=${b}`,
        mergeBaseSchema,
      );
      return base?.id === a;
    };
    const holding = new Set(
      (
        await this.api.list(
          `${project}/repository/commits/${commit}/refs?type=branch&per_page=100`,
          refSchema,
        )
      ).map((r) => `refs/heads/${r.name}`),
    );
    const refs: SourceRefFact[] = [];
    for (const pb of await this.api.list(
      `${project}/protected_branches?per_page=100`,
      protectedBranchSchema,
    )) {
      const ref = `refs/heads/${pb.name}`;
      if (pb.name.includes('*') || !protections.some((p) => refMatches(p.ref, ref))) continue;
      const b = await this.api.get(
        `${project}/repository/branches/${encodeURIComponent(pb.name)}`,
        branchSchema,
      );
      if (b === undefined) continue;
      const seen = await acceptHead(store, isAncestor, repository, ref, 'branch', b.commit.id);
      refs.push({
        ...refFact(ref, 'branch', b.commit.id, holding.has(ref), seen),
        host: { forcePushAllowed: pb.allow_force_push === true },
      });
    }

    // GitLab approvals belong to a merge request's current head (they are reset on push when the
    // project says so); they cover the commit when it is that head or the MR's merge/squash commit.
    const approvals: SourceApproval[] = [];
    let reviewedCommit: string | undefined;
    for (const mr of await this.api.list(
      `${project}/repository/commits/${commit}/merge_requests?per_page=100`,
      mrSchema,
    )) {
      if (mr.sha !== commit && mr.merge_commit_sha !== commit && mr.squash_commit_sha !== commit) continue;
      const a = await this.api.get(`${project}/merge_requests/${mr.iid}/approvals`, approvalsSchema);
      const rules = await this.api.list(
        `${project}/merge_requests/${mr.iid}/approval_rules?per_page=100`,
        ruleSchema,
      );
      for (const u of a?.approved_by ?? []) {
        approvals.push({
          reviewer: u.user.username,
          commit: mr.sha,
          exact: true,
          byAuthor: u.user.username === mr.author.username,
          via: 'gitlab-approval',
        });
      }
      for (const r of refs)
        r.host = { ...r.host, requiredApprovals: Math.max(0, ...rules.map((x) => x.approvals_required)) };
      reviewedCommit ??= mr.sha;
    }
    const independent = new Set(approvals.filter((x) => !x.byAuthor).map((x) => x.reviewer));

    const configPath = this.configPath(claim);
    return establishedSource({
      provider: 'gitlab',
      repository,
      commit,
      problems: [],
      refs,
      author: { name: c.author_name, email: c.author_email },
      approvals,
      independentApprovals: { exact: independent.size, any: independent.size },
      selfApproved: approvals.some((x) => x.byAuthor),
      signature: await this.#signature(project, commit, repository),
      buildConfig: {
        path: configPath,
        digestAt: async (ref) => {
          const f = await this.api.get(
            `${project}/repository/files/${encodeURIComponent(configPath)}?ref=${ref}`,
            fileSchema,
          );
          return f === undefined ? undefined : sha256Hex(Buffer.from(f.content, 'base64'));
        },
      },
      reviewedCommit,
    });
  }

  protected override otherRepository(t: Readonly<Record<string, unknown>>, path: string): string | undefined {
    return t.project_path !== path ? `project ${String(t.project_path)}` : undefined;
  }

  /** GitLab names the short ref; a full one is taken too. */
  protected override sameRef(t: Readonly<Record<string, unknown>>, ref: string): boolean {
    return `refs/heads/${String(t.ref)}` === ref || t.ref === ref;
  }

  protected override runOf(t: Readonly<Record<string, unknown>>): string {
    return `pipeline ${String(t.pipeline_id ?? '?')}`;
  }

  /** GitLab verifies the signature; gatehouse trusts it only when the key is one of its own signers. */
  async #signature(
    project: string,
    commit: string,
    repository: string,
  ): Promise<SourceVerification['signature']> {
    const s = await this.api.get(`${project}/repository/commits/${commit}/signature`, signatureSchema);
    if (s === undefined) return { present: false, trusted: false };
    const format = s.signature_type === 'SSH' ? 'ssh' : s.signature_type === 'PGP' ? 'gpg' : 'x509';
    const signers = await this.options.store.signers(repository);
    let signer: (typeof signers)[number] | undefined;
    if (format === 'ssh' && s.key?.key !== undefined) {
      let id: string | undefined;
      try {
        id = parseSshPublicKey(s.key.key).fingerprint;
      } catch {
        id = undefined;
      }
      signer = signers.find((x) => x.format === 'ssh' && x.id === id);
    } else if (format === 'gpg' && s.gpg_key_primary_keyid !== undefined) {
      const keyId = s.gpg_key_primary_keyid.toUpperCase();
      signer = signers.find((x) => x.format === 'gpg' && keyId.length >= 16 && x.id.endsWith(keyId));
    }
    const verified = s.verification_status === 'verified';
    if (!verified || signer === undefined) {
      return {
        present: true,
        format,
        trusted: false,
        detail: `GitLab: ${s.verification_status}${signer === undefined ? '; key is not a trusted signer' : ''}`,
      };
    }
    return {
      present: true,
      format,
      trusted: true,
      signer: signer.principal,
      keyId: signer.id,
      detail: 'GitLab: verified',
    };
  }
}
