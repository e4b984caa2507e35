/**
 * Test support (not product code): real archives built with real tools (tar, gzip, zip, npm, go,
 * objcopy), OCI layouts written to the image-layout specification, and a tar header writer for
 * the crafted inputs no tool would make.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';

const exec = promisify(execFile);

/** Run a command; its stdout. */
export async function sh(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const { stdout } = await exec(cmd, args, { cwd, env, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** True when a command runs here. */
export async function have(cmd: string, args = ['--version']): Promise<boolean> {
  return exec(cmd, args).then(
    () => true,
    () => false,
  );
}

/** Write files (path → contents) under `dir`. */
export async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [p, body] of Object.entries(files)) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), body);
  }
}

/** A package.json. */
export const pkg = (name: string, version: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ name, version, ...extra });

/** A Python METADATA file. */
export const pyMetadata = (name: string, version: string): string =>
  `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\nSummary: x\n\nLong description: Name: not-this\n`;

/** A dpkg status paragraph of an installed package. */
export const dpkgParagraph = (name: string, version: string): string =>
  `Package: ${name}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: ${version}\nDescription: ${name}\n`;

export const DEBIAN_OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n';

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\0`;
}

/**
 * One raw tar header block (ustar). `size` may be larger than any data that follows: that is the
 * point of some tests. Sizes past 8 GiB are written in GNU base-256.
 */
export function tarHeader(name: string, size: number, type = '0', linkName = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write(octal(0o644, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  if (size < 8 * 1024 ** 3) h.write(octal(size, 12), 124, 'latin1');
  else {
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  h.write(octal(0, 12), 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write(linkName.slice(0, 100), 157, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

/** A whole tar of regular files, written by hand (for names real tools refuse to write). */
export function tarOf(files: [name: string, body: string | Buffer, type?: string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, body, type] of files) {
    const b = Buffer.from(body);
    parts.push(tarHeader(name, b.length, type ?? '0'), b, Buffer.alloc((512 - (b.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Write an OCI image layout at `dir` to the image-layout specification: each layer file (a tar or
 * tar.gz already built) becomes a blob, with a config, an image manifest and index.json.
 */
export async function writeOciLayout(dir: string, layerFiles: string[], ref = 'latest'): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (b: Buffer) => {
    const d = sha256(b);
    await writeFile(join(dir, 'blobs', 'sha256', d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const layers = [];
  const diffIds: string[] = [];
  for (const f of layerFiles) {
    const b = await readFile(f);
    const gz = b[0] === 0x1f && b[1] === 0x8b;
    layers.push({
      mediaType: gz
        ? 'application/vnd.oci.image.layer.v1.tar+gzip'
        : 'application/vnd.oci.image.layer.v1.tar',
      ...(await put(b)),
    });
    diffIds.push(`sha256:${sha256(b)}`);
  }
  const config = await put(
    Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }),
    ),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers,
    }),
  );
  const m = await put(manifest);
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...m,
          annotations: { 'org.opencontainers.image.ref.name': ref },
        },
      ],
    }),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** A layer tar.gz of `files` made with GNU tar (whiteouts are just files named `.wh.*`). */
export async function layerTarGz(work: string, name: string, files: Record<string, string>): Promise<string> {
  const root = join(work, `${name}-root`);
  await writeTree(root, files);
  const out = join(work, `${name}.tar.gz`);
  await sh('tar', ['-czf', out, '-C', root, '.'], work);
  return out;
}

/**
 * A Go binary with one module dependency, built by the real toolchain offline: the dependency is
 * served from a file:// module proxy written here.
 */
export async function buildGoBinary(work: string): Promise<string> {
  const proxy = join(work, 'goproxy');
  const mod = 'example.com/greet';
  const ver = 'v1.2.3';
  const stage = join(work, 'gostage');
  await writeTree(join(stage, `${mod}@${ver}`), {
    'go.mod': `module ${mod}\n\ngo 1.19\n`,
    'greet.go': 'package greet\n\nfunc Hello() string { return "hello" }\n',
  });
  const at = join(proxy, mod, '@v');
  await mkdir(at, { recursive: true });
  await sh('zip', ['-qr', join(at, `${ver}.zip`), `${mod}@${ver}`], stage);
  await writeFile(join(at, `${ver}.mod`), `module ${mod}\n\ngo 1.19\n`);
  await writeFile(join(at, `${ver}.info`), JSON.stringify({ Version: ver, Time: '2024-01-01T00:00:00Z' }));
  await writeFile(join(at, 'list'), `${ver}\n`);
  const app = join(work, 'goapp');
  await writeTree(app, {
    'go.mod': `module example.com/app\n\ngo 1.19\n\nrequire ${mod} ${ver}\n`,
    'main.go': 'package main\n\nimport "example.com/greet"\n\nfunc main() { println(greet.Hello()) }\n',
  });
  const env = {
    ...process.env,
    GOPROXY: `file://${proxy}`,
    GOSUMDB: 'off',
    GOFLAGS: '-mod=mod',
    GOPATH: join(work, 'gopath'),
    GOTOOLCHAIN: 'local',
  };
  await sh('go', ['build', '-o', join(work, 'app'), '.'], app, env);
  return join(work, 'app');
}

/**
 * A real ELF (a copy of `true`) with a `.dep-v0` section holding cargo auditable data in its
 * published format (zlib-compressed JSON), added with objcopy: cargo auditable itself is not
 * installable here (crates.io is out of reach).
 */
export async function auditableBinary(work: string, packages: unknown[]): Promise<string> {
  const data = join(work, 'dep-v0.zlib');
  await writeFile(data, deflateSync(Buffer.from(JSON.stringify({ packages })), { level: 7 }));
  const out = join(work, 'rust-app');
  await sh('objcopy', ['--add-section', `.dep-v0=${data}`, '/usr/bin/true', out], work);
  return out;
}

/** (name, version) pairs of a catalog, as `name@version`. */
export const pairs = (cs: { name: string; version: string }[]): string[] =>
  cs.map((c) => `${c.name}@${c.version}`).sort();
