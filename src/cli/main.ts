import { describeError, GatehouseError } from '../common/errors.ts';
import { UsageError } from './args.ts';
import { demoCommand } from './commands/demo.ts';
import { initCommand } from './commands/init.ts';
import { logCommand } from './commands/log.ts';
import { runCommand } from './commands/run.ts';
import { sbomCommand } from './commands/sbom.ts';
import { serverCommand } from './commands/server.ts';
import { trustRootCommand } from './commands/trust-root.ts';
import { verifyCommand } from './commands/verify.ts';
import { vulndbCommand } from './commands/vulndb.ts';
import { EXIT, exitCodeByCode } from './exit-codes.ts';

const USAGE = `usage: gatehouse <command> [options]   (every command takes --home DIR)

  init                          create the home: config, keys, CA, log, database
  demo                          run the bundled examples end to end in a temporary home
  server [--listen HOST:PORT]   run the control plane (default 127.0.0.1:8700)
  run DIR [--project NAME] [--server URL] [--out DIR] [--json]
                                one job in an ephemeral runner, gated
  verify ARTIFACT --bundle F [--trusted-root F] [--identity I --issuer U] [--json]
                                deploy-time verification, offline
  sbom DIR [--output F]         CycloneDX SBOM of a project's lockfile
  vulndb import PATH...         import OSV records (all.zip, folders, JSON files)
  log checkpoint|inclusion INDEX|consistency FIRST SECOND
                                read and prove the transparency log
  trust-root [--output F]       export the Sigstore trusted_root.json

exit codes: 0 ok · 1 error · 2 usage · 3 denied or verification failed · 4 quarantined`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  init: initCommand,
  demo: demoCommand,
  server: serverCommand,
  run: runCommand,
  verify: verifyCommand,
  sbom: sbomCommand,
  vulndb: vulndbCommand,
  log: logCommand,
  'trust-root': trustRootCommand,
};

function firstLine(s: string): string {
  return s.split('\n')[0]?.trim() ?? '';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`gatehouse: unknown command '${name}'\n${USAGE}\n`);
    return EXIT.usage;
  }
  try {
    return await command(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`gatehouse ${name}: ${e.message}\n`);
      return EXIT.usage;
    }
    if (e instanceof GatehouseError) {
      // One line: parsers' messages may carry a code frame after the first line.
      process.stderr.write(`gatehouse ${name}: ${firstLine(e.describe())}\n`);
      return exitCodeByCode[e.code as keyof typeof exitCodeByCode] ?? EXIT.error;
    }
    // Unexpected: one line, no stack (set GATEHOUSE_DEBUG=1 for it).
    process.stderr.write(`gatehouse ${name}: internal error: ${firstLine(describeError(e))}\n`);
    if (process.env.GATEHOUSE_DEBUG === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return EXIT.error;
  }
}

process.exitCode = await main(process.argv.slice(2));
