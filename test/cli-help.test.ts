/**
 * Help never does anything: every command's `--help` (wherever it stands among the arguments,
 * with a subcommand, with a fresh `--home`) and `gatehouse help CMD` print that command's usage
 * and examples and exit 0 without creating a file, a home, a cache or a listener. `--version`
 * prints the version; `--json` errors are one JSON document on stdout.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { COMMAND_HELP } from '../src/cli/help.ts';
import { repoRoot, tempDir } from './helpers.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function gatehouse(args: string[], sandbox: string): Promise<Run> {
  const cwd = join(sandbox, 'cwd');
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'src', 'cli', 'main.ts'), ...args],
      {
        cwd,
        timeout: 20_000,
        // A user with nothing yet: no home, no cache; anything created lands in the sandbox.
        env: {
          PATH: process.env.PATH ?? '',
          HOME: join(sandbox, 'user'),
          XDG_CACHE_HOME: join(sandbox, 'user', '.cache'),
        },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Every path under `dir`, relative. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

describe('gatehouse help', () => {
  const tmp = tempDir('help');
  after(() => tmp.cleanup());
  let n = 0;
  const sandbox = (): string => {
    const dir = join(tmp.path, String(n++));
    mkdirSync(join(dir, 'cwd'), { recursive: true });
    mkdirSync(join(dir, 'user'), { recursive: true });
    return dir;
  };

  const names = Object.keys(COMMAND_HELP) as (keyof typeof COMMAND_HELP)[];
  // The subcommand or arguments a real call would have, so that help wins over them too.
  const realArgs: Partial<Record<keyof typeof COMMAND_HELP, string[]>> = {
    run: ['.'],
    server: ['--listen', '127.0.0.1:0'],
    sbom: ['.'],
    policy: ['push', 'policy.yaml'],
    project: ['register', 'x', '--unverified-directory'],
    host: ['enroll', 'h', '--public-key', 'k.pem', '--pool', 'p'],
    triage: ['release', 'dec-1', '--reason', 'r'],
    vulndb: ['import', '.'],
    backup: ['out'],
    restore: ['out', '--replace'],
    demo: ['--keep'],
    attestation: ['vtpm-pool', 'fill', '2'],
    image: ['build'],
    source: ['protect', '.', '--branch', 'main'],
    revoke: [`sha256:${'a'.repeat(64)}`, '--reason', 'r'],
    alerts: ['replay', 'd-1'],
  };

  for (const name of names) {
    it(`${name} --help prints its usage and examples and creates nothing`, async () => {
      const box = sandbox();
      const home = join(box, 'home');
      for (const args of [
        [name, ...(realArgs[name] ?? []), '--help', '--home', home],
        [name, '-h', ...(realArgs[name] ?? []), '--home', home],
        ['help', name, '--home', home],
      ]) {
        const r = await gatehouse(args, box);
        assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
        assert.ok(
          r.stdout.startsWith(`usage: gatehouse ${name}`),
          `${args.join(' ')}: ${r.stdout.slice(0, 120)}`,
        );
        assert.match(r.stdout, /\nexamples:\n {2}gatehouse /);
        assert.equal(r.stderr, '');
      }
      assert.deepEqual(tree(box), ['cwd', 'user'], 'nothing was created: no home, no cache, no output');
    });
  }

  it('prints the global page for --help and help, and refuses an unknown topic', async () => {
    const box = sandbox();
    for (const args of [['--help'], ['help'], ['-h']]) {
      const r = await gatehouse(args, box);
      assert.equal(r.code, 0);
      for (const name of names) assert.match(r.stdout, new RegExp(`^ {2}${name} `, 'm'));
    }
    const none = await gatehouse([], box);
    assert.equal(none.code, 2, 'no command at all is a usage error');
    const unknown = await gatehouse(['help', 'nonsense'], box);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'nonsense'/);
    assert.deepEqual(tree(box), ['cwd', 'user']);
  });

  it('prints the version of package.json', async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V', 'version']) {
      const r = await gatehouse([flag], sandbox());
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `gatehouse ${version}\n`);
    }
  });

  it('treats --help after -- as an argument, not a request for help', async () => {
    const box = sandbox();
    const r = await gatehouse(['sbom', '--', '--help'], box);
    assert.notEqual(r.code, 0, 'sbom of a directory named --help that does not exist fails');
    assert.doesNotMatch(r.stdout, /^usage:/);
  });

  it('answers --json errors with one JSON document on stdout', async () => {
    const box = sandbox();
    const missing = await gatehouse(['policy', 'show', '--json', '--home', join(box, 'nowhere')], box);
    assert.equal(missing.code, 1);
    assert.deepEqual(Object.keys(JSON.parse(missing.stdout)), ['error']);
    assert.equal(JSON.parse(missing.stdout).error.code, 'HOME_NOT_INITIALIZED');
    const usage = await gatehouse(['run', '--bogus', '--json'], box);
    assert.equal(usage.code, 2);
    assert.equal(JSON.parse(usage.stdout).error.code, 'USAGE');
    assert.match(JSON.parse(usage.stdout).error.message, /--bogus/);
  });
});
