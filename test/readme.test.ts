/**
 * The README's walkthrough runs exactly as written: the fenced block after `<!-- walkthrough -->`
 * is run by bash (errors stop it) in an empty directory holding `bin/` and `examples/` of this
 * repository, as the README tells the reader to, and must end with a verified artifact.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { missingTools, repoRoot, tempDir } from './helpers.ts';

/** The shell blocks the README marks as walkthroughs, in order. */
export function walkthroughs(markdown: string): string[] {
  const out: string[] = [];
  const re = /<!-- walkthrough -->\n```sh\n([\s\S]*?)\n```/g;
  for (let m = re.exec(markdown); m !== null; m = re.exec(markdown)) if (m[1] !== undefined) out.push(m[1]);
  return out;
}

describe('README walkthrough', { skip: missingTools('git', 'ssh-keygen', 'bwrap', 'swtpm') }, () => {
  const tmp = tempDir('readme');
  after(() => tmp.cleanup());

  it('finds the walkthrough block', () => {
    assert.equal(walkthroughs(readFileSync(join(repoRoot, 'README.md'), 'utf8')).length, 1);
  });

  it('runs verbatim and ends with VERIFIED', async () => {
    const [script] = walkthroughs(readFileSync(join(repoRoot, 'README.md'), 'utf8'));
    assert.ok(script !== undefined);
    const dir = join(tmp.path, 'reader');
    mkdirSync(join(dir, 'user'), { recursive: true });
    symlinkSync(join(repoRoot, 'bin'), join(dir, 'bin'));
    symlinkSync(join(repoRoot, 'examples'), join(dir, 'examples'));
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          // A reader with nothing configured: git and caches live in the directory.
          HOME: join(dir, 'user'),
          GATEHOUSE_BACKGROUND_FILL: '0',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, out });
      });
    });
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /^ALLOWED {2}app /m);
    assert.match(result.out, /^VERIFIED {2}dist\/hello-app\.tar$/m);
  });
});
