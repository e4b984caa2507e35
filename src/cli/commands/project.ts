import { homePaths, openHome, resolveHome } from '../../home/home.ts';
import { LOCAL_POOL } from '../../home/runner-host.ts';
import { loadSecuritySigner, securityKeyPath } from '../../home/security-role.ts';
import type { ProjectRegistration } from '../../policy/projects.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import { canonicalRepositoryUri } from '../../source/local-git-provider.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { bold, dim, makeOutput, type Output } from '../output.ts';

const USAGE = usageOf('project');

function print(out: Output, p: ProjectRegistration): void {
  const source = p.source.kind === 'git' ? p.source.repository : 'any directory (unverified)';
  out.line(
    `${bold(p.name)}  version ${p.version}  source ${source}  policy ${p.policy}  pools ${p.pools.join(',')}  ${dim(`by ${p.actor.slice(0, 12)} ${p.registeredAt}`)}`,
  );
}

/**
 * `gatehouse project`: the security role registers projects centrally (name → source, policy,
 * runner pools); a job for an unregistered project is refused. Each registration is a signed act,
 * published as exactly the next version.
 */
export async function projectCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      repository: { type: 'string' },
      'unverified-directory': { type: 'boolean' },
      policy: { type: 'string' },
      pool: { type: 'string', multiple: true },
      key: { type: 'string' },
    },
    { min: 1, max: 2, usage: USAGE },
  );
  const [sub, name] = positionals;
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  if (sub === 'register') {
    if (name === undefined) throw new UsageError(`project register needs a NAME\nusage: ${USAGE}`);
    if ((values.repository === undefined) === (values['unverified-directory'] !== true))
      throw new UsageError(`give exactly one of --repository and --unverified-directory\nusage: ${USAGE}`);
    const source =
      values.repository === undefined
        ? { kind: 'unverified-directory' as const }
        : { kind: 'git' as const, repository: await canonicalRepositoryUri(values.repository) };
    const content = { source, policy: values.policy ?? 'default', pools: values.pool ?? [LOCAL_POOL] };
    const signer = await loadSecuritySigner(values.key ?? securityKeyPath(homePaths(root).keys), {
      home: root,
    });
    const home = await openHome(root);
    try {
      // The policy must exist: a registration that holds a project to nothing would deny it forever.
      await home.policies.load(content.policy);
      const version = await home.policies.projects.nextVersion(name);
      const sig = await signSecurityAct({ kind: 'project', name, version, content }, signer);
      const registered = await home.policies.projects.register(name, version, content, sig);
      out.document(registered);
      print(out, registered);
      return EXIT.ok;
    } finally {
      await home.close();
    }
  }
  if (sub !== 'list' && sub !== 'show')
    throw new UsageError(`unknown project command '${sub ?? ''}'\nusage: ${USAGE}`);
  const home = await openHome(root);
  try {
    if (sub === 'show') {
      if (name === undefined) throw new UsageError(`project show needs a NAME\nusage: ${USAGE}`);
      const p = await home.policies.projects.require(name);
      out.document(p);
      print(out, p);
      return EXIT.ok;
    }
    const all = await home.policies.projects.list();
    out.document({ projects: all });
    if (all.length === 0) out.line('no project is registered');
    for (const p of all) print(out, p);
    return EXIT.ok;
  } finally {
    await home.close();
  }
}
