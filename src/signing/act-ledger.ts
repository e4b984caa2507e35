import { canonicalJson } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { SecurityActRecord, SecurityActStore } from '../store/store.ts';
import {
  type SecurityAct,
  type SecurityActKind,
  type SecuritySignature,
  type TrustedKey,
  verifySecurityAct,
} from './security-act.ts';

/** An act as the ledger holds it: verified when it was recorded and again when it is read. */
export interface VerifiedAct {
  act: SecurityAct;
  /** Key id of the security key that signed it. */
  actor: string;
  createdAt: string;
}

/**
 * The security role's versioned acts (project registrations, host enrollments, EK CAs): recorded
 * only with a trusted signature over kind, name, version and content, only as exactly the next
 * version, and verified again on every read, so that neither a replayed signature nor an edited
 * row changes what the control plane believes.
 */
export class SecurityActLedger {
  readonly #acts: SecurityActStore;
  readonly #trusted: readonly TrustedKey[];

  constructor(options: { acts: SecurityActStore; trustedKeys: readonly TrustedKey[] }) {
    this.#acts = options.acts;
    this.#trusted = options.trustedKeys;
  }

  /**
   * Verify and record an act as the next version of its (kind, name).
   * @throws GatehouseError SIGNATURE_INVALID, CONFLICT (not exactly the next version: a replay or a race)
   */
  async publish(act: SecurityAct, sig: SecuritySignature): Promise<VerifiedAct> {
    const actor = verifySecurityAct(act, sig, this.#trusted);
    const createdAt = new Date().toISOString();
    await this.#acts.append({
      kind: act.kind,
      name: act.name,
      version: act.version,
      content: canonicalJson(act.content),
      signature: sig.signature,
      keyId: sig.keyId,
      createdAt,
    });
    return { act, actor, createdAt };
  }

  /** The next version number of (kind, name): what a new act must carry. */
  async nextVersion(kind: SecurityActKind, name: string): Promise<number> {
    return ((await this.#acts.latest(kind, name))?.version ?? 0) + 1;
  }

  /**
   * The latest version of (kind, name), verified again; undefined when there is none.
   * @throws GatehouseError SIGNATURE_INVALID when the stored act no longer verifies (fail closed: never
   *   an older version instead)
   */
  async latest(kind: SecurityActKind, name: string): Promise<VerifiedAct | undefined> {
    const record = await this.#acts.latest(kind, name);
    return record === undefined ? undefined : this.#verified(kind, record);
  }

  /** The latest version of every name of a kind, each verified again. @throws SIGNATURE_INVALID */
  async listLatest(kind: SecurityActKind): Promise<VerifiedAct[]> {
    return (await this.#acts.listLatest(kind)).map((r) => this.#verified(kind, r));
  }

  /** Every version of (kind, name), newest first, each with whether it verifies now. */
  async history(kind: SecurityActKind, name: string): Promise<(SecurityActRecord & { valid: boolean })[]> {
    return (await this.#acts.history(kind, name)).map((r) => {
      try {
        this.#verified(kind, r);
        return { ...r, valid: true };
      } catch {
        return { ...r, valid: false };
      }
    });
  }

  #verified(kind: SecurityActKind, r: SecurityActRecord): VerifiedAct {
    let content: Record<string, unknown>;
    try {
      content = JSON.parse(r.content) as Record<string, unknown>;
    } catch (cause) {
      throw new GatehouseError('SIGNATURE_INVALID', `${kind} ${r.name} version ${r.version} is unreadable`, {
        cause,
      });
    }
    const act: SecurityAct = { kind, name: r.name, version: r.version, content };
    const actor = verifySecurityAct(act, { signature: r.signature, keyId: r.keyId }, this.#trusted);
    return { act, actor, createdAt: r.createdAt };
  }
}
