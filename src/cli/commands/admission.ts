import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';
import { homePaths, resolveHome } from '../../home/home.ts';
import { credentialsFromEnv } from '../../registry/registry-config.ts';
import { ociImageVerifier } from '../../verify/admission/image-verifier.ts';
import { selfSignedServingCertificate } from '../../verify/admission/tls.ts';
import { startAdmissionWebhook } from '../../verify/admission/webhook-server.ts';
import { parseDeployPolicy } from '../../verify/deploy-policy.ts';
import { commonOptions, parse, UsageError } from '../args.ts';
import { EXIT } from '../exit-codes.ts';
import { usageOf } from '../help.ts';
import { loadTrustedRoot, readTextFile } from '../input-files.ts';
import { revocationsPath } from './verify-oci.ts';

const USAGE = usageOf('admission');

/**
 * The serving certificate: the operator's (`--cert`/`--key`), else a self-signed one kept in
 * `<home>/admission/`, generated on first start for the `--dns` names, localhost and 127.0.0.1.
 */
async function servingCertificate(
  values: { cert?: string; key?: string; dns?: string[] },
  home: string,
): Promise<{ certPem: string; keyPem: string; generated: boolean }> {
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError(`--cert and --key go together\nusage: ${USAGE}`);
  }
  if (values.cert !== undefined && values.key !== undefined) {
    return {
      certPem: await readTextFile(values.cert, 'certificate'),
      keyPem: await readTextFile(values.key, 'certificate key'),
      generated: false,
    };
  }
  const dir = join(home, 'admission');
  const certPath = join(dir, 'tls.crt.pem');
  const keyPath = join(dir, 'tls.key.pem');
  if (existsSync(certPath) && existsSync(keyPath) && values.dns === undefined) {
    return {
      certPem: await readTextFile(certPath, 'certificate'),
      keyPem: await readTextFile(keyPath, 'certificate key'),
      generated: false,
    };
  }
  const cert = await selfSignedServingCertificate({
    dnsNames: [...(values.dns ?? ['gatehouse-admission.gatehouse.svc']), 'localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyPath, cert.keyPem, { mode: 0o600 });
  await chmod(keyPath, 0o600);
  await writeFile(certPath, cert.certPem, { mode: 0o644 });
  return { ...cert, generated: true };
}

/** `gatehouse admission`: the Kubernetes ValidatingAdmissionWebhook, until SIGINT or SIGTERM. */
export async function admissionCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      ...commonOptions,
      policy: { type: 'string' },
      listen: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      dns: { type: 'string', multiple: true },
      'trusted-root': { type: 'string' },
      revocations: { type: 'string' },
    },
    { min: 0, max: 0, usage: USAGE },
  );
  if (values.policy === undefined) throw new UsageError(`--policy is required\nusage: ${USAGE}`);
  const listen = values.listen ?? '127.0.0.1:8443';
  const m = /^(.+):([0-9]{1,5})$/.exec(listen);
  if (m?.[1] === undefined || m[2] === undefined || Number(m[2]) > 65535) {
    throw new UsageError(`--listen takes HOST:PORT\nusage: ${USAGE}`);
  }
  const homeRoot = resolveHome(values.home);
  const hasHome = existsSync(homePaths(homeRoot).config);
  const policy = parseDeployPolicy(await readTextFile(values.policy, 'deploy policy'), values.policy);
  if (policy.registries === undefined || Object.keys(policy.registries).length === 0) {
    throw new GatehouseError(
      'BAD_POLICY',
      'the admission webhook needs `registries`: the registries it may pull from',
      {
        where: values.policy,
      },
    );
  }
  const trustedRoot = await loadTrustedRoot(values['trusted-root'], homeRoot);
  if (values.revocations === undefined && !hasHome) {
    throw new UsageError(`--revocations is required without a home\nusage: ${USAGE}`);
  }
  const revocations = values.revocations ?? revocationsPath(homeRoot);
  // The home publishes the list; start it empty rather than deny everything for a missing file.
  if (values.revocations === undefined && !existsSync(revocations)) {
    await writeFile(revocations, `${JSON.stringify({ version: 1, revoked: [] }, null, 2)}\n`, {
      flag: 'wx',
    }).catch(() => {});
  }
  const tls = await servingCertificate(values, homeRoot);
  const credentials = credentialsFromEnv();
  const webhook = await startAdmissionWebhook({
    host: m[1].replace(/^\[|\]$/g, ''),
    port: Number(m[2]),
    certPem: tls.certPem,
    keyPem: tls.keyPem,
    verifyImage: ociImageVerifier({
      policy,
      trustedRoot,
      revocationsPath: revocations,
      ...(credentials === undefined ? {} : { credentials }),
    }),
    onDecision: (d) =>
      process.stdout.write(
        `${new Date().toISOString()} ${d.uid} ${d.allowed ? 'allowed' : 'denied'}${d.message === undefined ? '' : `: ${d.message}`}\n`,
      ),
  });
  process.stdout.write(`gatehouse admission listening on https://${m[1]}:${webhook.port}/validate\n`);
  process.stdout.write(`caBundle: ${Buffer.from(tls.certPem).toString('base64')}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await webhook.close();
  return EXIT.ok;
}
