import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
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
  /** Records refused as malformed, each with its file (and zip member) and the reason. */
  refused: RefusedRecord[];
}

/** One OSV record the import refused. */
export interface RefusedRecord {
  /** The file, and for an archive the member (`all.zip!GHSA-….json`). */
  where: string;
  reason: string;
}

/** Options for {@link importOsv}. */
export interface ImportOptions {
  /** Parse and count, but write nothing. */
  dryRun?: boolean;
  /** The time `modified` dates are judged against (default: now). */
  now?: Date;
}

/**
 * How far ahead of this machine's clock a record's `modified` may be (the clocks of OSV's
 * publishers and ours differ a little). Beyond that the record is refused: a copy dated in the
 * future would count as newer than every real update until that date, and block them all.
 */
export const FUTURE_MODIFIED_TOLERANCE_MS = 10 * 60 * 1000;

interface Parsed {
  record: OsvRecord;
  json: string;
  where: string;
}

function readInput(path: string, out: Parsed[], refused: RefusedRecord[], now: Date): void {
  const parseFile = (text: string, where: string): void => {
    try {
      const record = parseOsvJson(text, where);
      if (Date.parse(record.modified) > now.getTime() + FUTURE_MODIFIED_TOLERANCE_MS) {
        refused.push({
          where,
          reason: `${record.id}: modified ${record.modified} is in the future (now ${now.toISOString()}); a record dated ahead would block every real update until then`,
        });
        return;
      }
      out.push({ record, json: text, where });
    } catch (e) {
      // A malformed record is reported and skipped; the rest of the import goes on.
      if (!isGatehouseError(e, 'BAD_OSV_RECORD')) throw e;
      refused.push({ where, reason: e.message });
    }
  };
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
    for (const f of files) parseFile(readFileSync(f, 'utf8'), f);
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
      } catch {
        refused.push({ where, reason: 'the record is not UTF-8' });
        continue;
      }
      parseFile(text, where);
    }
    return;
  }
  parseFile(bytes.toString('utf8'), path);
}

function newer(a: string, b: string): boolean {
  return Date.parse(a) > Date.parse(b);
}

/** The (ecosystem, name) pairs a record affects, names normalised for lookup, without repeats. */
export function packagesOf(record: OsvRecord): VulnRecord['packages'] {
  const seen = new Map<string, { ecosystem: string; name: string }>();
  for (const a of record.affected) {
    if (a.package === undefined) continue;
    // Indexed under the ecosystem without its release (`Debian:12` → `Debian`): lookups come
    // from purls, which name the distro separately; the matcher checks the release.
    const ecosystem = a.package.ecosystem.split(':')[0] ?? a.package.ecosystem;
    const p = { ecosystem, name: normalizePackageName(ecosystem, a.package.name) };
    seen.set(`${p.ecosystem}\u0000${p.name}`, p);
  }
  return [...seen.values()];
}

/**
 * Import OSV records from `all.zip` archives, folders (every `*.json` below them) and single JSON
 * files. A malformed record is refused (listed in `refused` with its file and reason) and the
 * rest is imported; the writes land in one transaction. A record whose `modified` is not newer
 * than the stored copy is left alone.
 * @throws GatehouseError BAD_OSV_RECORD for an archive that cannot be unpacked, NOT_FOUND for a
 *   path that cannot be read, STORE_ERROR
 */
export async function importOsv(
  paths: string[],
  store: Store,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const parsed: Parsed[] = [];
  const refused: RefusedRecord[] = [];
  const now = options.now ?? new Date();
  for (const p of paths) readInput(p, parsed, refused, now);

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
    const result: ImportResult = {
      read: byId.size,
      added: 0,
      updated: 0,
      unchanged: 0,
      withdrawn: 0,
      refused,
    };
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
