/**
 * Projects, registered centrally by the security role: a name (the build identity), where its
 * source must come from, the policy it is held to and the runner pools that may build it. The
 * developer's `gatehouse.yaml` and `run --project` only name which registration to ask for; a
 * name nobody registered gets no job at all.
 */
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { SecurityActLedger, type VerifiedAct } from '../signing/act-ledger.ts';
import type { SecuritySignature, TrustedKey } from '../signing/security-act.ts';
import type { SecurityActStore } from '../store/store.ts';

/** A project name: also the last segment of its build identity. */
export const PROJECT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** A runner pool name. */
export const POOL_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** A policy name. */
const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const projectContentSchema = z.strictObject({
  /**
   * Where the source must come from: one repository (by its canonical URI, as the source stage
   * derives it), or explicitly any directory, whose builds are then marked unverified.
   */
  source: z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('git'), repository: z.string().min(1).max(4096) }),
    z.strictObject({ kind: z.literal('unverified-directory') }),
  ]),
  policy: z.string().regex(POLICY_NAME),
  /** Runner pools whose hosts may build the project. */
  pools: z.array(z.string().regex(POOL_NAME)).min(1).max(64),
});

/** What a registration says. */
export type ProjectContent = z.infer<typeof projectContentSchema>;

/** A project as registered: the latest version of its registration, verified. */
export interface ProjectRegistration extends ProjectContent {
  name: string;
  version: number;
  /** Key id of the security key that signed this version. */
  actor: string;
  registeredAt: string;
}

/** Parse a registration's content. @throws GatehouseError BAD_INPUT naming the field */
export function parseProjectContent(input: unknown, where: string): ProjectContent {
  const r = projectContentSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new GatehouseError('BAD_INPUT', `project ${i?.path.join('.') || 'registration'}: ${i?.message}`, {
      where,
    });
  }
  return r.data;
}

/** The central project registrations, kept as versioned security acts. */
export class ProjectRegistry {
  readonly #ledger: SecurityActLedger;

  constructor(options: { acts: SecurityActStore; trustedKeys: readonly TrustedKey[] }) {
    this.#ledger = new SecurityActLedger(options);
  }

  /**
   * Register a project, or publish the next version of its registration.
   * @throws GatehouseError BAD_INPUT, SIGNATURE_INVALID, CONFLICT (not exactly the next version)
   */
  async register(
    name: string,
    version: number,
    content: unknown,
    sig: SecuritySignature,
  ): Promise<ProjectRegistration> {
    if (!PROJECT_NAME.test(name))
      throw new GatehouseError(
        'BAD_INPUT',
        `project name '${name.slice(0, 80)}' must match ${PROJECT_NAME.source}`,
      );
    const parsed = parseProjectContent(content, `project ${name}`);
    return registrationOf(
      await this.#ledger.publish({ kind: 'project', name, version, content: parsed }, sig),
    );
  }

  /** The version a new registration of `name` must carry. */
  nextVersion(name: string): Promise<number> {
    return this.#ledger.nextVersion('project', name);
  }

  /** A project's registration, verified; undefined when it is not registered. @throws SIGNATURE_INVALID */
  async get(name: string): Promise<ProjectRegistration | undefined> {
    const act = await this.#ledger.latest('project', name);
    return act === undefined ? undefined : registrationOf(act);
  }

  /**
   * A project's registration, or the refusal of a job for an unregistered one.
   * @throws GatehouseError NOT_FOUND, SIGNATURE_INVALID
   */
  async require(name: string): Promise<ProjectRegistration> {
    const found = await this.get(name);
    if (found === undefined)
      throw new GatehouseError(
        'NOT_FOUND',
        `project '${name.slice(0, 80)}' is not registered: the security role registers it with \`gatehouse project register\``,
      );
    return found;
  }

  /** Every registered project, by name. */
  async list(): Promise<ProjectRegistration[]> {
    return (await this.#ledger.listLatest('project')).map(registrationOf);
  }
}

function registrationOf(v: VerifiedAct): ProjectRegistration {
  return {
    name: v.act.name,
    version: v.act.version,
    ...parseProjectContent(v.act.content, `project ${v.act.name}`),
    actor: v.actor,
    registeredAt: v.createdAt,
  };
}
