import { readFile, writeFile } from 'node:fs/promises';
import type { Config } from '../../home/config.ts';
import { resolveHome } from '../../home/home.ts';
import { recipeValues, renderRecipe } from '../../verify/deploy-recipes.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { withHome } from '../home-access.ts';

/** The promoted repositories of the home's registry as a glob, when it is a distribution registry. */
function promotedImages(config: Config): string | undefined {
  const r = config.registry;
  return r.kind === 'oci-distribution' ? `${new URL(r.url).host}/${r.repositoryPrefix}/*` : undefined;
}

export async function trustRootCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      ...commonOptions,
      output: { type: 'string', short: 'o' },
      format: { type: 'string' },
      render: { type: 'string' },
      images: { type: 'string' },
    },
    { min: 0, max: 0, usage: usageOf('trust-root') },
  );
  const format = values.format ?? 'json';
  if (format !== 'json' && format !== 'jsonl')
    throw new UsageError(`--format must be json or jsonl, not '${format}'`);
  const text = await withHome(resolveHome(values.home), async (home) => {
    const root = await home.trustedRoot();
    if (values.render !== undefined) {
      const images = values.images ?? promotedImages(home.config);
      const template = await readFile(values.render, 'utf8');
      if (images === undefined && template.includes(`\${GATEHOUSE_IMAGES}`))
        throw new UsageError(
          `${values.render} names the images: pass --images GLOB (the home's registry is not a distribution registry)`,
        );
      const filled = recipeValues({
        trustedRoot: root,
        identityBase: home.config.identityBase,
        issuer: home.config.issuer,
        images: images ?? '',
      });
      return renderRecipe(template, filled, values.render);
    }
    // JSON lines (one root a line, each ended by a newline) is what gh attestation verify reads.
    return format === 'jsonl' ? `${JSON.stringify(root)}\n` : `${JSON.stringify(root, null, 2)}\n`;
  });
  if (values.output === undefined) process.stdout.write(text);
  else await writeFile(values.output, text);
  return EXIT.ok;
}
