/**
 * A real `gatehouse server` process for tests and benchmarks: started on an ephemeral loopback
 * port, its URL read from the line it prints once it listens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = join(fileURLToPath(new URL('../..', import.meta.url)), 'bin', 'gatehouse');

export interface ServerProcess {
  url: string;
  child: ChildProcess;
}

/** Start `gatehouse server --listen 127.0.0.1:0 --home HOME [extra…]`; rejects if it exits first. */
export function startServerProcess(
  home: string,
  options: { extra?: readonly string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ServerProcess> {
  const child = spawn(bin, ['server', '--listen', '127.0.0.1:0', '--home', home, ...(options.extra ?? [])], {
    env: options.env ?? { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`the server did not start: ${out}`)),
      options.timeoutMs ?? 60_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+) /.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve({ url: m[1], child });
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}): ${out}`));
    });
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function processExited(child: ChildProcess): Promise<void> {
  return new Promise((r) =>
    child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
  );
}
