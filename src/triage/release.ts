import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import type { Gate } from '../gate/gate.ts';
import { type HeldBuild, type ReleaseNote, signedSbomOf } from '../gate/held-build.ts';
import {
  artifactDeployment,
  decisionRecord,
  environmentRecord,
  promoteSigned,
  sbomRecord,
  TRIAGE_ARTIFACT_TYPE,
} from '../gate/placement.ts';
import { jsonBytes } from '../gate/sign-build.ts';
import type { ArtifactFile, Attachment } from '../registry/registry.ts';
import type { DecisionRecord, Store } from '../store/store.ts';
import type { ReleaseResult, TriageEffects } from './triage-service.ts';

/**
 * How triage acts reach the artifact, through the gate: a release is signed exactly as an allow
 * (fresh leaf, DSSE, log entries, bundles, with the release in the VSA) and promoted from the
 * quarantine area; a reject marks the quarantined copy.
 */
export class GateRelease implements TriageEffects {
  readonly #gate: Gate;
  readonly #store: Store;

  constructor(options: { gate: Gate; store: Store }) {
    this.#gate = options.gate;
    this.#store = options.store;
  }

  /**
   * Release a refused artifact on the security role's word: sign the build the gate held for the
   * decision, promote its files from the quarantine area to the promoted area, and mark the
   * quarantined copy released.
   * @throws GatehouseError NOT_FOUND (the quarantined artifact is gone), SUBJECT_MISMATCH (its files
   *   are not the decision's subjects)
   */
  async release(decision: DecisionRecord, held: HeldBuild, note: ReleaseNote): Promise<ReleaseResult> {
    const registry = this.#gate.registry;
    const reference = held.quarantineManifest ?? decision.jobId;
    // A quarantined image is its manifest and layers, not the archive the decision names; a
    // release that re-placed it would have to re-open and re-check the image, which it does not.
    if (held.submission.image !== undefined)
      throw new GatehouseError(
        'CONFLICT',
        `decision ${decision.id} is for the image ${held.submission.image.name} (${held.submission.image.manifestDigest}); a quarantined image cannot be released yet: rebuild it once the finding is resolved or excepted in the policy`,
      );
    const work = await mkdtemp(join(tmpdir(), 'gatehouse-release-'));
    try {
      return await this.#release(
        decision,
        held,
        note,
        reference,
        await registry.files('quarantine', decision.project, reference, work),
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  async #release(
    decision: DecisionRecord,
    held: HeldBuild,
    note: ReleaseNote,
    reference: string,
    files: ArtifactFile[],
  ): Promise<ReleaseResult> {
    const registry = this.#gate.registry;
    // The bytes promoted must be exactly the subjects the decision logged, one for one.
    const want = new Map(decision.subjects.map((s) => [s.name, s.sha256]));
    if (files.length !== want.size || files.some((f) => want.get(f.name) !== f.sha256))
      throw new GatehouseError(
        'SUBJECT_MISMATCH',
        `the quarantined artifact ${reference} does not hold the subjects of decision ${decision.id}`,
      );
    const at = new Date().toISOString();
    const manifest = {
      files,
      annotations: { 'dev.gatehouse.decision': 'allow', 'dev.gatehouse.release': note.triageId },
      createdAt: at,
    };
    // The manifest of the released artifact is planned first: the statements name its digest.
    const signed = await this.#gate.sign(
      held,
      { policyDigest: decision.policyDigest, at, release: note },
      artifactDeployment(registry, decision.project, manifest),
    );
    const record = { ...note, kind: 'triage', action: 'release', project: decision.project, timestamp: at };
    const sbom = signedSbomOf(held);
    const placement = await promoteSigned(registry, {
      ...{ project: decision.project, tag: decision.jobId, sbom, signed },
      ...manifest,
      records: [sbomRecord(sbom), ...(await this.#environmentRecords(held)), decisionRecord(record)],
    });
    await this.#mark(decision, { ...record, promoted: placement.reference }, held.quarantineManifest);
    if (held.components.length > 0 || decision.subjects.length > 0)
      await this.#store.policies.keepArtifactSbom({
        decisionId: decision.id,
        project: decision.project,
        components: JSON.stringify(held.components),
        subjects: decision.subjects,
        createdAt: at,
        ...(held.environment === undefined ? {} : { environment: held.environment }),
      });
    return { ...signed.bundles, placement };
  }

  /** The build environment's SBOM a held build references, attached as at the gate. */
  async #environmentRecords(held: HeldBuild): Promise<Attachment[]> {
    if (held.environment === undefined) return [];
    const kept = await this.#store.policies.environmentSbom(held.environment);
    if (kept === undefined)
      throw new GatehouseError(
        'STORE_DAMAGED',
        `the build environment SBOM ${held.environment} is missing from the store`,
      );
    return [environmentRecord(kept.document)];
  }

  /** Reject: the quarantined copy stays where it is, marked. */
  reject(decision: DecisionRecord, record: Record<string, unknown>): Promise<void> {
    return this.#mark(decision, record);
  }

  /**
   * Attach a triage record to the quarantined artifact (released or rejected); the artifact itself
   * stays where it is. Without a quarantined copy (nothing was placed) there is nothing to mark.
   */
  async #mark(
    decision: DecisionRecord,
    record: Record<string, unknown>,
    manifestDigest?: string,
  ): Promise<void> {
    const registry = this.#gate.registry;
    const digest =
      manifestDigest ??
      (await registry.inspect('quarantine', decision.project, decision.jobId))?.manifestDigest;
    if (digest === undefined) return;
    await registry.attach('quarantine', decision.project, digest, {
      artifactType: TRIAGE_ARTIFACT_TYPE,
      mediaType: TRIAGE_ARTIFACT_TYPE,
      bytes: jsonBytes(record),
      annotations: { 'dev.gatehouse.triage': String(record.action ?? '') },
    });
  }
}
