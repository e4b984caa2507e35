export type { CycloneDxComponent, CycloneDxDocument, WriteCycloneDxOptions } from './cyclonedx.ts';
export { readCycloneDx, writeCycloneDx } from './cyclonedx.ts';
export type {
  Component,
  ComponentHash,
  ComponentScope,
  Ecosystem,
  HashAlgorithm,
  Sbom,
  SbomSubject,
  UnidentifiedComponent,
} from './model.ts';
export type { NpmCatalog } from './npm-lock.ts';
export { catalogNpmLockfile } from './npm-lock.ts';
export type { PackageUrl } from './purl.ts';
export { npmNameOf, npmPurl, parsePurl } from './purl.ts';
