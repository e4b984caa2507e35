/**
 * The normalized component model every cataloger produces and every SBOM writer and reader maps
 * to and from. It is deliberately small: what the gate needs to match vulnerabilities, apply
 * component and licence rules, and write CycloneDX or SPDX.
 */

/** Hash algorithms the model keeps. SRI (npm `integrity`) and CycloneDX both name these. */
export type HashAlgorithm = 'SHA-512' | 'SHA-384' | 'SHA-256' | 'SHA-1';

/** One digest of a component's distributed archive, as lowercase hex. */
export interface ComponentHash {
  alg: HashAlgorithm;
  content: string;
}

/**
 * The package ecosystem, named as the purl type. Catalogers here produce `npm`; SBOMs read from
 * elsewhere may carry other purl types (`maven`, `pypi`, …).
 */
export type Ecosystem = 'npm' | (string & {});

/** How a component is used: needed at run time, optional, or only for development. */
export type ComponentScope = 'required' | 'optional' | 'dev';

/** One third-party component of the built artifact. */
export interface Component {
  name: string;
  version: string;
  /** Package URL; also the component's identity (CycloneDX bom-ref) and the target of edges. */
  purl: string;
  ecosystem: Ecosystem;
  hashes: ComponentHash[];
  /** SPDX licence ids or expressions, as declared. */
  licenses?: string[];
  /** purls of the components this one depends on directly. */
  dependencies: string[];
  scope?: ComponentScope;
  /**
   * True for a package of the runner image the build ran in (dpkg, apk), as opposed to a package
   * that went into the artifact. Written as a CycloneDX property and an SPDX BUILD_TOOL_OF edge.
   */
  buildEnvironment?: boolean;
  /** OS packages: the source package the binary package was built from (advisories name it). */
  sourcePackage?: { name: string; version?: string };
  /**
   * How the gate came to know the component (its judged SBOM only): declared by a lockfile,
   * downloaded by the fetch phase, or found in the artifact.
   */
  origins?: ComponentOrigin[];
}

/** How a component came to be known. */
export type OriginKind = 'declared' | 'fetched' | 'found';

/** One way a component is known: declared in a lockfile, downloaded by the fetch phase, or found. */
export interface ComponentOrigin {
  kind: OriginKind;
  /** Where it was found in the artifact (found), e.g. `dist/app.tar!node_modules/x/package.json`. */
  path?: string;
  /** How it was found (found): `npm-package`, `python-metadata`, `go-buildinfo`, … */
  method?: string;
  /** The URL it was downloaded from (fetched). */
  uri?: string;
}

/** The artifact an SBOM describes. */
export interface SbomSubject {
  name: string;
  version?: string;
  /** Lowercase hex SHA-256 of the artifact. */
  sha256?: string;
  purl?: string;
  /** purls of the subject's direct dependencies. */
  dependencies?: string[];
}

/** A component an SBOM listed without enough identity (purl and version) to be matched. */
export interface UnidentifiedComponent {
  name: string;
  version?: string;
  bomRef?: string;
}

/** A bill of materials: the subject and its components. */
export interface Sbom {
  subject?: SbomSubject;
  components: Component[];
  /**
   * Components read from a foreign SBOM that carry no purl or version. They cannot be matched
   * against vulnerability data, so policy may want to know about them.
   */
  unidentified?: UnidentifiedComponent[];
  /**
   * purls of the project's own packages, as its lockfiles name them (package.json's name and
   * version, say): the artifact may carry them, and they are not dependencies it failed to declare.
   */
  projectPackages?: string[];
  /**
   * The SBOM of the build environment (the runner image's packages), referenced by its digest
   * (`sha256:<hex>`) instead of listed: one document per image, kept by the control plane.
   */
  environment?: { digest: string; url: string };
}
