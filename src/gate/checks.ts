/** The gate's checks of what a runner handed in: proof freshness, artifact bytes, refusal rules. */
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { ProjectRegistration } from '../policy/projects.ts';
import { type AssembledImage, openImageArchive, platformString } from '../registry/image-assembly.ts';
import type { ArtifactFile } from '../registry/registry.ts';
import type { TokenStore } from '../store/store.ts';
import type { OutputStaging } from './staging.ts';
import type { Submission } from './submission.ts';

/** How long after signing a runner's submission proof is accepted, and the clock skew allowed. */
export const PROOF_MAX_AGE_SECONDS = 300;
const PROOF_CLOCK_SKEW_SECONDS = 60;

/**
 * A runner's signed submission is single-use and fresh: its `proof.jti` is accepted once (kept
 * with the revoked token ids until it could no longer be fresh), and it must have been signed
 * within PROOF_MAX_AGE_SECONDS of now. A captured request cannot be replayed later.
 * @throws GatehouseError PROOF_OF_POSSESSION_FAILED
 */
export async function checkProofFresh(submission: Submission, tokens: TokenStore): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const { jti, iat } = submission.proof;
  if (iat > now + PROOF_CLOCK_SKEW_SECONDS || now - iat > PROOF_MAX_AGE_SECONDS) {
    throw new GatehouseError(
      'PROOF_OF_POSSESSION_FAILED',
      `the submission proof is stale: signed at ${new Date(iat * 1000).toISOString()}, accepted for ${PROOF_MAX_AGE_SECONDS} s`,
    );
  }
  // One atomic use: of two instances handed the same proof at once, one accepts it.
  const first = await tokens.useOnce(`proof:${jti}`, iat + PROOF_MAX_AGE_SECONDS + PROOF_CLOCK_SKEW_SECONDS);
  if (!first) {
    throw new GatehouseError('PROOF_OF_POSSESSION_FAILED', 'the submission proof was already used');
  }
}

/**
 * Every subject is an output the control plane received itself, under exactly the digest the
 * subject names and with the same name: the bytes judged, signed and promoted are those, never
 * what the runner says they are.
 * @throws GatehouseError SUBJECT_MISMATCH
 */
export async function checkStagedOutputs(
  submission: Submission,
  staging: OutputStaging,
): Promise<ArtifactFile[]> {
  const { subjects } = submission;
  if (subjects.length === 0) throw new GatehouseError('SUBJECT_MISMATCH', 'the submission names no outputs');
  if (new Set(subjects.map((s) => s.name)).size !== subjects.length)
    throw new GatehouseError('SUBJECT_MISMATCH', 'the submission names an output twice');
  const files: ArtifactFile[] = [];
  for (const s of subjects) {
    const staged = await staging.get(submission.jobId, s.sha256);
    if (staged === undefined)
      throw new GatehouseError(
        'SUBJECT_MISMATCH',
        `no output with sha256 ${s.sha256} was received for subject ${s.name}: the bytes uploaded are not the ones the submission names`,
      );
    if (staged.name !== s.name)
      throw new GatehouseError(
        'SUBJECT_MISMATCH',
        `the output received as ${staged.name} is named ${s.name} in the submission`,
      );
    files.push({ name: s.name, sha256: staged.sha256, size: staged.size, path: staged.path });
  }
  return files;
}

/**
 * A project registered to a repository is built only from a clean, pinned checkout of that
 * repository: a build from a directory, another repository or uncommitted changes never receives
 * its identity. A project registered for unverified directory builds takes any source (and its
 * provenance says which).
 * @throws GatehouseError SOURCE_MISMATCH
 */
export function checkSourceAgainstRegistration(submission: Submission, project: ProjectRegistration): void {
  if (project.source.kind !== 'git') return;
  const { source } = submission;
  const where = `project ${project.name} is registered to ${project.source.repository}`;
  if (source.kind !== 'git' || source.uri !== project.source.repository)
    throw new GatehouseError(
      'SOURCE_MISMATCH',
      `${where}; this build's source is ${source.kind} ${source.uri}`,
    );
  if (source.commit === undefined || source.dirty)
    throw new GatehouseError('SOURCE_MISMATCH', `${where}; this build is not of a committed, clean checkout`);
}

/**
 * An image submission's archive is its only output, and the image inside it is the one the
 * submission names: the gate opens the archive itself (every blob, diff ID and layer entry
 * checked) and compares the manifest digest it finds with the one the runner reported.
 * @throws GatehouseError SUBJECT_MISMATCH, ARTIFACT_REFUSED
 */
export async function checkImageArchive(
  submission: Submission,
  files: readonly ArtifactFile[],
  staging: OutputStaging,
): Promise<AssembledImage | undefined> {
  const image = submission.image;
  if (image === undefined) return undefined;
  const [archive, ...more] = files;
  if (archive === undefined || more.length > 0 || archive.name !== image.archive)
    throw new GatehouseError(
      'SUBJECT_MISMATCH',
      `an image submission has exactly one output, its archive ${image.archive}`,
    );
  const opened = await openImageArchive(
    archive.path,
    await staging.workDir(submission.jobId, 'image'),
    `image ${image.name}`,
  );
  if (opened.manifestDigest !== image.manifestDigest)
    throw new GatehouseError(
      'SUBJECT_MISMATCH',
      `the image archive holds manifest ${opened.manifestDigest}, the submission names ${image.manifestDigest}`,
    );
  const p = opened.platform;
  if (
    p.os !== image.platform.os ||
    p.architecture !== image.platform.architecture ||
    p.variant !== image.platform.variant
  )
    throw new GatehouseError(
      'SUBJECT_MISMATCH',
      `the image config is for ${platformString(p)}, the submission names ${platformString(image.platform)}`,
    );
  return opened;
}

/** The rule a verification failure is reported under. */
export function refusalRule(e: unknown): string {
  if (
    isGatehouseError(e, 'TOKEN_MISSING', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'TOKEN_WRONG_JOB', 'TOKEN_REVOKED')
  ) {
    return 'attestation-token';
  }
  if (isGatehouseError(e, 'PROOF_OF_POSSESSION_FAILED')) return 'proof-of-possession';
  if (isGatehouseError(e, 'BAD_SBOM')) return 'sbom';
  if (isGatehouseError(e, 'SUBJECT_MISMATCH')) return 'artifact-digest';
  if (isGatehouseError(e, 'ARTIFACT_REFUSED')) return 'image';
  if (isGatehouseError(e, 'SOURCE_MISMATCH', 'NOT_FOUND')) return 'project-source';
  return 'submission';
}
