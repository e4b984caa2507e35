import { fileURLToPath } from 'node:url';
import { GatehouseError } from '../../common/errors.ts';
import { resolveHome } from '../../home/home.ts';
import { addSigner, protectRef, refPattern } from '../../source/admin.ts';
import { git, OBJECT_ID } from '../../source/git.ts';
import { canonicalRepositoryUri } from '../../source/local-git-provider.ts';
import { recordReview } from '../../source/review.ts';
import { verifySubmittedSource } from '../../source/verify-submission.ts';
import { sourceProviders } from '../../source/wiring.ts';
import type { SourceProtectionRecord } from '../../store/store.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { withHome } from '../home-access.ts';
import { readTextFile } from '../input-files.ts';
import { green, makeOutput, red } from '../output.ts';

const USAGE = usageOf('source');

const options = {
  ...commonOptions,
  branch: { type: 'string' },
  tag: { type: 'string' },
  approvals: { type: 'string' },
  signed: { type: 'boolean' },
  'allow-self-approval': { type: 'boolean' },
  'stale-approvals': { type: 'boolean' },
  'build-config-unchanged': { type: 'boolean' },
  'accept-head': { type: 'boolean' },
  reviewer: { type: 'string' },
  key: { type: 'string' },
  principal: { type: 'string' },
  'ssh-key': { type: 'string' },
  'gpg-key': { type: 'string' },
  repo: { type: 'string' },
  project: { type: 'string', multiple: true },
} as const;

function refOf(values: { branch?: string | undefined; tag?: string | undefined }): string {
  if ((values.branch === undefined) === (values.tag === undefined)) {
    throw new UsageError(`give one of --branch or --tag\nusage: ${USAGE}`);
  }
  return values.branch !== undefined
    ? refPattern('branch', values.branch)
    : refPattern('tag', values.tag ?? '');
}

