/**
 * Test support (not product code): a real `docker-registry` (Debian's distribution build) on
 * 127.0.0.1 with an ephemeral port and a temporary storage folder, anonymous, with an htpasswd
 * file (bcrypt, the only format it reads), or behind a small bearer-token service on loopback.
 */
import '../signing/reflect-metadata-shim.ts';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { SignJWT } from 'jose';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';

x509.cryptoProvider.set(globalThis.crypto);

export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** A reason to skip registry tests, or false when the binary is there. */
export function registrySkip(): string | false {
  return existsSync(REGISTRY_BIN)
    ? false
    : 'docker-registry is not installed (apt-get install docker-registry)';
}

export interface TestRegistry {
  url: string;
  host: string;
  storage: string;
  /** What the registry printed, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export type TestAuth =
  | { kind: 'anonymous' }
  | { kind: 'htpasswd'; username: string; password: string }
  | { kind: 'token'; username: string; password: string };

async function freePort(): Promise<number> {
  const srv = createNetServer();
  const { port } = await listenOnLoopback(srv);
  await closeServer(srv);
  return port;
}

/** A bcrypt hash through the system's crypt(3) (libxcrypt), via perl, which every Debian has. */
export function bcrypt(password: string): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const salt = [...randomBytes(22)].map((b) => alphabet[b % 64]).join('');
  const hash = execFileSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`], {
    encoding: 'utf8',
  });
  if (!hash.startsWith('$2b$')) throw new Error('crypt(3) here does not do bcrypt');
  return hash;
}

interface TokenService {
  realm: string;
  issuer: string;
  service: string;
  certPem: string;
  /** Scopes the service was asked for, in order. */
  requests: string[][];
  close(): Promise<void>;
}

/** A minimal Docker token service: Basic credentials in, an ES256 JWT with an x5c chain out. */
async function startTokenService(username: string, password: string): Promise<TokenService> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=gatehouse test token service',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
    keys,
    signingAlgorithm: alg,
  });
  const issuer = 'gatehouse-test-token-service';
  const service = 'gatehouse-test-registry';
  const requests: string[][] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
      if (url.pathname !== '/token' || req.headers.authorization !== expected) {
        res.writeHead(401).end();
        return;
      }
      const scopes = url.searchParams.getAll('scope');
      requests.push(scopes);
      const access = scopes.flatMap((s) => {
        const [type, name, actions] = s.split(':');
        return type === 'repository' && name !== undefined
          ? [{ type, name, actions: (actions ?? '').split(',').filter((a) => a !== '') }]
          : [];
      });
      const token = await new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [Buffer.from(cert.rawData).toString('base64')] })
        .setIssuer(issuer)
        .setSubject(username)
        .setAudience(service)
        .setIssuedAt()
        .setNotBefore(Math.floor(Date.now() / 1000) - 30)
        .setExpirationTime('5m')
        .setJti(randomUUID())
        .sign(keys.privateKey);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ token, expires_in: 300 }));
    })();
  });
  const { url } = await listenOnLoopback(server);
  return {
    realm: `${url}/token`,
    issuer,
    service,
    certPem: cert.toString('pem'),
    requests,
    close: () => closeServer(server),
  };
}

/** Start docker-registry with a config written here; resolves once `/v2/` answers. */
export async function startRegistry(
  auth: TestAuth = { kind: 'anonymous' },
): Promise<TestRegistry & { tokenRequests?: string[][] }> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-registry-'));
  const storage = join(dir, 'storage');
  let token: TokenService | undefined;
  let authYaml = '';
  if (auth.kind === 'htpasswd') {
    await writeFile(join(dir, 'htpasswd'), `${auth.username}:${bcrypt(auth.password)}\n`, { mode: 0o600 });
    authYaml = `auth:\n  htpasswd:\n    realm: gatehouse-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth.kind === 'token') {
    token = await startTokenService(auth.username, auth.password);
    await writeFile(join(dir, 'token-ca.pem'), token.certPem);
    authYaml = `auth:\n  token:\n    realm: ${token.realm}\n    service: ${token.service}\n    issuer: ${token.issuer}\n    rootcertbundle: ${join(dir, 'token-ca.pem')}\n`;
  }
  let lastLog = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}\n${authYaml}`,
    );
    const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const keep = (b: Buffer): void => {
      log = (log + b.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const url = `http://127.0.0.1:${port}`;
    const up = await waitUp(url, child);
    if (up) {
      const stop = async (): Promise<void> => {
        if (child.exitCode === null) {
          const exited = new Promise<void>((r) => child.once('exit', () => r()));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exited;
          clearTimeout(timer);
        }
        await token?.close();
        await rm(dir, { recursive: true, force: true });
      };
      return {
        url,
        host: `127.0.0.1:${port}`,
        storage,
        log: () => log,
        stop,
        ...(token === undefined ? {} : { tokenRequests: token.requests }),
      };
    }
    lastLog = log;
    child.kill('SIGKILL');
  }
  await token?.close();
  await rm(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start: ${lastLog.slice(-500)}`);
}

async function waitUp(url: string, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) return false;
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
