export type { CatalogContext, DirectoryCatalog, LockfileFormat } from './catalog.ts';
export {
  catalogBuildEnvironment,
  catalogDirectory,
  catalogFile,
  catalogWorkspace,
  findLockfiles,
  lockfileFormat,
  mergeCatalogs,
} from './catalog.ts';
export type {
  CycloneDxComponent,
  CycloneDxDocument,
  CycloneDxVersion,
  WriteCycloneDxOptions,
} from './cyclonedx.ts';
export { readCycloneDx, writeCycloneDx } from './cyclonedx.ts';
export type { Catalog } from './lockfile.ts';
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
export { formatPurl, modelNameOf, npmNameOf, npmPurl, parsePurl } from './purl.ts';
export type { SbomFormat } from './read.ts';
export {
  CYCLONEDX_PREDICATE_TYPE,
  readSbom,
  SPDX_PREDICATE_TYPE,
  sbomAttestationTypes,
  sbomFormatOf,
} from './read.ts';
export type { SpdxDocument, SpdxPackage, WriteSpdxOptions } from './spdx.ts';
export { readSpdx, readSpdx3, writeSpdx } from './spdx.ts';
