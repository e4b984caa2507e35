/** SBOM components for tests and benchmarks (test support, not product code). */
import type { Component } from '../sbom/model.ts';
import { modelNameOf, parsePurl } from '../sbom/purl.ts';

/**
 * The component a purl names: name, version and ecosystem read from the purl the way the SBOM
 * readers read them (npm `@scope/name`, Maven `group:artifact`, …), no hashes, no dependencies;
 * `extra` adds or overrides fields (licences, scope, a source package).
 */
export function component(purl: string, extra: Partial<Component> = {}): Component {
  const p = parsePurl(purl);
  return {
    name: modelNameOf(p),
    version: p.version ?? '',
    purl,
    ecosystem: p.type,
    hashes: [],
    dependencies: [],
    ...extra,
  };
}
