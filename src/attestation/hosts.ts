/**
 * Runner hosts, enrolled by the security role: each has its own key (one per host, never shared),
 * belongs to a declared runner pool, and says how its runners attest. A host's signed requests are
 * what lets it claim and attest jobs; revoking it (a new version of its enrollment) ends that.
 */
import type { JWK } from 'jose';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { SecurityActLedger, type VerifiedAct } from '../signing/act-ledger.ts';
import type { SecuritySignature, TrustedKey } from '../signing/security-act.ts';
import type { SecurityActStore, TokenStore } from '../store/store.ts';
import { hostTpmSchema } from './host-tpm-record.ts';
import {
  type ExpectedRequest,
  HOST_REQUEST_TYP,
  proofHost,
  type RequestClaims,
  verifyRequestProof,
} from './request-proof.ts';
import { runnerPublicJwkSchema } from './token.ts';

/** A host name. */
export const HOST_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The verified CI identity's fields a `ci` host's enrollment may restrict. */
export const CI_HOST_CLAIMS = ['repository', 'ref', 'workflow_ref', 'runner_environment', 'subject'] as const;

const hostContentSchema = z.strictObject({
  /** The host's public key (EC P-256); its private half never leaves the host. */
  publicKey: runnerPublicJwkSchema,
  /** The runner pool the host belongs to; projects name the pools that may build them. */
  pool: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  /**
   * How the host's runners attest: `tpm`, or `software` for a pool the security role declares as
   * software-measured (a control plane configured for TPM refuses those all the same), or `ci`
   * for a CI platform's runners (`gatehouse run --server` inside GitHub Actions or GitLab CI):
   * software-measured and, always, with the platform's verified OIDC identity token.
   */
  attestation: z.enum(['tpm', 'software', 'ci']),
  /**
   * For a `ci` host: the CI identities it may build for, as claims of the verified CI token
   * (`repository`, `ref`, `workflow_ref`, `runner_environment`, `subject`) with allowed values (a
   * trailing `*` matches by prefix). A token of another identity is refused, so that the host's
   * key, a CI secret, serves only the pipelines it was enrolled for.
   */
  ci: z
    .strictObject({
      claims: z.partialRecord(z.enum(CI_HOST_CLAIMS), z.array(z.string().min(1).max(1024)).min(1).max(64)),
    })
    .optional(),
  /** A revoked host's requests are refused. */
  revoked: z.boolean().optional(),
  /**
   * The host's own TPM, appraised at enrollment: its AK is the host's identity, its vTPM CA key
   * issues the EK certificates of its runners' vTPMs, its boot PCRs are its reference values.
   */
  tpm: hostTpmSchema.optional(),
});

/** What an enrollment says. */
export type HostContent = z.infer<typeof hostContentSchema>;

/** A host as enrolled: the latest version of its enrollment, verified. */
export interface HostEnrollment extends HostContent {
  name: string;
  version: number;
  actor: string;
  enrolledAt: string;
}

/** Parse an enrollment's content. @throws GatehouseError BAD_INPUT naming the field */
export function parseHostContent(input: unknown, where: string): HostContent {
  const r = hostContentSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new GatehouseError('BAD_INPUT', `host ${i?.path.join('.') || 'enrollment'}: ${i?.message}`, {
      where,
    });
  }
  return { ...r.data, publicKey: { kty: 'EC', crv: 'P-256', x: r.data.publicKey.x, y: r.data.publicKey.y } };
}

/** The enrolled runner hosts, kept as versioned security acts. */
export class HostRegistry {
  readonly #ledger: SecurityActLedger;
  readonly #tokens: TokenStore;

  constructor(options: { acts: SecurityActStore; trustedKeys: readonly TrustedKey[]; tokens: TokenStore }) {
    this.#ledger = new SecurityActLedger(options);
    this.#tokens = options.tokens;
  }

  /**
   * Enroll a host, or publish the next version of its enrollment (a new key, pool, or revoked).
   * @throws GatehouseError BAD_INPUT, SIGNATURE_INVALID, CONFLICT (not exactly the next version)
   */
  async enroll(
    name: string,
    version: number,
    content: unknown,
    sig: SecuritySignature,
  ): Promise<HostEnrollment> {
    if (!HOST_NAME.test(name))
      throw new GatehouseError(
        'BAD_INPUT',
        `host name '${name.slice(0, 80)}' must match ${HOST_NAME.source}`,
      );
    const parsed = parseHostContent(content, `host ${name}`);
    return enrollmentOf(await this.#ledger.publish({ kind: 'host', name, version, content: parsed }, sig));
  }

  /** The version a new enrollment of `name` must carry. */
  nextVersion(name: string): Promise<number> {
    return this.#ledger.nextVersion('host', name);
  }

  /** A host's enrollment, verified; undefined when it was never enrolled. */
  async get(name: string): Promise<HostEnrollment | undefined> {
    const act = await this.#ledger.latest('host', name);
    return act === undefined ? undefined : enrollmentOf(act);
  }

  async list(): Promise<HostEnrollment[]> {
    return (await this.#ledger.listLatest('host')).map(enrollmentOf);
  }

  /**
   * Verify a request signed by a host: enrolled, not revoked, signature by its enrolled key over
   * exactly this request, fresh and unused.
   * @returns the host and the proof's claims
   * @throws GatehouseError UNAUTHORIZED
   */
  async verifyRequest(
    proof: unknown,
    expected: ExpectedRequest,
  ): Promise<{ host: HostEnrollment; claims: RequestClaims }> {
    const name = proofHost(proof);
    const host = HOST_NAME.test(name) ? await this.get(name) : undefined;
    if (host === undefined)
      throw new GatehouseError('UNAUTHORIZED', `runner host '${name.slice(0, 64)}' is not enrolled`);
    if (host.revoked === true)
      throw new GatehouseError(
        'UNAUTHORIZED',
        `runner host '${name}' is revoked (enrollment version ${host.version})`,
      );
    const claims = await verifyRequestProof(
      proof,
      { publicJwk: host.publicKey as JWK, typ: HOST_REQUEST_TYP },
      expected,
      this.#tokens,
    );
    return { host, claims };
  }
}

function enrollmentOf(v: VerifiedAct): HostEnrollment {
  return {
    name: v.act.name,
    version: v.act.version,
    ...parseHostContent(v.act.content, `host ${v.act.name}`),
    actor: v.actor,
    enrolledAt: v.createdAt,
  };
}
