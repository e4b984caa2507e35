import { readFileSync } from 'node:fs';

let toolVersion: string | undefined;

/** gatehouse's version from package.json, for the tool entries of written SBOMs and `--version`. */
export function gatehouseVersion(): string {
  if (toolVersion === undefined) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
      const version = (pkg as { version?: unknown } | null)?.version;
      toolVersion = typeof version === 'string' && version !== '' ? version : 'unknown';
    } catch {
      toolVersion = 'unknown';
    }
  }
  return toolVersion;
}
