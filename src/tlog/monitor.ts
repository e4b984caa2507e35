/**
 * The log monitor behind `gatehouse log audit`: it remembers the last checkpoint it accepted and,
 * on every run, checks that the log's new signed checkpoint extends it, with a consistency proof.
 * A smaller tree, a different root at the same size or a proof that does not hold is a fork (or a
 * rewrite): the monitor refuses it and keeps the checkpoint it trusted, so the alarm repeats until
 * someone looks.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { type Checkpoint, type CheckpointKey, verifyCheckpoint } from './checkpoint.ts';
import { verifyConsistency } from './merkle.ts';

/** Where the monitor reads the log: the embedded control plane or the HTTP API. */
export interface AuditedLog {
  checkpoint(): Promise<string>;
  consistencyProof(first: number, second: number): Promise<Record<string, unknown>>;
}

const stateSchema = z.strictObject({
  version: z.literal(1),
  origin: z.string(),
  treeSize: z.number().int().min(0),
  rootHash: z.string().regex(/^[0-9a-f]{64}$/),
  checkpoint: z.string(),
  seenAt: z.string(),
});

export type AuditState = z.infer<typeof stateSchema>;

export interface AuditResult {
  /** `first` on the first run (nothing to compare), `unchanged` or `grew`. */
  status: 'first' | 'unchanged' | 'grew';
  previousSize: number | undefined;
  treeSize: number;
  rootHash: string;
}

function inconsistent(message: string): GatehouseError {
  return new GatehouseError('LOG_INCONSISTENT', message);
}

async function readState(path: string): Promise<AuditState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GatehouseError('STORE_ERROR', 'cannot read the audit state', { where: path, cause: e });
  }
  try {
    return stateSchema.parse(JSON.parse(text));
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'the audit state is malformed', { where: path, cause: e });
  }
}

function hexHashes(value: unknown, what: string): Uint8Array[] {
  if (!Array.isArray(value) || value.length > 128) throw inconsistent(`the ${what} is malformed`);
  return value.map((h) => {
    if (typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h))
      throw inconsistent(`the ${what} has a malformed hash`);
    return Buffer.from(h, 'hex');
  });
}

/**
 * Audit the log once against the remembered checkpoint in `statePath`, and remember the new one
 * only when it is proven consistent.
 * @throws GatehouseError CHECKPOINT_INVALID for a badly signed checkpoint, LOG_INCONSISTENT for a
 *   fork, a rollback or a failed proof
 */
export async function auditLog(options: {
  log: AuditedLog;
  key: CheckpointKey;
  statePath: string;
  now?: Date;
}): Promise<AuditResult> {
  const note = await options.log.checkpoint();
  const current: Checkpoint = verifyCheckpoint(note, options.key);
  const rootHex = Buffer.from(current.rootHash).toString('hex');
  const previous = await readState(options.statePath);
  let status: AuditResult['status'] = 'first';
  if (previous !== undefined) {
    if (previous.origin !== current.origin) {
      throw inconsistent(`the log origin changed from '${previous.origin}' to '${current.origin}'`);
    }
    if (current.treeSize < previous.treeSize) {
      throw inconsistent(`the log shrank from ${previous.treeSize} to ${current.treeSize} entries`);
    }
    if (current.treeSize === previous.treeSize) {
      if (rootHex !== previous.rootHash) {
        throw inconsistent(`two different roots for tree size ${current.treeSize}: the log forked`);
      }
      status = 'unchanged';
    } else if (previous.treeSize === 0) {
      status = 'grew';
    } else {
      const proof = await options.log.consistencyProof(previous.treeSize, current.treeSize);
      try {
        verifyConsistency(
          previous.treeSize,
          current.treeSize,
          hexHashes(proof.hashes, 'consistency proof'),
          Buffer.from(previous.rootHash, 'hex'),
          current.rootHash,
        );
      } catch (e) {
        if (e instanceof GatehouseError && e.code === 'LOG_PROOF_INVALID') {
          throw inconsistent(
            `the checkpoint at size ${current.treeSize} is not an extension of the one at size ${previous.treeSize}: ${e.message}`,
          );
        }
        throw e;
      }
      status = 'grew';
    }
  }
  const state: AuditState = {
    version: 1,
    origin: current.origin,
    treeSize: current.treeSize,
    rootHash: rootHex,
    checkpoint: note,
    seenAt: (options.now ?? new Date()).toISOString(),
  };
  // Write then rename: a crash never leaves a half-written state that would reset the monitor.
  const tmp = `${options.statePath}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, options.statePath);
  return { status, previousSize: previous?.treeSize, treeSize: current.treeSize, rootHash: rootHex };
}
