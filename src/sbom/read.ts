import { GatehouseError } from '../common/errors.ts';
import { readCycloneDx } from './cyclonedx.ts';
import type { Sbom } from './model.ts';
import { readSpdx, readSpdx3 } from './spdx.ts';

/** The SBOM formats gatehouse reads. */
export type SbomFormat = 'cyclonedx' | 'spdx' | 'spdx3';

/** Which format a parsed SBOM document is in, or undefined when it is none of them. */
export function sbomFormatOf(doc: unknown): SbomFormat | undefined {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const d = doc as Record<string, unknown>;
  if (d.bomFormat === 'CycloneDX') return 'cyclonedx';
  if (typeof d.spdxVersion === 'string') return 'spdx';
  if ('@graph' in d && '@context' in d) return 'spdx3';
  return undefined;
}

/**
 * Read an SBOM in any supported format (CycloneDX 1.2–1.7 JSON, SPDX 2.2/2.3 JSON, SPDX 3.0
 * JSON-LD) into the component model.
 * @throws GatehouseError BAD_SBOM naming the first problem
 */
export function readSbom(json: unknown, where: string): Sbom {
  let doc = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch (cause) {
      const m = /position (\d+)/.exec(cause instanceof Error ? cause.message : '');
      throw new GatehouseError(
        'BAD_SBOM',
        `the SBOM is not valid JSON${m === null ? '' : ` (at character ${m[1]})`}`,
        { where, cause },
      );
    }
  }
  switch (sbomFormatOf(doc)) {
    case 'cyclonedx':
      return readCycloneDx(doc, where);
    case 'spdx':
      return readSpdx(doc, where);
    case 'spdx3':
      return readSpdx3(doc, where);
    case undefined:
      throw new GatehouseError(
        'BAD_SBOM',
        'the document is neither CycloneDX (bomFormat) nor SPDX (spdxVersion, @graph)',
        { where },
      );
  }
}

/** in-toto predicate type of a CycloneDX SBOM attestation (any spec version). */
export const CYCLONEDX_PREDICATE_TYPE = 'https://cyclonedx.org/bom';
/** in-toto predicate type of an SPDX SBOM attestation. */
export const SPDX_PREDICATE_TYPE = 'https://spdx.dev/Document';

/**
 * The in-toto predicate type and the OCI media type an SBOM document travels under: CycloneDX's
 * for CycloneDX, SPDX's for SPDX 2 and 3. CycloneDX when the format is not recognised (the reader
 * refuses such a document anyway).
 */
export function sbomAttestationTypes(doc: unknown): { predicateType: string; mediaType: string } {
  const format = sbomFormatOf(doc);
  return format === 'spdx' || format === 'spdx3'
    ? { predicateType: SPDX_PREDICATE_TYPE, mediaType: 'application/spdx+json' }
    : { predicateType: CYCLONEDX_PREDICATE_TYPE, mediaType: 'application/vnd.cyclonedx+json' };
}
