import { describeError, GatehouseError } from '../common/errors.ts';
import { UsageError } from './args.ts';
import { admissionCommand } from './commands/admission.ts';
import { attestationCommand } from './commands/attestation.ts';
import { backupCommand, restoreCommand } from './commands/backup.ts';
import { demoCommand } from './commands/demo.ts';
import { hostCommand } from './commands/host.ts';
import { imageCommand } from './commands/image.ts';
import { initCommand } from './commands/init.ts';
import { keysCommand } from './commands/keys.ts';
import { logCommand } from './commands/log.ts';
import { policyCommand } from './commands/policy.ts';
import { projectCommand } from './commands/project.ts';
import { revokeCommand } from './commands/revoke.ts';
import { runCommand } from './commands/run.ts';
import { sbomCommand } from './commands/sbom.ts';
import { serverCommand } from './commands/server.ts';
import { sourceCommand } from './commands/source.ts';
import { triageCommand } from './commands/triage.ts';
import { trustRootCommand } from './commands/trust-root.ts';
import { verifyCommand } from './commands/verify.ts';
import { verifyBundleCommand } from './commands/verify-bundle.ts';
import { vulndbCommand } from './commands/vulndb.ts';
import { EXIT, exitCodeByCode } from './exit-codes.ts';

const USAGE = `usage: gatehouse <command> [options]   (every command takes --home DIR)

  init                          create the home: config, keys, CA, log, database
  demo                          run the bundled examples end to end in a temporary home
  server [--listen HOST:PORT] [--store postgres://USER@HOST/DB]
                                run the control plane (default 127.0.0.1:8700); several
                                instances share one PostgreSQL store
  run DIR [--project NAME] [--commit SHA] [--server URL | --registry URL] [--out DIR] [--json]
                                one job in an ephemeral runner, gated
  verify ARTIFACT --bundle F [--trusted-root F] [--identity I --issuer U] [--json]
                                deploy-time verification, offline
  verify oci://HOST/REPO@sha256:HEX [--policy F] [--identity I | --project P] [--issuer U]
         [--require provenance,sbom,vsa] [--min-level N] [--max-age 30d] [--revocations F|URL] [--plain-http]
                                find the attached bundles, verify them, apply a deploy policy
  admission --policy F [--listen HOST:PORT] [--cert F --key F | --dns NAME...]
                                Kubernetes validating admission webhook over TLS
  verify-bundle --bundle F (--certificate-identity I --certificate-oidc-issuer U | --key K)
                [--trusted-root F] FILE|sha256:HEX
                                any Sigstore bundle (sigstore-conformance protocol)
  sbom DIR [--format cyclonedx|spdx] [--spec-version 1.5|1.6|1.7] [--lockfile F]... [--output F]
                                SBOM of every lockfile under DIR (CycloneDX 1.6 by default)
  vulndb import PATH...         import OSV records (all.zip, folders, JSON files)
  vulndb vex FILE...            keep OpenVEX / CycloneDX VEX documents centrally
  policy push FILE|show [NAME]|history [NAME]|assign PROJECT NAME
                                central signed policies (push and assign need the security key)
  policy check --sbom F [--policy F|--project P] [--facts F] [--vex F]
                                the decision the gate would give an SBOM
  project register NAME (--repository URI | --unverified-directory) [--policy P] [--pool POOL]...|list|show NAME
                                central project registrations (register needs the security key)
  host enroll NAME --public-key F --pool P [--attestation tpm|software]|revoke NAME|list|key
                                enrolled runner hosts (enroll and revoke need the security key)
  triage list|release DECISION --reason R|reject DECISION --reason R
                                quarantined artifacts; release (sign and promote) or reject them (security key)
  revoke DIGEST --reason R      revoke an artifact: logged, and in the revocation list (security key)
  attestation trust-ca add FILE|trust-ca list|vtpm-pool fill N
                                trusted EK CAs and pre-manufactured vTPMs
  attestation reference-values publish FILE|show [--version N]|history
                                signed reference-value bundles (publish needs the security key)
  attestation refusals [--limit N]
                                refused attestations with their failed checks (audit)
  log checkpoint|inclusion INDEX|consistency FIRST SECOND|audit [--state F] [--server URL]
                                read, prove and monitor the transparency log
  keys status|rotate log|ca|tsa where the signing keys live; rotate one (old signatures keep verifying)
  backup DIR | restore DIR [--replace]
                                a consistent copy of the home (database, log anchor, sealed keys), and back
  image build [--suite S] [--mirror URL] [--include PKG,...]|import DIR|list
                                content-addressed runner base images (debootstrap minbase)
  trust-root [--output F]       export the Sigstore trusted_root.json
  source protect|unprotect|approve|signers|status|verify ...
                                central branch protection, signed reviews, trusted signers

exit codes: 0 ok · 1 error · 2 usage · 3 denied or verification failed · 4 quarantined`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  init: initCommand,
  demo: demoCommand,
  server: serverCommand,
  run: runCommand,
  verify: verifyCommand,
  admission: admissionCommand,
  'verify-bundle': verifyBundleCommand,
  sbom: sbomCommand,
  source: sourceCommand,
  vulndb: vulndbCommand,
  image: imageCommand,
  policy: policyCommand,
  project: projectCommand,
  host: hostCommand,
  triage: triageCommand,
  revoke: revokeCommand,
  log: logCommand,
  keys: keysCommand,
  backup: backupCommand,
  restore: restoreCommand,
  attestation: attestationCommand,
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
