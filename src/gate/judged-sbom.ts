import type { ArtifactFile } from '../registry/registry.ts';
import { catalogArtifact } from '../sbom/artifact/catalog-artifact.ts';
import type { ArtifactLimits } from '../sbom/artifact/limits.ts';
import { writeCycloneDx } from '../sbom/cyclonedx.ts';
import type { Component, Sbom } from '../sbom/model.ts';
import {
  type FetchedArtifact,
  type FoundInArtifact,
  reconcile,
  reconciliationSummary,
  type UndeclaredComponent,
} from '../sbom/reconcile.ts';

/** What the gate judges and signs: the union of the declared, fetched and found SBOMs. */
export interface JudgedSbom {
  /** Every component of the union, each with how it is known. */
  components: Component[];
  /** Found in the artifact, not declared (or declared at other versions). */
  undeclared: UndeclaredComponent[];
  /** Counts per SBOM, for people: `declared 2, fetched 0, found 3, undeclared 0`. */
  summary: string;
  /** The union as CycloneDX 1.6, with evidence of where each found component is: the signed SBOM. */
  document: Record<string, unknown>;
  /** Files inside the artifacts that looked readable and were not, with why (the first ones). */
  skipped: { path: string; reason: string }[];
}

/**
 * Catalogue the outputs the control plane received and digested (never what the runner says
 * they contain), and reconcile what was found with what the project declared and what its fetch
 * phase downloaded.
 * @throws GatehouseError ARTIFACT_REFUSED for an output past the cataloguing limits (a bomb);
 *   BAD_INPUT for an output that is corrupt or truncated
 */
export async function judgeArtifacts(input: {
  files: readonly ArtifactFile[];
  declared: Sbom;
  /** The build environment's SBOM, referenced by the judged one (its packages are judged apart). */
  environment?: { digest: string; url: string; packages: number };
  fetched: readonly FetchedArtifact[];
  /** What the build environment's toolchain compiles in (src/sbom/reconcile.ts toolchainProvides). */
  toolchain?: readonly string[];
  limits?: Partial<ArtifactLimits>;
  tempDir?: string;
}): Promise<JudgedSbom> {
  const found: FoundInArtifact[] = [];
  const skipped: JudgedSbom['skipped'] = [];
  for (const file of input.files) {
    const catalog = await catalogArtifact(
      {
        name: file.name,
        path: file.path,
        ...(input.tempDir === undefined ? {} : { tempDir: input.tempDir }),
      },
      input.limits,
    );
    found.push(...catalog.components);
    for (const s of catalog.skipped.slice(0, 20))
      skipped.push({ path: [...(s.archive ?? []), s.path].join('!'), reason: s.reason });
  }
  const r = reconcile({
    declared: input.declared.components,
    fetched: input.fetched,
    found,
    own: input.declared.projectPackages ?? [],
    ...(input.toolchain === undefined ? {} : { toolchain: input.toolchain }),
  });
  const document = writeCycloneDx({
    ...(input.declared.subject === undefined ? {} : { subject: input.declared.subject }),
    components: r.components,
    ...(input.declared.projectPackages === undefined
      ? {}
      : { projectPackages: input.declared.projectPackages }),
    ...(input.environment === undefined
      ? {}
      : { environment: { digest: input.environment.digest, url: input.environment.url } }),
  }) as unknown as Record<string, unknown>;
  return {
    components: r.components,
    undeclared: r.undeclared,
    summary: `${reconciliationSummary(r)}${input.environment === undefined ? '' : `; build environment ${input.environment.packages} packages (${input.environment.digest.slice(0, 19)})`}`,
    document,
    skipped,
  };
}
