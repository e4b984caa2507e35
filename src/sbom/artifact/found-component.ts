import type { Component } from '../model.ts';

/** How a component was recognised inside the artifact. */
export type EvidenceMethod =
  | 'npm-package'
  | 'python-metadata'
  | 'go-buildinfo'
  | 'java-pom-properties'
  | 'java-manifest'
  | 'cargo-auditable'
  | 'dpkg-status'
  | 'apk-installed'
  | 'lockfile';

/** Where in the artifact a component was found, and how. */
export interface Evidence {
  /** The file that names the component, relative to the innermost archive (or the directory). */
  path: string;
  method: EvidenceMethod;
  /** The archives the file was found inside, outermost first (absent for a file of the directory). */
  archive?: string[];
}

/** A component found in the artifact's own bytes, with the evidence for it. */
export interface FoundComponent extends Component {
  evidence: Evidence;
}

/** A component a parser recognised, before the walker says where it was. */
export interface Recognised {
  component: Component;
  method: EvidenceMethod;
}
