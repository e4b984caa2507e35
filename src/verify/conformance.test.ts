import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { verifyBundleCommand } from '../cli/commands/verify-bundle.ts';
import { exitCodeByCode } from '../cli/exit-codes.ts';
import { isGatehouseError } from '../common/errors.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BASE = resolve(ROOT, '../shared/data/sigstore-conformance/bundle-verify');
const PUBLIC_GOOD = resolve(ROOT, '../shared/data/sigstore-conformance/public-good-trusted_root.json');
const IDENTITY =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
const ISSUER = 'https://token.actions.githubusercontent.com';
const skip = existsSync(BASE) ? false : 'the sigstore-conformance data (../shared/data) is absent';

/** The argv the conformance harness passes for one case folder. */
function argvFor(dir: string, target?: string): string[] {
  const f = (n: string) => join(dir, n);
  const read = (n: string) => readFileSync(f(n), 'utf8').trim();
  const argv = ['--bundle', f('bundle.sigstore.json')];
  if (existsSync(f('key.pub'))) argv.push('--key', f('key.pub'));
  else {
    argv.push('--certificate-identity', existsSync(f('identity')) ? read('identity') : IDENTITY);
    argv.push('--certificate-oidc-issuer', existsSync(f('issuer')) ? read('issuer') : ISSUER);
  }
  argv.push('--trusted-root', existsSync(f('trusted_root.json')) ? f('trusted_root.json') : PUBLIC_GOOD);
  argv.push(target ?? (existsSync(f('artifact')) ? f('artifact') : join(BASE, 'a.txt')));
  return argv;
}

/** Run the command in-process, as the CLI would, and return its exit code. */
async function exitCode(argv: string[]): Promise<number> {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await verifyBundleCommand(argv);
  } catch (e) {
    if (isGatehouseError(e)) return exitCodeByCode[e.code];
    throw e;
  } finally {
    process.stdout.write = write;
  }
}

describe('sigstore-conformance bundle-verify cases', { skip }, () => {
  const cases = skip
    ? []
    : readdirSync(BASE)
        .filter((d) => statSync(join(BASE, d)).isDirectory())
        .sort();

  it('has the 70 cases', () => {
    assert.equal(cases.length, 70);
  });

  for (const name of cases) {
    const shouldFail = name.endsWith('_fail');
    it(`${shouldFail ? 'refuses' : 'verifies'} ${name}`, async () => {
      const code = await exitCode(argvFor(join(BASE, name)));
      if (shouldFail) assert.notEqual(code, 0);
      else assert.equal(code, 0);
    });
  }

  it('verifies a message signature given only the artifact digest, and refuses a wrong digest', async () => {
    const dir = join(BASE, 'happy-path-v0.3');
    const digest = createHash('sha256')
      .update(readFileSync(join(BASE, 'a.txt')))
      .digest('hex');
    assert.equal(await exitCode(argvFor(dir, `sha256:${digest}`)), 0);
    assert.notEqual(await exitCode(argvFor(dir, `sha256:${'0'.repeat(64)}`)), 0);
  });

  it('refuses the right bundle under another identity', async () => {
    const argv = argvFor(join(BASE, 'happy-path-v0.3'));
    argv[argv.indexOf('--certificate-identity') + 1] = 'https://github.com/someone/else';
    assert.equal(await exitCode(argv), 3);
  });

  it('exits 0 and 3 from the real CLI', async () => {
    const run = promisify(execFile);
    const bin = join(ROOT, 'bin/gatehouse');
    await run(bin, ['verify-bundle', ...argvFor(join(BASE, 'rekor2-happy-path'))]);
    await assert.rejects(run(bin, ['verify-bundle', ...argvFor(join(BASE, 'signature-mismatch_fail'))]), {
      code: 3,
    });
  });
});
