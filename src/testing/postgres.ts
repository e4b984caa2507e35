/**
 * Test support (not product code): a throwaway PostgreSQL cluster. `initdb` in a temporary
 * directory as an unprivileged user (the `postgres` system user Debian's package creates, when the
 * tests run as root), a server on 127.0.0.1 with an ephemeral port and a socket in that directory,
 * password (SCRAM) authentication for the one role, stopped and removed at the end, also when the
 * test process exits early. Bounded: every step has a timeout.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The directories Debian installs PostgreSQL's server binaries into, newest first. */
function serverBinDirs(): string[] {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(base, v, 'bin'))
    .filter((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
}

/** A reason to skip PostgreSQL tests, or false when the server binaries are there. */
export function postgresSkip(): string | false {
  if (serverBinDirs().length > 0) return false;
  return 'PostgreSQL server binaries are not installed (scripts/setup installs postgresql)';
}

/** A CA and a server certificate for 127.0.0.1 (IP SAN only), made with openssl in `dir`. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore', timeout: 30_000 });
  openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'].concat([
      '-subj',
      '/CN=gatehouse test database CA',
      '-keyout',
      caKey,
      '-out',
      ca,
    ]),
  );
  openssl(
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      key,
      '-out',
      csr,
    ]),
  );
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2'].concat([
      '-extfile',
      ext,
      '-out',
      cert,
    ]),
  );
  return { ca, cert, key };
}

export interface TestPostgres {
  /** `postgres://gatehouse@127.0.0.1:PORT/gatehouse`, without the password. */
  url: string;
  port: number;
  username: string;
  password: string;
  /** A file holding the password (mode 0600), for `store.passwordFile`. */
  passwordFile: string;
  /** With `tls`: the CA that issued the server's certificate (for 127.0.0.1; 127.0.0.2 also listens). */
  caFile?: string;
  /** A fresh database in the cluster; its URL (without the password). */
  createDatabase(name: string): string;
  /** Run SQL as the cluster's superuser through psql, for tests that go around the store. */
  psql(database: string, sql: string): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const address = srv.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const running = new Set<() => void>();
process.once('exit', () => {
  for (const stop of running) stop();
});

/**
 * Start a cluster. The caller stops it (`after(() => pg.stop())`); a process that exits first
 * stops it on the way out.
 * @throws Error when the binaries are missing or the server does not start within a minute
 */
export async function startPostgres(options: { tls?: boolean } = {}): Promise<TestPostgres> {
  const [bin] = serverBinDirs();
  if (bin === undefined) throw new Error(String(postgresSkip()));
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  const data = join(dir, 'data');
  const username = 'gatehouse';
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(dir, 'password');
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  const pwInit = join(dir, 'initdb-password');
  writeFileSync(pwInit, `${password}\n`, { mode: 0o600 });
  // PostgreSQL refuses to run as root: the cluster belongs to the `postgres` system user then.
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[], timeout = 60_000): string => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    return execFileSync(file, argv, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const certs = options.tls === true ? makeCertificates(dir) : undefined;
  if (asRoot) {
    const ids = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const gid = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    for (const path of [dir, pwInit, ...(certs === undefined ? [] : [certs.cert, certs.key])])
      chownSync(path, Number(ids), Number(gid));
  }
  const port = await freePort();
  let started = false;
  const stopNow = (): void => {
    try {
      if (started) run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-t', '30', 'stop'], 40_000);
    } catch {
      // Already stopped.
    }
    rmSync(dir, { recursive: true, force: true });
  };
  running.add(stopNow);
  try {
    run(join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      username,
      '--auth=scram-sha-256',
      `--pwfile=${pwInit}`,
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ]);
    const serverOptions = [
      `-p ${port}`,
      certs === undefined
        ? "-c listen_addresses='127.0.0.1'"
        : `-c listen_addresses='127.0.0.1,127.0.0.2' -c ssl=on -c ssl_cert_file='${certs.cert}' -c ssl_key_file='${certs.key}'`,
      `-c unix_socket_directories='${dir}'`,
      // A throwaway cluster: durability is not what these tests measure.
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=200',
    ].join(' ');
    run(join(bin, 'pg_ctl'), [
      '-D',
      data,
      '-o',
      serverOptions,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '60',
      'start',
    ]);
    started = true;
  } catch (e) {
    running.delete(stopNow);
    stopNow();
    throw e;
  }
  const psql = (database: string, sql: string): string =>
    execFileSync(
      'psql',
      [
        '-X',
        '-q',
        '-t',
        '-A',
        '-v',
        'ON_ERROR_STOP=1',
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        username,
        '-d',
        database,
        '-c',
        sql,
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, PGPASSWORD: password },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
  const urlOf = (db: string) => `postgres://${username}@127.0.0.1:${port}/${db}`;
  psql('postgres', 'CREATE DATABASE gatehouse');
  return {
    url: urlOf('gatehouse'),
    port,
    username,
    password,
    passwordFile,
    ...(certs === undefined ? {} : { caFile: certs.ca }),
    createDatabase(name: string): string {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`);
      psql('postgres', `CREATE DATABASE ${name}`);
      return urlOf(name);
    },
    psql,
    async stop(): Promise<void> {
      running.delete(stopNow);
      stopNow();
    },
  };
}
