import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';
import { writeCycloneDx } from '../../sbom/cyclonedx.ts';
import { catalogNpmLockfile } from '../../sbom/npm-lock.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';

const USAGE = 'gatehouse sbom DIR [--format cyclonedx] [--output FILE]';

export async function sbomCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, format: { type: 'string' }, output: { type: 'string', short: 'o' } },
    { min: 1, max: 1, usage: USAGE },
  );
  if (values.format !== undefined && values.format !== 'cyclonedx') {
    throw new UsageError(`--format ${values.format} is not available yet (cyclonedx is)\nusage: ${USAGE}`);
  }
  const dir = resolve(positionals[0] ?? '.');
  const lockPath = join(dir, 'package-lock.json');
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (e) {
    throw new GatehouseError('BAD_LOCKFILE', 'no package-lock.json to catalogue', {
      where: lockPath,
      cause: e,
    });
  }
  const catalog = catalogNpmLockfile(text, lockPath);
  const name = catalog.project.name ?? 'project';
  const doc = writeCycloneDx({
    subject: { name, ...(catalog.project.version === undefined ? {} : { version: catalog.project.version }) },
    components: catalog.components,
  });
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  if (values.output === undefined) process.stdout.write(json);
  else await writeFile(values.output, json);
  return EXIT.ok;
}
