import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ServerProcess, startServerProcess } from '../src/testing/server-process.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const examplesDir = join(repoRoot, 'examples');
export const sharedData = resolve(repoRoot, '..', 'shared', 'data');

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix: string): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), `gatehouse-${prefix}-`));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A reason to skip when one of the commands is not on the PATH, else undefined. */
export function missingTools(...commands: string[]): string | undefined {
  for (const c of commands) {
    try {
      execFileSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' });
    } catch {
      return `${c} is not installed`;
    }
  }
  return undefined;
}

/** Copy an example project to a temporary directory, to change it freely. */
export function copyExample(name: string, into: string): string {
  const dest = join(into, name);
  cpSync(join(examplesDir, name), dest, { recursive: true });
  return dest;
}

/** Listen on an ephemeral port of 127.0.0.1: the port, and the base URL `http://127.0.0.1:<port>`. */
export async function listenOnLoopback(server: Server): Promise<{ port: number; url: string }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { port, url: `http://127.0.0.1:${port}` };
}

/** Close a server, ending its open connections first. */
export async function closeServer(server: Server | HttpServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run bin/gatehouse with arguments; never throws on a non-zero exit. */
export function cli(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(repoRoot, 'bin', 'gatehouse'), args, {
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Start `gatehouse server` on an ephemeral loopback port for a home; resolves with its URL. */
export function startServer(home: string): Promise<ServerProcess> {
  return startServerProcess(home);
}
