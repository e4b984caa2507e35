/**
 * Run the Biome binary for this platform. Biome's own launcher package lists a binary package for
 * every platform as optional dependencies; the registry mirror gatehouse is built against serves
 * only the Linux ones, which leaves such a lockfile unusable by `npm ci`. So the Linux binary
 * packages are optional dependencies of gatehouse itself, and this picks the one that installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const pkg = `@biomejs/cli-${process.platform}-${process.arch}`;
let binary: string | undefined;
try {
  binary = join(dirname(require.resolve(`${pkg}/package.json`)), 'biome');
} catch {
  binary = undefined;
}
if (binary === undefined || !existsSync(binary)) {
  process.stderr.write(
    `lint: no Biome binary for ${process.platform}-${process.arch} (${pkg} is not installed)\n`,
  );
  process.exit(1);
}
const result = spawnSync(binary, process.argv.slice(2), { stdio: 'inherit' });
process.exit(result.status ?? 1);
