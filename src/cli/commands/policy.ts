import { GatehouseError } from '../../common/errors.ts';
import { HttpControlPlane } from '../../control-plane/http-control-plane.ts';
import { homePaths, openHome, resolveHome } from '../../home/home.ts';
import { loadSecuritySigner, securityKeyPath } from '../../home/security-role.ts';
import { EVIDENCE_SUBMODS, type EvidenceType, parsePolicy } from '../../policy/policy.ts';
import { type PolicyDecision, type PolicyInput, sbomCreatedAt } from '../../policy/policy-engine.ts';
import { engineForPolicy, policyAct } from '../../policy/policy-service.ts';
import { readSbom } from '../../sbom/read.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import type { PolicyVersionRecord } from '../../store/store.ts';
import { parseVex } from '../../vuln/vex.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT, exitCodeOfOutcome } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { readJsonFile, readTextFile } from '../input-files.ts';
import { bold, dim, green, makeOutput, red, yellow } from '../output.ts';

const USAGE = usageOf('policy');

function wholeNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d{1,12}$/.test(text) || n < 1)
    throw new UsageError(`${flag} must be a whole number from 1\nusage: ${USAGE}`);
  return n;
}

const readText = (path: string, what: string): Promise<string> => readTextFile(path, what, 'NOT_FOUND');
const readJson = (path: string, what: string): Promise<unknown> =>
  readJsonFile(path, what, { unreadable: 'NOT_FOUND' });

/**
 * `gatehouse policy`: the security role publishes signed policy versions and assigns them to
 * projects; anyone can read them and try an SBOM against them.
 */
export async function policyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      key: { type: 'string' },
      server: { type: 'string' },
      version: { type: 'string' },
      sbom: { type: 'string' },
      policy: { type: 'string' },
      project: { type: 'string' },
      facts: { type: 'string' },
      vex: { type: 'string', multiple: true },
      'allow-empty': { type: 'boolean' },
    },
    { min: 1, max: 3, usage: USAGE },
  );
  const [sub, ...rest] = positionals;
  const out = makeOutput(values.json === true);
  const root = resolveHome(values.home);
  const keyPath = values.key ?? securityKeyPath(homePaths(root).keys);
  const print = (r: PolicyVersionRecord) =>
    out.line(
      `${r.name} version ${r.version}  sha256:${r.digest.slice(0, 12)}  published ${r.publishedAt}  by key ${r.keyId.slice(0, 12)}`,
    );

  switch (sub) {
    case 'push': {
      const [file] = rest;
      if (file === undefined || rest.length !== 1) throw new UsageError(`usage: ${USAGE}`);
      const text = await readText(file, 'policy');
      // Check locally first, so that a mistake is reported with its line before anything is sent.
      const { name } = parsePolicy(text, file);
      const allowEmpty = values['allow-empty'] === true;
      const signer = await loadSecuritySigner(keyPath, { home: root });
      // The signature covers the version too: it is exactly the next one, or what --version says.
      const explicit = values.version === undefined ? undefined : wholeNumber(values.version, '--version');
      let record: PolicyVersionRecord;
      if (values.server !== undefined) {
        const token = process.env.GATEHOUSE_API_TOKEN;
        const client = new HttpControlPlane({
          url: values.server,
          ...(token === undefined || token === '' ? {} : { apiToken: token }),
        });
        const version = explicit ?? (await client.latestPolicyVersion(name)) + 1;
        record = await client.publishPolicy(
          text,
          version,
          await signSecurityAct(policyAct(name, version, text), signer),
          { allowEmpty },
        );
      } else {
        const home = await openHome(root);
        try {
          const version = explicit ?? (await home.policies.nextVersion(name));
          const sig = await signSecurityAct(policyAct(name, version, text), signer);
          record = await home.policies.publish(text, version, sig, file, { allowEmpty });
        } finally {
          await home.close();
        }
      }
      out.document(record);
      out.line(
        `${green('published')} ${bold(record.name)} version ${record.version}  sha256:${record.digest}`,
      );
      return EXIT.ok;
    }
    case 'show':
    case 'history': {
      const name = rest[0] ?? 'default';
      if (rest.length > 1) throw new UsageError(`usage: ${USAGE}`);
      const home = await openHome(root);
      try {
        if (sub === 'history') {
          const versions = await home.policies.history(name);
          if (versions.length === 0)
            throw new GatehouseError('NOT_FOUND', `no published policy named ${name}`);
          out.document({ name, versions: versions.map(({ text: _t, ...r }) => r) });
          for (const r of versions) print(r);
          return EXIT.ok;
        }
        const version = values.version === undefined ? undefined : wholeNumber(values.version, '--version');
        const loaded = await home.policies.load(name, version);
        out.document(loaded.record);
        print(loaded.record);
        out.line();
        out.line(loaded.record.text.trimEnd());
        return EXIT.ok;
      } finally {
        await home.close();
      }
    }
    case 'assign': {
      const [project, name] = rest;
      if (project === undefined || name === undefined) throw new UsageError(`usage: ${USAGE}`);
      const signer = await loadSecuritySigner(keyPath, { home: root });
      const home = await openHome(root);
      try {
        // A project's policy is part of its registration: assigning one publishes its next version.
        await home.policies.load(name);
        const {
          name: _n,
          version,
          actor: _a,
          registeredAt: _r,
          ...content
        } = await home.policies.projects.require(project);
        const next = { ...content, policy: name };
        const act = { kind: 'project', name: project, version: version + 1, content: next } as const;
        await home.policies.projects.register(project, version + 1, next, await signSecurityAct(act, signer));
      } finally {
        await home.close();
      }
      out.document({ project, policy: name });
      out.line(`${bold(project)} is held to policy ${bold(name)}`);
      return EXIT.ok;
    }
    case 'check':
      if (rest.length > 0) throw new UsageError(`usage: ${USAGE}`);
      return check(values, root, out);
    default:
      throw new UsageError(`unknown policy command '${sub ?? ''}'\nusage: ${USAGE}`);
  }
}