/** `gatehouse source …`: central source protection, reviews and trusted signers. */
export async function sourceCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, options, { min: 1, max: 3, usage: USAGE });
  const out = makeOutput(values.json === true);
  const [sub, a, b] = positionals;
  return withHome(resolveHome(values.home), async (home) => {
    const store = home.store.source;
    switch (sub) {
      case 'protect': {
        if (a === undefined) throw new UsageError(`usage: ${USAGE}`);
        const approvals = values.approvals ?? '1';
        if (!/^\d{1,2}$/.test(approvals)) throw new UsageError('--approvals must be a whole number');
        const rule: SourceProtectionRecord['rule'] = {
          minApprovals: Number(approvals),
          staleApprovals: values['stale-approvals'] === true,
          forbidSelfApproval: values['allow-self-approval'] !== true,
          signedCommits: values.signed === true,
          buildConfigUnchanged: values['build-config-unchanged'] === true,
          ...(values.project === undefined ? {} : { projects: values.project }),
        };
        const ref = refOf(values);
        const r = await protectRef(store, a, ref, rule, { acceptHead: values['accept-head'] === true });
        out.document({ repository: r.repository, ref, rule, accepted: r.accepted });
        out.line(`protected ${ref} of ${r.repository}`);
        for (const h of r.accepted) out.line(`  accepted ${h.ref} at ${h.head}`);
        return EXIT.ok;
      }
      case 'unprotect': {
        if (a === undefined) throw new UsageError(`usage: ${USAGE}`);
        const uri = await canonicalRepositoryUri(a);
        const ref = refOf(values);
        const removed = await store.unprotect(uri, ref);
        if (!removed) throw new GatehouseError('NOT_FOUND', `${ref} of ${uri} is not protected`);
        out.document({ repository: uri, ref, removed });
        out.line(`unprotected ${ref} of ${uri}`);
        return EXIT.ok;
      }
      case 'approve': {
        if (a === undefined || b === undefined || values.reviewer === undefined || values.key === undefined) {
          throw new UsageError(`usage: ${USAGE}`);
        }
        const uri = await canonicalRepositoryUri(a);
        if (!uri.startsWith('file://'))
          throw new GatehouseError('BAD_INPUT', 'reviews are recorded for local repositories');
        const commit = (
          await git(fileURLToPath(uri), ['rev-parse', '--verify', '--end-of-options', `${b}^{commit}`])
        ).trim();
        if (!OBJECT_ID.test(commit))
          throw new GatehouseError('BAD_INPUT', `'${b}' is not a commit of ${uri}`);
        const review = await recordReview({
          store,
          repository: uri,
          commit,
          reviewer: values.reviewer,
          keyFile: values.key,
        });
        out.document(review);
        out.line(`${values.reviewer} approved ${commit} of ${uri} (review ${review.id.slice(0, 12)})`);
        return EXIT.ok;
      }
      case 'signers': {
        if (a === 'add') {
          if (
            values.principal === undefined ||
            (values['ssh-key'] === undefined) === (values['gpg-key'] === undefined)
          ) {
            throw new UsageError(`usage: ${USAGE}`);
          }
          const format = values['ssh-key'] !== undefined ? 'ssh' : 'gpg';
          const key = await readTextFile(values['ssh-key'] ?? values['gpg-key'] ?? '', 'key file');
          const s = await addSigner(store, {
            principal: values.principal,
            format,
            key,
            ...(values.repo === undefined ? {} : { repository: values.repo }),
          });
          out.document({
            id: s.id,
            principal: s.principal,
            format: s.format,
            repository: s.repository ?? null,
          });
          out.line(
            `trusted ${s.format} key ${s.id} of ${s.principal}${s.repository === undefined ? '' : ` for ${s.repository}`}`,
          );
          return EXIT.ok;
        }
        if (a === 'remove' && b !== undefined) {
          const scope = values.repo === undefined ? undefined : await canonicalRepositoryUri(values.repo);
          if (!(await store.removeSigner(b, scope)))
            throw new GatehouseError('NOT_FOUND', `key ${b} is not trusted`);
          out.document({ id: b, removed: true });
          out.line(`no longer trusted: ${b}`);
          return EXIT.ok;
        }
        if (a === 'list') {
          const all = await store.signers();
          out.document({
            signers: all.map((s) => ({
              id: s.id,
              principal: s.principal,
              format: s.format,
              repository: s.repository ?? null,
            })),
          });
          for (const s of all)
            out.line(
              `${s.format}  ${s.id}  ${s.principal}${s.repository === undefined ? '' : `  ${s.repository}`}`,
            );
          return EXIT.ok;
        }
        throw new UsageError(`usage: ${USAGE}`);
      }
      case 'status': {
        const uri = a === undefined ? undefined : await canonicalRepositoryUri(a);
        const rules = await store.protections(uri);
        const rows = [];
        for (const r of rules) rows.push({ ...r, head: (await store.refHead(r.repository, r.ref)) ?? null });
        out.document({ protections: rows });
        for (const r of rows) {
          out.line(
            `${r.repository}  ${r.ref}  approvals ${r.rule.minApprovals}${r.rule.signedCommits ? ', signed' : ''}${r.rule.forbidSelfApproval ? ', no self-approval' : ''}${r.rule.buildConfigUnchanged ? ', build config unchanged' : ''}${r.head?.rewrittenTo === undefined ? '' : red(`  REWRITTEN to ${r.head.rewrittenTo}`)}`,
          );
        }
        return EXIT.ok;
      }
      case 'verify': {
        if (a === undefined || b === undefined) throw new UsageError(`usage: ${USAGE}`);
        const uri = await canonicalRepositoryUri(a);
        const commit = uri.startsWith('file://')
          ? (
              await git(fileURLToPath(uri), ['rev-parse', '--verify', '--end-of-options', `${b}^{commit}`])
            ).trim()
          : b;
        const v = await verifySubmittedSource(sourceProviders(home.store, home.config), {
          kind: 'git',
          uri,
          commit,
          dirty: false,
          pinned: false,
          treeDigest: '0'.repeat(64),
        });
        // Not a build: there is no tree to compare, so only the repository's own facts count.
        v.violations = v.violations.filter((x) => x.requirement !== 'tree');
        delete v.treeMatches;
        v.problems = v.problems.filter((p) => !p.startsWith("the job's workspace"));
        out.document(v);
        const ok = v.verified && v.violations.length === 0;
        out.line(`${ok ? green('VERIFIED') : red('REFUSED')}  ${uri}  ${commit}`);
        for (const x of v.violations) out.line(`  ${red('•')} [${x.requirement}] ${x.message}`);
        for (const p of v.problems) out.line(`  ! ${p}`);
        return ok ? EXIT.ok : EXIT.denied;
      }
      default:
        throw new UsageError(`unknown source command '${sub ?? ''}'\nusage: ${USAGE}`);
    }
  });
}
