import { stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';
import { catalogDirectory } from '../../sbom/catalog.ts';
import { type CycloneDxVersion, writeCycloneDx } from '../../sbom/cyclonedx.ts';
import type { Sbom } from '../../sbom/model.ts';
import { writeSpdx } from '../../sbom/spdx.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';

const USAGE = usageOf('sbom');

/**
 * `gatehouse sbom DIR`: catalogue every supported lockfile under DIR (or the given ones) and write
 * one SBOM. A malformed lockfile fails the command (exit 1) naming the file and position; nothing
 * partial is written.
 */
export async function sbomCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      format: { type: 'string' },
      'spec-version': { type: 'string' },
      lockfile: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
    },
    { min: 1, max: 1, usage: USAGE },
  );
  const format = values.format ?? 'cyclonedx';
  if (format !== 'cyclonedx' && format !== 'spdx')
    throw new UsageError(`--format ${format} is not known (cyclonedx or spdx)\nusage: ${USAGE}`);
  const spec = values['spec-version'];
  if (spec !== undefined && (format !== 'cyclonedx' || !['1.5', '1.6', '1.7'].includes(spec)))
    throw new UsageError(`--spec-version ${spec} is not available for ${format}\nusage: ${USAGE}`);
  const dir = resolve(positionals[0] ?? '.');
  const st = await stat(dir).catch(() => undefined);
  if (st?.isDirectory() !== true) throw new GatehouseError('BAD_INPUT', 'is not a directory', { where: dir });
  const lockfiles = values.lockfile as string[] | undefined;
  const catalog = await catalogDirectory(dir, lockfiles === undefined ? {} : { files: lockfiles });
  if (catalog.sources.length === 0)
    throw new GatehouseError(
      'BAD_LOCKFILE',
      'no supported lockfile found (see docs/sbom.md for the formats)',
      {
        where: dir,
      },
    );
  const sbom: Sbom = {
    subject: {
      name: catalog.project.name ?? 'project',
      ...(catalog.project.version === undefined ? {} : { version: catalog.project.version }),
      dependencies: catalog.direct,
    },
    components: catalog.components,
  };
  const doc =
    format === 'spdx'
      ? writeSpdx(sbom)
      : writeCycloneDx(sbom, spec === undefined ? {} : { specVersion: spec as CycloneDxVersion });
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  if (values.output === undefined) process.stdout.write(json);
  else await writeFile(values.output, json);
  return EXIT.ok;
}
