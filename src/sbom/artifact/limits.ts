import { z } from 'zod';
import { GatehouseError } from '../../common/errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * The bounds within which an artifact is catalogued. Every one is enforced while reading, before
 * the work it bounds is done where the size is declared, and as the bytes arrive where it is not;
 * crossing one refuses the whole artifact (ARTIFACT_REFUSED) rather than cataloguing a part of it.
 */
export interface ArtifactLimits {
  /**
   * How many containers (tar, zip, gzip or zstd stream, image layout) may be opened one inside the
   * other. Default 12: the deepest real nesting we know is an image archive, a gzip layer and its
   * tar, a war, a Spring Boot jar and its nested jars, a zip resource inside one (7 levels).
   */
  maxDepth: number;
  /**
   * Entries (files, directories, links) seen in all archives and directories together. Default
   * 2,000,000: a large image with several node_modules trees has a few hundred thousand.
   */
  maxEntries: number;
  /**
   * Bytes read from disk plus bytes produced by decompression, counted at every level. Default
   * 16 GiB: the largest images in common use are a few GiB uncompressed; 16 GiB is about a minute
   * of gunzip on one core.
   */
  maxTotalBytes: number;
  /**
   * The largest metadata file buffered and parsed (package.json, METADATA, dpkg status, a
   * lockfile, Go or Rust build data). Default 16 MiB: a full Debian desktop's dpkg status is about
   * 4 MiB and a very large package-lock.json about 10 MiB.
   */
  maxMetadataBytes: number;
  /**
   * The largest output-to-input ratio of one compressed entry or stream, once it has produced
   * {@link ratioFloorBytes}. Default 200: text and tar padding compress 5–20 times, sparse binaries
   * rarely past 100; a file of zeros deflates about 1,000 times.
   */
  maxEntryRatio: number;
  /**
   * The largest ratio of all bytes read and decoded to the artifact's size on disk, once past
   * {@link ratioFloorBytes}. Default 100: a tar.gz of sources or a war of jars reads 5–15 times its
   * size counted over all levels.
   */
  maxTotalRatio: number;
  /** Ratios are checked only past this many output bytes (a small file of zeros is no bomb). Default 8 MiB. */
  ratioFloorBytes: number;
  /**
   * Bytes that may sit in temporary files at once: zips nested in a stream and image archives read
   * from a stream are spilled to disk for random access. Default 4 GiB, and never more than the
   * free space of the temporary directory less 256 MiB.
   */
  maxSpillBytes: number;
  /** The largest tar extended header (pax or GNU long name) or zip central directory record. Default 1 MiB. */
  maxHeaderBytes: number;
}

/** The defaults, justified one by one on {@link ArtifactLimits}. */
export const DEFAULT_ARTIFACT_LIMITS: Readonly<ArtifactLimits> = Object.freeze({
  maxDepth: 12,
  maxEntries: 2_000_000,
  maxTotalBytes: 16 * GiB,
  maxMetadataBytes: 16 * MiB,
  maxEntryRatio: 200,
  maxTotalRatio: 100,
  ratioFloorBytes: 8 * MiB,
  maxSpillBytes: 4 * GiB,
  maxHeaderBytes: 1 * MiB,
});

const positive = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
/** Overrides of the limits, as configuration states them (`catalog.limits` in config.json). */
export const artifactLimitsSchema = z
  .object({
    maxDepth: positive.max(64),
    maxEntries: positive,
    maxTotalBytes: positive,
    maxMetadataBytes: positive.max(1 * GiB),
    maxEntryRatio: z.number().positive(),
    maxTotalRatio: z.number().positive(),
    ratioFloorBytes: positive,
    maxSpillBytes: z.number().int().nonnegative(),
    maxHeaderBytes: positive.max(64 * MiB),
  })
  .strict()
  .partial();

/**
 * The limits in force: the defaults overridden by `partial`, parsed at this edge.
 * @throws GatehouseError BAD_INPUT naming the first invalid limit
 */
export function resolveArtifactLimits(partial: unknown = {}): Readonly<ArtifactLimits> {
  const parsed = artifactLimitsSchema.safeParse(partial);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new GatehouseError(
      'BAD_INPUT',
      `artifact limit ${issue?.path.join('.') || '(limits)'} is invalid: ${issue?.message ?? 'not an object'}`,
    );
  }
  const out: ArtifactLimits = { ...DEFAULT_ARTIFACT_LIMITS };
  for (const [k, v] of Object.entries(parsed.data)) if (v !== undefined) out[k as keyof ArtifactLimits] = v;
  return Object.freeze(out);
}

