import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import { PROJECT_CONFIG_FILE } from '../runner/project-config.ts';
import type { SourceProtectionRecord, SourceStore } from '../store/store.ts';
import {
  git,
  gitBytes,
  gitOk,
  OBJECT_ID,
  type ParsedCommit,
  pinnedTreeDigest,
  readCommit,
  readCommitTree,
} from './git.ts';
import { verifyReview } from './review.ts';
import { signatureFormat, type TrustedSigner, verifyGpgSignature, verifySshSignature } from './signers.ts';
import {
  refMatches,
  type SourceApproval,
  type SourceClaim,
  type SourceDescriber,
  type SourceFacts,
  type SourceProvider,
  type SourceRefFact,
  type SourceVerification,
  unverified,
} from './source-provider.ts';
import {
  acceptHead,
  buildConfigPath,
  establishedSource,
  noSuchCommit,
  refFact,
  verifyRegistered,
} from './verification.ts';

async function tryGit(dir: string, args: string[]): Promise<string | undefined> {
  try {
    return (await git(dir, args)).trim();
  } catch {
    return undefined;
  }
}

/** The digest of a file list, independent of the order the files were read in. */
export function treeDigest(files: { path: string; sha256: string }[]): string {
  const lines = files
    .map((f) => `${f.sha256}  ${f.path}\n`)
    .sort()
    .join('');
  return sha256Hex(lines);
}

/**
 * The canonical URI of a repository named by a remote URL or a local path: `file://<realpath>`
 * of the work tree's top level (or of a bare repository), `https://host/owner/name` for remotes.
 */
export async function canonicalRepositoryUri(nameOrPath: string): Promise<string> {
  const scp = /^[\w.-]+@([\w.-]+):(?!\/)(.+?)(?:\.git)?\/?$/.exec(nameOrPath);
  if (scp !== null) return `https://${scp[1]}/${scp[2]}`;
  if (/^(https?|ssh|git):\/\//.test(nameOrPath)) {
    const u = new URL(nameOrPath);
    return `https://${u.host}${u.pathname.replace(/\/+$/, '').replace(/\.git$/, '')}`;
  }
  const path = nameOrPath.startsWith('file://') ? fileURLToPath(nameOrPath) : resolve(nameOrPath);
  if (!existsSync(path)) throw new GatehouseError('BAD_INPUT', `no repository at ${path}`);
  const bare = await tryGit(path, ['rev-parse', '--is-bare-repository']);
  if (bare === undefined) throw new GatehouseError('BAD_INPUT', `${path} is not a git repository`);
  const top =
    bare === 'true'
      ? await tryGit(path, ['rev-parse', '--absolute-git-dir'])
      : await tryGit(path, ['rev-parse', '--show-toplevel']);
  if (top === undefined || top === '')
    throw new GatehouseError('BAD_INPUT', `${path} is not a git repository`);
  return pathToFileURL(realpathSync(top)).href;
}

export interface LocalGitProviderOptions {
  /** Central source configuration: protections, reviews, trusted signers, accepted heads. */
  store?: SourceStore;
  /** Build configuration file name (default `gatehouse.yaml`). */
  buildConfigFile?: string;
}

/**
 * The embedded source provider, over local git repositories. Protected refs, required approvals and
 * trusted signers are configured centrally in the store, never read from the repository; approvals
 * are reviewers' signed records bound to one commit; a protected ref whose history was rewritten
 * since gatehouse last saw it stays refused until an operator accepts its new head.
 * It also describes a local directory for the runner agent.
 */
export class LocalGitProvider implements SourceProvider, SourceDescriber {
  readonly kind = 'local-git' as const;
  readonly #store: SourceStore | undefined;
  readonly #configFile: string;

  constructor(options: LocalGitProviderOptions = {}) {
    this.#store = options.store;
    this.#configFile = options.buildConfigFile ?? PROJECT_CONFIG_FILE;
  }

  handles(repository: string): boolean {
    return repository.startsWith('file:///');
  }

