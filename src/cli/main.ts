import { enableCompileCache } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describeError, GatehouseError } from '../common/errors.ts';
import { gatehouseVersion } from '../sbom/version.ts';
import { UsageError } from './args.ts';
import { EXIT, exitCodeByCode } from './exit-codes.ts';
import { COMMAND_HELP, type CommandName, commandHelpText, globalHelpText } from './help.ts';

type Command = (argv: string[]) => Promise<number>;

// Each command's module is loaded only when that command runs: help and usage errors load none.
const commands: Record<CommandName, () => Promise<Command>> = {
  init: async () => (await import('./commands/init.ts')).initCommand,
  demo: async () => (await import('./commands/demo.ts')).demoCommand,
  server: async () => (await import('./commands/server.ts')).serverCommand,
  run: async () => (await import('./commands/run.ts')).runCommand,
  verify: async () => (await import('./commands/verify.ts')).verifyCommand,
  admission: async () => (await import('./commands/admission.ts')).admissionCommand,
  'verify-bundle': async () => (await import('./commands/verify-bundle.ts')).verifyBundleCommand,
  sbom: async () => (await import('./commands/sbom.ts')).sbomCommand,
  vulndb: async () => (await import('./commands/vulndb.ts')).vulndbCommand,
  policy: async () => (await import('./commands/policy.ts')).policyCommand,
  project: async () => (await import('./commands/project.ts')).projectCommand,
  host: async () => (await import('./commands/host.ts')).hostCommand,
  triage: async () => (await import('./commands/triage.ts')).triageCommand,
  revoke: async () => (await import('./commands/revoke.ts')).revokeCommand,
  alerts: async () => (await import('./commands/alerts.ts')).alertsCommand,
  attestation: async () => (await import('./commands/attestation.ts')).attestationCommand,
  log: async () => (await import('./commands/log.ts')).logCommand,
  keys: async () => (await import('./commands/keys.ts')).keysCommand,
  doctor: async () => (await import('./commands/doctor.ts')).doctorCommand,
  backup: async () => (await import('./commands/backup.ts')).backupCommand,
  restore: async () => (await import('./commands/backup.ts')).restoreCommand,
  image: async () => (await import('./commands/image.ts')).imageCommand,
  'trust-root': async () => (await import('./commands/trust-root.ts')).trustRootCommand,
  source: async () => (await import('./commands/source.ts')).sourceCommand,
};

function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_HELP, name);
}

/** Whether the arguments ask for help (before a `--`, which ends the options). */
function asksForHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * Compiled code is cached between runs (Node's compile cache, in a directory of this user's own
 * cache, never the shared temporary directory where another user could plant code), which halves
 * the start-up of every command. GATEHOUSE_COMPILE_CACHE=0 turns it off.
 */
function cacheCompiledCode(): void {
  if (process.env.GATEHOUSE_COMPILE_CACHE === '0') return;
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache');
  try {
    enableCompileCache(join(base, 'gatehouse', 'node-compile-cache'));
  } catch {
    // Without a cache, commands only start slower.
  }
}

/**
 * A reader that goes away (`gatehouse policy show | head -1`) closes our stdout: the next write
 * fails with EPIPE. The command is not stopped half-way (a `run` still finishes or cancels its job
 * and cleans up): further output is dropped and the command ends with its own exit code, quietly.
 */
function toleratePipeClosed(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    stream.write = (() => true) as typeof stream.write;
  });
}

function firstLine(s: string): string {
  return s.split('\n')[0]?.trim() ?? '';
}

async function main(argv: string[]): Promise<number> {
  toleratePipeClosed(process.stdout);
  toleratePipeClosed(process.stderr);
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`gatehouse ${gatehouseVersion()}\n`);
    return EXIT.ok;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest.find((a) => !a.startsWith('-')) : undefined;
    if (topic === undefined) {
      process.stdout.write(`${globalHelpText()}\n`);
      return name === undefined ? EXIT.usage : EXIT.ok;
    }
    if (!isCommand(topic)) {
      process.stderr.write(`gatehouse help: unknown command '${topic}'\n${globalHelpText()}\n`);
      return EXIT.usage;
    }
    process.stdout.write(`${commandHelpText(topic)}\n`);
    return EXIT.ok;
  }
  if (!isCommand(name)) {
    process.stderr.write(`gatehouse: unknown command '${name}'\n${globalHelpText()}\n`);
    return EXIT.usage;
  }
  // Help is printed here, from the table, so that `CMD --help` can never run CMD.
  if (asksForHelp(rest)) {
    process.stdout.write(`${commandHelpText(name)}\n`);
    return EXIT.ok;
  }
  const json = rest.includes('--json');
  try {
    cacheCompiledCode();
    const command = await commands[name]();
    return await command(rest);
  } catch (e) {
    return reportError(name, e, json);
  }
}

/**
 * One line on stderr and, with --json, one JSON document on stdout (`{"error":{"code","message"}}`),
 * so that a script reading stdout always gets a document.
 */
function reportError(name: string, e: unknown, json: boolean): number {
  let code = 'INTERNAL';
  let message: string;
  let exit: number = EXIT.error;
  if (e instanceof UsageError) {
    code = 'USAGE';
    message = e.message;
    exit = EXIT.usage;
  } else if (e instanceof GatehouseError) {
    // One line: parsers' messages may carry a code frame after the first line.
    code = e.code;
    message = firstLine(e.describe());
    exit = exitCodeByCode[e.code as keyof typeof exitCodeByCode] ?? EXIT.error;
  } else {
    // Unexpected: one line, no stack (set GATEHOUSE_DEBUG=1 for it).
    message = `internal error: ${firstLine(describeError(e))}`;
    if (process.env.GATEHOUSE_DEBUG === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  }
  process.stderr.write(`gatehouse ${name}: ${message}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message: firstLine(message) } })}\n`);
  return exit;
}

process.exitCode = await main(process.argv.slice(2));
