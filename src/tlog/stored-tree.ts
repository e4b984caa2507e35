/**
 * The log's Merkle tree as a LogStore keeps it. The store persists hashes by coordinates and
 * computes none: entries go in together with the interior nodes they complete, computed here, and
 * a log written before nodes were stored (before migration 5) has them filled in from its leaves.
 */
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { LogNodeRecord, LogStore, NewLogEntryRecord } from '../store/store.ts';
import { completedNodes, interiorNodeCount, mergedSubtrees } from './merkle.ts';

/** An append that keeps losing the race to other writers gives up after this many tries. */
const APPEND_ATTEMPTS = 32;
/** Leaves read per step when filling in nodes, so that a large log is never in memory at once. */
const FILL_CHUNK = 65_536;

/** The interior nodes that the leaves appended at `start` complete, with their siblings from the store. */
async function nodesCompletedBy(
  store: LogStore,
  start: number,
  leaves: readonly Uint8Array[],
): Promise<LogNodeRecord[]> {
  const siblings = await store.subtreeHashes(mergedSubtrees(start, leaves.length));
  return completedNodes(start, siblings, leaves);
}

/**
 * Append entries at the end of the log, with the interior nodes they complete; returns their
 * indices. When another writer appended first the store refuses (CONFLICT) and the append starts
 * over at the new size.
 * @throws GatehouseError STORE_ERROR, CONFLICT after {@link APPEND_ATTEMPTS} lost races
 */
export async function appendEntries(
  store: LogStore,
  entries: readonly NewLogEntryRecord[],
): Promise<number[]> {
  // As the one sequencer (across instances, on PostgreSQL), the size read is the size appended
  // at; the retry remains for a writer that does not take part (another process on SQLite).
  return store.sequence(() => appendAtEnd(store, entries));
}

async function appendAtEnd(store: LogStore, entries: readonly NewLogEntryRecord[]): Promise<number[]> {
  for (let attempt = 1; ; attempt++) {
    const start = await store.size();
    const nodes = await nodesCompletedBy(
      store,
      start,
      entries.map((e) => e.leafHash),
    );
    try {
      return await store.append(start, entries, nodes);
    } catch (e) {
      if (!isGatehouseError(e, 'CONFLICT') || attempt >= APPEND_ATTEMPTS) throw e;
    }
  }
}

/**
 * Append entries whose content depends on the index each gets (a CT entry names its own leaf
 * index), in one store transaction: `builds[k]` is called with the index its entry would take,
 * again after each lost race.
 * @throws GatehouseError STORE_ERROR, CONFLICT after {@link APPEND_ATTEMPTS} lost races
 */
export async function appendEntriesAt<T extends NewLogEntryRecord>(
  store: LogStore,
  builds: readonly ((index: number) => T)[],
): Promise<{ index: number; entry: T }[]> {
  return store.sequence(() => appendBuiltAtEnd(store, builds));
}

/** {@link appendEntriesAt} of one entry. */
export async function appendEntryAt<T extends NewLogEntryRecord>(
  store: LogStore,
  build: (index: number) => T,
): Promise<{ index: number; entry: T }> {
  const [one] = await appendEntriesAt(store, [build]);
  if (one === undefined) throw new GatehouseError('STORE_ERROR', 'the store returned no index for the entry');
  return one;
}

async function appendBuiltAtEnd<T extends NewLogEntryRecord>(
  store: LogStore,
  builds: readonly ((index: number) => T)[],
): Promise<{ index: number; entry: T }[]> {
  for (let attempt = 1; ; attempt++) {
    const start = await store.size();
    const built = builds.map((build, k) => ({ index: start + k, entry: build(start + k) }));
    const nodes = await nodesCompletedBy(
      store,
      start,
      built.map((b) => b.entry.leafHash),
    );
    try {
      await store.append(
        start,
        built.map((b) => b.entry),
        nodes,
      );
      return built;
    } catch (e) {
      if (!isGatehouseError(e, 'CONFLICT') || attempt >= APPEND_ATTEMPTS) throw e;
    }
  }
}

/**
 * Store every interior node a log is missing: a log written before interior nodes were stored gets
 * them once; a complete log is only counted. Nodes already stored are kept, so a fill that stops
 * half way, or runs in two processes at once, does no harm.
 * @throws GatehouseError STORE_ERROR
 */
export async function fillMissingNodes(store: LogStore): Promise<void> {
  const size = await store.size();
  if ((await store.nodeCount()) === interiorNodeCount(size)) return;
  for (let start = 0; start < size; start += FILL_CHUNK) {
    const leaves = await store.leafHashes(start, Math.min(size, start + FILL_CHUNK));
    await store.addNodes(await nodesCompletedBy(store, start, leaves));
  }
}