  async describe(dir: string, files: { path: string; sha256: string }[]): Promise<SourceFacts> {
    const abs = resolve(dir);
    const digest = treeDigest(files);
    const inside = await tryGit(abs, ['rev-parse', '--is-inside-work-tree']);
    if (inside !== 'true')
      return { kind: 'directory', uri: pathToFileURL(abs).href, dirty: false, treeDigest: digest };
    const commit = await tryGit(abs, ['rev-parse', '--verify', 'HEAD']);
    const ref = await tryGit(abs, ['symbolic-ref', '-q', 'HEAD']);
    const status = await tryGit(abs, ['status', '--porcelain', '--', '.']);
    const facts: SourceFacts = {
      kind: 'git',
      uri: await localUri(abs),
      dirty: status === undefined || status !== '',
      treeDigest: digest,
    };
    if (commit !== undefined && OBJECT_ID.test(commit)) facts.commit = commit;
    if (ref !== undefined && ref !== '') facts.ref = ref;
    const prefix = await tryGit(abs, ['rev-parse', '--show-prefix']);
    if (prefix !== undefined && prefix !== '') facts.path = prefix.replace(/\/+$/, '');
    return facts;
  }

  async verify(claim: SourceClaim): Promise<SourceVerification> {
    const { repository, commit } = claim;
    if (!this.handles(repository))
      return unverified('local-git', repository, 'not a local repository', commit);
    const store = this.#store;
    if (store === undefined)
      return unverified('local-git', repository, 'no source configuration store', commit);
    return verifyRegistered('local-git', store, claim, (protections) =>
      this.#verify(store, protections, claim),
    );
  }

  async #verify(
    store: SourceStore,
    protections: readonly SourceProtectionRecord[],
    claim: SourceClaim,
  ): Promise<SourceVerification> {
    const { repository, commit } = claim;
    const dir = fileURLToPath(repository);
    if (!OBJECT_ID.test(commit)) throw new GatehouseError('BAD_INPUT', `'${commit}' is not a full commit id`);
    if ((await tryGit(dir, ['cat-file', '-t', commit])) !== 'commit') throw noSuchCommit(claim);
    const parsed = await readCommit(dir, commit);
    const refs = await this.#refs(store, dir, repository, protections, commit);
    const signers = await store.signers(repository);
    const signature = await verifyCommitSignature(parsed, signers);
    const authorIds = new Set([parsed.author.email.toLowerCase()]);
    if (signature.trusted && signature.signer !== undefined) authorIds.add(signature.signer.toLowerCase());

    const problems: string[] = [];
    const approvals: SourceApproval[] = [];
    const ancestry = new Map<string, boolean>();
    for (const row of await store.reviews(repository)) {
      let record: Awaited<ReturnType<typeof verifyReview>>;
      try {
        record = await verifyReview(
          { id: row.id, record: JSON.parse(row.record), signature: row.signature },
          signers,
        );
      } catch (e) {
        problems.push(describeError(e));
        continue;
      }
      if (record.repository !== repository) continue;
      let covers = ancestry.get(record.commit);
      if (covers === undefined) {
        covers =
          record.commit === commit ||
          (await gitOk(dir, ['merge-base', '--is-ancestor', record.commit, commit]));
        ancestry.set(record.commit, covers);
      }
      if (!covers) continue;
      approvals.push({
        reviewer: record.reviewer,
        commit: record.commit,
        exact: record.commit === commit,
        byAuthor: authorIds.has(record.reviewer.toLowerCase()),
        via: 'gatehouse-review',
        at: record.timestamp,
      });
    }
    const independent = approvals.filter((a) => !a.byAuthor);
    const exactReviewers = new Set(independent.filter((a) => a.exact).map((a) => a.reviewer.toLowerCase()));
    const anyReviewers = new Set(independent.map((a) => a.reviewer.toLowerCase()));
    const reviewedCommit =
      exactReviewers.size > 0
        ? commit
        : await newest(
            dir,
            independent.map((a) => a.commit),
            commit,
          );

    const configPath = buildConfigPath(claim, this.#configFile);
    const v = await establishedSource({
      provider: 'local-git',
      repository,
      commit,
      problems,
      refs,
      author: { name: parsed.author.name, email: parsed.author.email },
      approvals,
      independentApprovals: { exact: exactReviewers.size, any: anyReviewers.size },
      selfApproved: approvals.some((a) => a.byAuthor && a.exact),
      signature,
      buildConfig: {
        path: configPath,
        digestAt: (c) =>
          gitBytes(dir, ['cat-file', 'blob', `${c}:${configPath}`]).then(
            (b) => sha256Hex(b),
            () => undefined,
          ),
      },
      reviewedCommit,
    });
    if (claim.treeDigest !== undefined) {
      v.treeMatches = pinnedTreeDigest(await readCommitTree(dir, commit, claim.path)) === claim.treeDigest;
    }
    return v;
  }

  /** Protected refs with their heads; detects and records rewrites against the accepted heads. */
  async #refs(
    store: SourceStore,
    dir: string,
    repository: string,
    protections: readonly SourceProtectionRecord[],
    commit: string,
  ): Promise<SourceRefFact[]> {
    const listing = await git(dir, [
      'for-each-ref',
      '--format=%(refname)%00%(objectname)%00%(*objectname)',
      'refs/heads',
      'refs/tags',
    ]);
    const out: SourceRefFact[] = [];
    for (const line of listing.split('\n')) {
      const [ref, object, peeled] = line.split('\0');
      if (ref === undefined || object === undefined || ref === '') continue;
      if (!protections.some((p) => refMatches(p.ref, ref))) continue;
      const kind = ref.startsWith('refs/tags/') ? 'tag' : 'branch';
      const head = peeled !== undefined && peeled !== '' ? peeled : object;
      const seen = await acceptHead(
        store,
        (a, b) => gitOk(dir, ['merge-base', '--is-ancestor', a, b]),
        repository,
        ref,
        kind,
        head,
      );
      const contains =
        kind === 'tag'
          ? head === commit
          : head === commit || (await gitOk(dir, ['merge-base', '--is-ancestor', commit, head]));
      out.push(refFact(ref, kind, head, contains, seen));
    }
    return out;
  }
}

