/**
 * Keeping the home's vTPM pool filled without anyone waiting for it: `init` and `run` start a
 * detached `gatehouse attestation vtpm-pool fill` when the pool is below its target, and the
 * server refills in-process. One filler at a time per pool (a lock file naming its pid; a lock
 * whose process is gone is taken over), so that a burst of runs does not start a burst of fillers.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processAlive } from '../common/process.ts';
import { homeVtpmPool } from '../home/home.ts';
import type { VtpmPool } from '../tpm/swtpm.ts';

/** GATEHOUSE_BACKGROUND_FILL=0 turns background filling off (hosts that fill the pool themselves). */
export function backgroundFillEnabled(): boolean {
  return process.env.GATEHOUSE_BACKGROUND_FILL !== '0';
}

function lockPath(pool: VtpmPool): string {
  return join(pool.dir, 'fill.lock');
}

/**
 * Take the pool's fill lock for this process.
 * @returns false when a live process holds it
 */
export function takeFillLock(pool: VtpmPool): boolean {
  const path = lockPath(pool);
  mkdirSync(pool.dir, { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return true;
    } catch {
      const holder = Number(readFileSync(path, 'utf8').trim());
      if (Number.isSafeInteger(holder) && holder > 0 && processAlive(holder)) return false;
      rmSync(path, { force: true }); // its filler died: take it over
    }
  }
  return false;
}

/** Release the lock if this process holds it. */
export function releaseFillLock(pool: VtpmPool): void {
  try {
    if (Number(readFileSync(lockPath(pool), 'utf8').trim()) === process.pid) rmSync(lockPath(pool));
  } catch {
    // not held
  }
}

/**
 * Start a detached filler for the home's pool when it is below target and nobody is filling it.
 * Never throws: a pool that is not refilled only makes the next job manufacture its vTPM.
 * @returns whether a filler was started
 */
export async function fillPoolInBackground(root: string): Promise<boolean> {
  if (!backgroundFillEnabled()) return false;
  let home: Awaited<ReturnType<typeof homeVtpmPool>>;
  try {
    home = await homeVtpmPool(root);
    if (home === undefined || home.target === 0 || (await home.pool.size()) >= home.target) return false;
  } catch {
    return false;
  }
  if (fillerRunning(home.pool)) return false;
  try {
    const main = fileURLToPath(new URL('./main.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      [...process.execArgv, main, 'attestation', 'vtpm-pool', 'fill', '--background', '--home', root],
      { detached: true, stdio: 'ignore', env: process.env },
    );
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}

function fillerRunning(pool: VtpmPool): boolean {
  try {
    const holder = Number(readFileSync(lockPath(pool), 'utf8').trim());
    return Number.isSafeInteger(holder) && holder > 0 && processAlive(holder);
  } catch {
    return false;
  }
}