/** Bytes as a person reads them: `16 GiB`, `1.5 MiB`, `512 B`. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', KiB],
  ] as const)
    if (n >= size) return `${Number((n / size).toFixed(1))} ${unit}`;
  return `${n} B`;
}

/** The ARTIFACT_REFUSED error: `<what> exceeds <limit>: <where>`. */
export function refused(what: string, limit: string, where: string): GatehouseError {
  return new GatehouseError('ARTIFACT_REFUSED', `${what} exceeds ${limit}: ${where}`);
}

/**
 * The running totals of one cataloguing against its limits. Every reader reports what it reads and
 * decodes here, so that no single part can be led past a bound by another's input.
 */
export class ArtifactBudget {
  readonly limits: Readonly<ArtifactLimits>;
  /** Bytes read from disk and produced by decompression, over all levels. */
  bytesRead = 0;
  /** Entries seen (files, directories, links), over all levels. */
  entries = 0;
  /** Regular files examined, over all levels. */
  files = 0;
  /** Containers opened (tar, zip, image layout). */
  archives = 0;
  /** The artifact's own size on disk (the file, or the regular files of the directory seen so far). */
  inputBytes = 0;
  /** Bytes in temporary files now. */
  spillBytes = 0;

  constructor(limits: Readonly<ArtifactLimits>) {
    this.limits = limits;
  }

  /**
   * Count `n` bytes read or decoded at `where`.
   * @throws GatehouseError ARTIFACT_REFUSED past maxTotalBytes or maxTotalRatio
   */
  addBytes(n: number, where: string): void {
    this.bytesRead += n;
    const l = this.limits;
    if (this.bytesRead > l.maxTotalBytes)
      throw refused('bytes read and decompressed', `the limit of ${formatBytes(l.maxTotalBytes)}`, where);
    if (
      this.bytesRead > l.ratioFloorBytes &&
      this.inputBytes > 0 &&
      this.bytesRead > this.inputBytes * l.maxTotalRatio
    )
      throw refused(
        `bytes read and decompressed (${formatBytes(this.bytesRead)} from ${formatBytes(this.inputBytes)})`,
        `the overall ratio limit of ${l.maxTotalRatio}`,
        where,
      );
  }

  /**
   * Check that `n` more bytes, declared by a header, still fit the total.
   * @throws GatehouseError ARTIFACT_REFUSED when they cannot
   */
  checkDeclared(n: number, where: string): void {
    if (this.bytesRead + n > this.limits.maxTotalBytes)
      throw refused(
        `declared size ${formatBytes(n)}`,
        `what is left of the limit of ${formatBytes(this.limits.maxTotalBytes)}`,
        where,
      );
  }

  /**
   * Count `n` entries at `where`.
   * @throws GatehouseError ARTIFACT_REFUSED past maxEntries
   */
  addEntries(n: number, where: string): void {
    this.entries += n;
    if (this.entries > this.limits.maxEntries)
      throw refused('entries', `the limit of ${this.limits.maxEntries}`, where);
  }

  /**
   * Check the nesting depth of a container about to be opened.
   * @throws GatehouseError ARTIFACT_REFUSED past maxDepth
   */
  checkDepth(depth: number, where: string): void {
    if (depth > this.limits.maxDepth)
      throw refused(`archive nesting depth ${depth}`, `the limit of ${this.limits.maxDepth}`, where);
  }

  /**
   * Check one compressed stream's output against its input.
   * @throws GatehouseError ARTIFACT_REFUSED past maxEntryRatio
   */
  checkRatio(output: number, input: number, where: string): void {
    const l = this.limits;
    if (output > l.ratioFloorBytes && output > Math.max(input, 1) * l.maxEntryRatio)
      throw refused(
        `compression ratio of ${Math.round(output / Math.max(input, 1))} (${formatBytes(output)} from ${formatBytes(input)})`,
        `the limit of ${l.maxEntryRatio}`,
        where,
      );
  }

  /**
   * Check that a metadata file of `size` bytes may be buffered.
   * @throws GatehouseError ARTIFACT_REFUSED past maxMetadataBytes
   */
  checkMetadata(size: number, where: string): void {
    if (size > this.limits.maxMetadataBytes)
      throw refused(
        `metadata file of ${formatBytes(size)}`,
        `the limit of ${formatBytes(this.limits.maxMetadataBytes)}`,
        where,
      );
  }
}