/** Of several commits that are all ancestors of `tip`, the one nearest to it. */
async function newest(dir: string, commits: string[], tip: string): Promise<string | undefined> {
  let best: { commit: string; distance: number } | undefined;
  for (const c of new Set(commits)) {
    const n = Number((await git(dir, ['rev-list', '--count', `${c}..${tip}`])).trim());
    if (best === undefined || n < best.distance) best = { commit: c, distance: n };
  }
  return best?.commit;
}

/** Verify a commit's signature against the trusted signers. */
export async function verifyCommitSignature(
  parsed: ParsedCommit,
  signers: readonly TrustedSigner[],
): Promise<SourceVerification['signature']> {
  if (parsed.signature === undefined) return { present: false, trusted: false };
  const format = signatureFormat(parsed.signature);
  if (format === undefined) return { present: true, trusted: false, detail: 'unknown signature format' };
  if (format === 'x509')
    return { present: true, format, trusted: false, detail: 'X.509 commit signatures are not trusted' };
  try {
    const ok =
      format === 'ssh'
        ? await verifySshSignature(signers, 'git', parsed.signature, parsed.payload)
        : await verifyGpgSignature(signers, parsed.signature, parsed.payload);
    return { present: true, format, trusted: true, signer: ok.principal, keyId: ok.keyId };
  } catch (e) {
    return { present: true, format, trusted: false, detail: describeError(e) };
  }
}

async function localUri(dir: string): Promise<string> {
  const origin = await tryGit(dir, ['remote', 'get-url', 'origin']);
  try {
    return await canonicalRepositoryUri(origin !== undefined && origin !== '' ? origin : dir);
  } catch {
    return pathToFileURL(dir).href;
  }
}
