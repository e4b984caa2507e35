import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { GatehouseError } from '../common/errors.ts';
import type { Store, VulnRecord } from '../store/store.ts';
import { normalizePackageName, type OsvRecord, parseOsvJson } from './osv.ts';

/** What an import did. */
export interface ImportResult {
  /** Records read from all inputs (after de-duplicating ids across inputs). */
  read: number;
  /** New ids written. */
  added: number;
  /** Known ids rewritten because the input's `modified` is newer. */
  updated: number;
  /** Known ids skipped because the stored copy is as new or newer. */
  unchanged: number;
  /** Records read that carry a `withdrawn` date (stored, never matched). */
  withdrawn: number;
}

/** Options for {@link importOsv}. */
export interface ImportOptions {
  /** Parse and count, but write nothing. */
  dryRun?: boolean;
}

interface Parsed {
  record: OsvRecord;
  json: string;
  where: string;
}

function readInput(path: string, out: Parsed[]): void {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (cause) {
    throw new GatehouseError('NOT_FOUND', `cannot read ${path}`, { where: path, cause });
  }
  if (isDir) {
    const files = readdirSync(path, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile() && d.name.endsWith('.json'))
      .map((d) => join(d.parentPath, d.name))
      .sort();
    for (const f of files) out.push(parseFile(readFileSync(f, 'utf8'), f));
    return;
  }
  const bytes = readFileSync(path);
  if (path.endsWith('.zip')) {
    let members: Record<string, Uint8Array>;
    try {
      members = unzipSync(bytes);
    } catch (cause) {
      throw new GatehouseError('BAD_OSV_RECORD', 'not a readable zip archive', { where: path, cause });
    }
    const decoder = new TextDecoder('utf-8', { fatal: true });
    for (const name of Object.keys(members).sort()) {
      const data = members[name];
      if (data === undefined || name.endsWith('/') || !name.endsWith('.json')) continue;
      const where = `${path}!${name}`;
      let text: string;
      try {
        text = decoder.decode(data);
      } catch (cause) {
        throw new GatehouseError('BAD_OSV_RECORD', `zip member ${name} is not UTF-8`, { where, cause });
      }
      out.push(parseFile(text, where));
    }
    return;
  }
  out.push(parseFile(bytes.toString('utf8'), path));
}

function parseFile(text: string, where: string): Parsed {
  return { record: parseOsvJson(text, where), json: text, where };
}

function newer(a: string, b: string): boolean {
  return Date.parse(a) > Date.parse(b);
}

/** The (ecosystem, name) pairs a record affects, names normalised for lookup, without repeats. */
export function packagesOf(record: OsvRecord): VulnRecord['packages'] {
  const seen = new Map<string, { ecosystem: string; name: string }>();
  for (const a of record.affected) {
    if (a.package === undefined) continue;
    const p = {
      ecosystem: a.package.ecosystem,
      name: normalizePackageName(a.package.ecosystem, a.package.name),
    };
    seen.set(`${p.ecosystem}\u0000${p.name}`, p);
  }
  return [...seen.values()];
}

/**
 * Import OSV records from `all.zip` archives, folders (every `*.json` below them) and single JSON
 * files. Everything is read and parsed before anything is written, and the writes land in one
 * transaction: one malformed record anywhere means nothing is stored. A record whose `modified`
 * is not newer than the stored copy is left alone.
 * @throws GatehouseError BAD_OSV_RECORD naming the file (and zip member) and the problem,
 *   NOT_FOUND for a path that cannot be read, STORE_ERROR
 */
export async function importOsv(
  paths: string[],
  store: Store,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const parsed: Parsed[] = [];
  for (const p of paths) readInput(p, parsed);

  // The same id in several inputs: keep the newest copy.
  const byId = new Map<string, Parsed>();
  for (const p of parsed) {
    const seen = byId.get(p.record.id);
    if (seen === undefined || newer(p.record.modified, seen.record.modified)) byId.set(p.record.id, p);
  }

  const decideAndWrite = async (): Promise<ImportResult> => {
    // Read the stored versions inside the same transaction as the writes, so that a concurrent
    // import cannot slip an even newer copy in between and have it overwritten.
    const stored = await store.vulns.modifiedIndex();
    const result: ImportResult = { read: byId.size, added: 0, updated: 0, unchanged: 0, withdrawn: 0 };
    const writes: VulnRecord[] = [];
    for (const { record, json } of byId.values()) {
      if (record.withdrawn !== undefined) result.withdrawn++;
      const known = stored.get(record.id);
      if (known !== undefined && !newer(record.modified, known)) {
        result.unchanged++;
        continue;
      }
      if (known === undefined) result.added++;
      else result.updated++;
      writes.push({
        id: record.id,
        modified: record.modified,
        withdrawn: record.withdrawn ?? null,
        aliases: record.aliases,
        json,
        packages: packagesOf(record),
      });
    }
    if (!options.dryRun && writes.length > 0) await store.vulns.upsert(writes);
    return result;
  };
  return options.dryRun === true ? decideAndWrite() : store.transaction(decideAndWrite);
}