async function check(
  values: { sbom?: string; policy?: string; project?: string; facts?: string; vex?: string[] },
  root: string,
  out: ReturnType<typeof makeOutput>,
): Promise<number> {
  if (values.sbom === undefined) throw new UsageError(`check needs --sbom FILE\nusage: ${USAGE}`);
  const raw = await readJson(values.sbom, 'SBOM');
  const sbom = readSbom(raw, values.sbom);
  const home = await openHome(root);
  try {
    const project = values.project ?? sbom.subject?.name ?? 'policy-check';
    const extraVex = [];
    for (const f of values.vex ?? []) extraVex.push(...parseVex(await readJson(f, 'VEX document'), f));
    // The facts a build brings: from --facts, else what every gated build establishes.
    const assumed: string[] = [];
    let buildFacts: Pick<PolicyInput, 'attestation' | 'source' | 'build'>;
    if (values.facts !== undefined) {
      const f = (await readJson(values.facts, 'facts file')) as Record<string, unknown>;
      buildFacts = {};
      if (f.attestation !== undefined)
        buildFacts.attestation = withSubmods(f.attestation as NonNullable<PolicyInput['attestation']>);
      if (f.source !== undefined) buildFacts.source = f.source as NonNullable<PolicyInput['source']>;
      if (f.build !== undefined) buildFacts.build = f.build as NonNullable<PolicyInput['build']>;
    } else {
      buildFacts = {
        attestation: withSubmods({ verified: true, evidenceTypes: ['software-measurement', 'tpm'] }),
        build: { slsaBuildLevel: 3 },
      };
      assumed.push(
        'a verified runner attestation with software-measurement and tpm evidence',
        'SLSA Build L3',
        'no source facts',
      );
    }
    const matched = await home.policies.match(sbom.components);
    const input: PolicyInput = {
      project,
      components: sbom.components,
      findings: matched.findings,
      unmatched: matched.unmatched,
      ...buildFacts,
      subjects: [
        sbom.subject?.purl,
        sbom.subject?.sha256 === undefined ? undefined : `sha256:${sbom.subject.sha256}`,
      ].filter((x): x is string => x !== undefined),
      vex: [...(await home.policies.vexStatements()), ...extraVex],
    };
    const created =
      typeof raw === 'object' && raw !== null ? sbomCreatedAt(raw as Record<string, unknown>) : undefined;
    if (created !== undefined) input.sbom = { createdAt: created };
    let decision: PolicyDecision;
    let policyName: string;
    if (values.policy !== undefined) {
      const policy = parsePolicy(await readText(values.policy, 'policy'), values.policy);
      policyName = `${policy.name} (from ${values.policy}, unpublished)`;
      decision = await engineForPolicy(policy).evaluate(input);
    } else {
      // The same engine the gate asks: the project's assigned policy, verified, with central VEX.
      policyName = await home.policies.policyNameOf(project);
      decision = await home.policies.engine().evaluate(input);
    }
    out.document({ project, policy: policyName, ...decision, findings: matched.findings, assumed });
    const colour = decision.outcome === 'allow' ? green : decision.outcome === 'deny' ? red : yellow;
    out.line(
      `${colour(decision.outcome.toUpperCase())}  ${project}  policy ${policyName} sha256:${decision.policyDigest.slice(0, 12)}`,
    );
    out.line(dim(`${sbom.components.length} components, ${matched.findings.length} findings`));
    for (const r of decision.reasons) out.line(`  • [${r.rule}] ${r.message}`);
    for (const w of decision.warnings) out.line(yellow(`  ! [${w.rule}] ${w.message}`));
    for (const s of decision.suppressed ?? [])
      out.line(
        dim(`  ~ ${s.vulnId ?? s.rule ?? ''} ${s.purl ?? ''} set aside by ${s.by} ${s.id}: ${s.reason}`),
      );
    if (assumed.length > 0) out.line(dim(`  assumed (no --facts): ${assumed.join('; ')}`));
    return exitCodeOfOutcome(decision.outcome);
  } finally {
    await home.close();
  }
}

/**
 * Facts that name evidence types without submods describe a verified token: each named type's
 * submod is taken as affirming (a facts file may give `submods` to say otherwise).
 */
function withSubmods(a: NonNullable<PolicyInput['attestation']>): NonNullable<PolicyInput['attestation']> {
  if (a.submods !== undefined || !Array.isArray(a.evidenceTypes)) return a;
  const submods: Record<string, string> = {};
  for (const t of a.evidenceTypes)
    if (Object.hasOwn(EVIDENCE_SUBMODS, t)) submods[EVIDENCE_SUBMODS[t as EvidenceType]] = 'affirming';
  return { ...a, submods };
}
