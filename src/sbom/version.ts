import { readFileSync } from 'node:fs';
import { z } from 'zod';

let toolVersion: string | undefined;

/** gatehouse's version from package.json, for the tool entries of written SBOMs. */
export function gatehouseVersion(): string {
  if (toolVersion === undefined) {
    try {
      const pkg = z
        .object({ version: z.string() })
        .parse(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')));
      toolVersion = pkg.version;
    } catch {
      toolVersion = 'unknown';
    }
  }
  return toolVersion;
}
