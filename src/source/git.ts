import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

const run = promisify(execFile);

/**
 * The environment git runs in when gatehouse inspects a repository: no system or global config, no
 * prompts, no optional locks, so that neither the machine's nor the user's configuration changes
 * what gatehouse reads. The repository's own config is neutralised with `-c` overrides per call.
 */
function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: '/nonexistent',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_OPTIONAL_LOCKS: '0',
    LC_ALL: 'C',
  };
  return env;
}

/** Overrides that keep a repository's own config from running programs while gatehouse reads it. */
const SAFE = ['-c', 'core.fsmonitor=false', '-c', 'core.hooksPath=/dev/null', '-c', 'gc.auto=0'];

/**
 * Run git in `dir` and return stdout (untrimmed). Binary output comes back as a Buffer with `raw`.
 * @throws GatehouseError SOURCE_UNAVAILABLE naming the git command that failed
 */
export async function git(dir: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run('git', ['-C', dir, ...SAFE, ...args], {
      encoding: 'utf8',
      env: gitEnv(),
      maxBuffer: 256 * 1024 * 1024,
    });
    return stdout;
  } catch (e) {
    const stderr = String((e as { stderr?: string }).stderr ?? '')
      .trim()
      .split('\n')[0];
    throw new GatehouseError('SOURCE_UNAVAILABLE', `git ${args[0] ?? ''} failed: ${stderr || 'error'}`, {
      where: dir,
      cause: e,
    });
  }
}

/** Run git and report only whether it exited 0 (e.g. `merge-base --is-ancestor`). */
export async function gitOk(dir: string, args: string[]): Promise<boolean> {
  try {
    await run('git', ['-C', dir, ...SAFE, ...args], { env: gitEnv() });
    return true;
  } catch {
    return false;
  }
}

/** Full hex object ids: SHA-1 (40) or SHA-256 (64). */
export const OBJECT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/** A git identity line: `Name <email> seconds tz`. */
export interface GitIdentity {
  name: string;
  email: string;
  time: number;
}

/** A commit object, parsed; `payload` is what its signature covers. */
export interface ParsedCommit {
  tree: string;
  parents: string[];
  author: GitIdentity;
  committer: GitIdentity;
  /** The ASCII-armoured signature, without the header's continuation indentation. */
  signature?: string;
  /** The object bytes with the signature header removed: the data the signature signs. */
  payload: Buffer;
}

const IDENTITY = /^(.*?) ?<([^<>\n]*)> (\d{1,15}) ([+-]\d{4})$/;

function identity(value: string, field: string): GitIdentity {
  const m = IDENTITY.exec(value);
  if (m === null) throw new GatehouseError('BAD_INPUT', `commit ${field} line is malformed`);
  return { name: m[1] ?? '', email: m[2] ?? '', time: Number(m[3]) };
}

/**
 * Parse a raw commit object (as `git cat-file commit` prints it). Strict: one tree, one author,
 * one committer, at most one signature header per algorithm; the signature for `algorithm` is
 * returned and every signature header is removed from the payload, as git does when it verifies.
 * @throws GatehouseError BAD_INPUT naming the malformed header
 */
export function parseCommitObject(raw: Buffer, algorithm: 'sha1' | 'sha256' = 'sha1'): ParsedCommit {
  const text = raw.toString('latin1');
  const end = text.indexOf('\n\n');
  const headerText = end === -1 ? text.replace(/\n$/, '') : text.slice(0, end);
  const lines = headerText.split('\n');
  const sigHeader = algorithm === 'sha1' ? 'gpgsig' : 'gpgsig-sha256';
  const headers: { key: string; value: string; start: number; end: number }[] = [];
  let offset = 0;
  for (const line of lines) {
    const lineEnd = offset + line.length + 1;
    if (line.startsWith(' ')) {
      const last = headers[headers.length - 1];
      if (last === undefined) throw new GatehouseError('BAD_INPUT', 'commit starts with a continuation line');
      last.value += `\n${line.slice(1)}`;
      last.end = lineEnd;
    } else {
      const sp = line.indexOf(' ');
      if (sp <= 0) throw new GatehouseError('BAD_INPUT', `commit header '${line.slice(0, 40)}' has no value`);
      headers.push({ key: line.slice(0, sp), value: line.slice(sp + 1), start: offset, end: lineEnd });
    }
    offset = lineEnd;
  }
  const one = (key: string): string => {
    const found = headers.filter((h) => h.key === key);
    if (found.length !== 1) {
      throw new GatehouseError('BAD_INPUT', `commit has ${found.length} '${key}' headers, expected one`);
    }
    return (found[0] as { value: string }).value;
  };
  const tree = one('tree');
  if (!OBJECT_ID.test(tree)) throw new GatehouseError('BAD_INPUT', 'commit tree is not an object id');
  const parents = headers.filter((h) => h.key === 'parent').map((h) => h.value);
  for (const p of parents) {
    if (!OBJECT_ID.test(p)) throw new GatehouseError('BAD_INPUT', 'commit parent is not an object id');
  }
  const author = identity(one('author'), 'author');
  const committer = identity(one('committer'), 'committer');
  const sigs = headers.filter((h) => h.key === 'gpgsig' || h.key === 'gpgsig-sha256');
  const mine = sigs.filter((h) => h.key === sigHeader);
  if (mine.length > 1)
    throw new GatehouseError('BAD_INPUT', `commit has ${mine.length} '${sigHeader}' headers`);
  // Every signature header goes from the payload, whichever algorithm it is for.
  let payload = raw;
  for (const h of [...sigs].sort((a, b) => b.start - a.start)) {
    payload = Buffer.concat([payload.subarray(0, h.start), payload.subarray(h.end)]);
  }
  const parsed: ParsedCommit = { tree, parents, author, committer, payload };
  const sig = mine[0];
  if (sig !== undefined) parsed.signature = `${sig.value}\n`;
  return parsed;
}

