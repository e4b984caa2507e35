/**
 * The build environment's SBOM: the packages of the runner image a build ran in, as one CycloneDX
 * document referenced by its digest from every job's SBOM instead of listed in each. The runner
 * host makes it once per image (cached by the digest of the package databases it was read from)
 * and the control plane keeps it once.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { catalogBuildEnvironment } from './catalog.ts';
import { writeCycloneDx } from './cyclonedx.ts';
import type { Component } from './model.ts';
import { readSbom } from './read.ts';

/** The files the build environment's packages are read from, relative to the image root. */
const INPUTS = ['etc/os-release', 'usr/lib/os-release', 'var/lib/dpkg/status', 'lib/apk/db/installed'];

export interface EnvironmentSbom {
  /** `sha256:<hex>` of `text`. */
  digest: string;
  /** The CycloneDX JSON text. */
  text: string;
  /** How many packages it lists. */
  packages: number;
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The SBOM of the image rooted at `root`, from the cache when its package databases are unchanged.
 * @param cacheDir where documents are kept by the digest of their inputs (none: made every time)
 * @returns undefined for an image with no package database (nothing to list)
 */
export async function environmentSbom(root = '/', cacheDir?: string): Promise<EnvironmentSbom | undefined> {
  const inputs = createHash('sha256');
  for (const rel of INPUTS) {
    const bytes = await readFile(join(root, rel)).catch(() => undefined);
    inputs.update(`${rel}\0${bytes === undefined ? '-' : sha256(bytes)}\0`);
  }
  const key = inputs.digest('hex');
  const cached = cacheDir === undefined ? undefined : join(cacheDir, `${key}.cdx.json`);
  if (cached !== undefined) {
    const text = await readFile(cached, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const packages = (JSON.parse(text) as { components?: unknown[] }).components?.length ?? 0;
      return { digest: `sha256:${sha256(text)}`, text, packages };
    }
  }
  const components = await catalogBuildEnvironment(root);
  if (components.length === 0) return undefined;
  const text = JSON.stringify(writeCycloneDx({ subject: { name: 'build-environment' }, components }));
  if (cached !== undefined && cacheDir !== undefined) {
    await mkdir(cacheDir, { recursive: true, mode: 0o700 });
    const tmp = `${cached}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, cached);
  }
  return { digest: `sha256:${sha256(text)}`, text, packages: components.length };
}

/**
 * The packages of a build environment's SBOM as the gate judges them: every one of them the build
 * environment's, whatever the document says.
 * @throws GatehouseError BAD_SBOM for a document that is not an SBOM
 */
export function environmentComponents(text: string, digest: string): Component[] {
  const where = `build environment ${digest}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new GatehouseError('BAD_SBOM', 'the build environment SBOM is not JSON', { where, cause });
  }
  return readSbom(json, where).components.map((c) => ({ ...c, buildEnvironment: true }));
}