/** Read and parse a commit. @throws GatehouseError SOURCE_UNAVAILABLE, BAD_INPUT */
export async function readCommit(repo: string, commit: string): Promise<ParsedCommit> {
  if (!OBJECT_ID.test(commit)) throw new GatehouseError('BAD_INPUT', `'${commit}' is not a full commit id`);
  const raw = await gitBytes(repo, ['cat-file', 'commit', commit]);
  return parseCommitObject(raw, commit.length === 64 ? 'sha256' : 'sha1');
}

/** Run git and return stdout as bytes. @throws GatehouseError SOURCE_UNAVAILABLE */
export async function gitBytes(dir: string, args: string[], input?: string): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('git', ['-C', dir, ...SAFE, ...args], {
      env: gitEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 4096) err += d.toString();
    });
    child.on('error', (e) =>
      reject(new GatehouseError('SOURCE_UNAVAILABLE', `cannot run git: ${e.message}`, { cause: e })),
    );
    child.on('close', (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out));
      else {
        reject(
          new GatehouseError(
            'SOURCE_UNAVAILABLE',
            `git ${args[0] ?? ''} failed: ${err.trim().split('\n')[0] || `exit ${code}`}`,
            { where: dir },
          ),
        );
      }
    });
    // git may exit (e.g. on a missing object) before reading its input.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** One entry of a commit's tree, as the pinned checkout writes it. */
export interface TreeEntry {
  path: string;
  kind: 'file' | 'executable' | 'symlink';
  /** Blob id, to read the content. */
  oid: string;
  /** sha256 hex of the content (for a symlink: of its target). */
  sha256: string;
  content: Buffer;
}

const BAD_COMPONENT = /^(?:|\.|\.\.|\.git)$/i;

/**
 * The files of `commit` (below `path`, when given), read from git objects: never through a work
 * tree, attributes, filters or hooks. Paths are checked so that no entry can leave the directory it
 * is written to; submodules are refused because their content is not in this repository.
 * @throws GatehouseError SOURCE_UNAVAILABLE, BAD_INPUT
 */
export async function readCommitTree(repo: string, commit: string, path?: string): Promise<TreeEntry[]> {
  if (!OBJECT_ID.test(commit)) throw new GatehouseError('BAD_INPUT', `'${commit}' is not a full commit id`);
  const prefix = path === undefined || path === '' ? '' : `${path.replace(/\/+$/, '')}/`;
  const treeish = prefix === '' ? `${commit}^{tree}` : `${commit}:${prefix.slice(0, -1)}`;
  const listing = await gitBytes(repo, ['ls-tree', '-r', '-z', '--full-tree', treeish]);
  const entries: { path: string; mode: string; oid: string }[] = [];
  for (const rec of listing.toString('utf8').split('\0')) {
    if (rec === '') continue;
    const tab = rec.indexOf('\t');
    const [mode, type, oid] = rec.slice(0, tab).split(' ');
    const p = rec.slice(tab + 1);
    if (tab < 0 || mode === undefined || type === undefined || oid === undefined || !OBJECT_ID.test(oid)) {
      throw new GatehouseError('BAD_INPUT', `unreadable tree entry in commit ${commit}`);
    }
    if (p.split('/').some((c) => BAD_COMPONENT.test(c)) || p.includes('\\')) {
      throw new GatehouseError('BAD_INPUT', `commit ${commit} holds an unsafe path '${p.slice(0, 200)}'`);
    }
    if (type === 'commit') {
      throw new GatehouseError(
        'BAD_INPUT',
        `commit ${commit} has a submodule at '${p}'; submodules are not built`,
      );
    }
    entries.push({ path: p, mode, oid });
  }
  if (entries.length === 0) return [];
  // One cat-file process for all blobs: `<oid> <type> <size>\n<content>\n` per object.
  const batch = await gitBytes(repo, ['cat-file', '--batch'], `${entries.map((e) => e.oid).join('\n')}\n`);
  let at = 0;
  return entries.map((e) => {
    const nl = batch.indexOf(0x0a, at);
    const [oid, type, size] = batch.subarray(at, nl).toString('latin1').split(' ');
    if (oid !== e.oid || type !== 'blob' || size === undefined) {
      throw new GatehouseError('SOURCE_UNAVAILABLE', `cannot read blob ${e.oid} of commit ${commit}`);
    }
    const content = batch.subarray(nl + 1, nl + 1 + Number(size));
    at = nl + 1 + Number(size) + 1;
    const kind = e.mode === '120000' ? 'symlink' : e.mode === '100755' ? 'executable' : 'file';
    return { path: e.path, kind, oid: e.oid, sha256: sha256Hex(content), content: Buffer.from(content) };
  });
}

/**
 * The digest of a pinned tree: sha256 over sorted lines `<kind> <sha256>  <path>\n`, kind `f`
 * (file), `x` (executable) or `l` (symlink, sha256 of its target). The runner computes it over the
 * workspace it built, the gate over the commit's git objects; they must agree.
 */
export function pinnedTreeDigest(
  entries: readonly { path: string; kind: TreeEntry['kind']; sha256: string }[],
): string {
  const letter = { file: 'f', executable: 'x', symlink: 'l' } as const;
  return sha256Hex(
    entries
      .map((e) => `${letter[e.kind]} ${e.sha256}  ${e.path}\n`)
      .sort()
      .join(''),
  );
}
