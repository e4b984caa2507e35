import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { UsageError } from '../cli/args.ts';
import { TRUSTED_ROOT_ENV, verifyBundleArgs } from '../cli/commands/verify-bundle.ts';
import { exitCodeByCode } from '../cli/exit-codes.ts';
import { isGatehouseError } from '../common/errors.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BASE = resolve(ROOT, '../shared/data/sigstore-conformance/bundle-verify');
const PUBLIC_GOOD = resolve(ROOT, '../shared/data/sigstore-conformance/public-good-trusted_root.json');
const IDENTITY =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
const ISSUER = 'https://token.actions.githubusercontent.com';
const skip = existsSync(BASE) ? false : 'the sigstore-conformance data (../shared/data) is absent';

/** The parts of a bundle the bad-input cases change. */
interface MutableBundle {
  dsseEnvelope?: unknown;
  verificationMaterial: { publicKey?: unknown; tlogEntries: { inclusionProof: { hashes: string[] } }[] };
}

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

/** Run the command's verification in-process and return the exit code the CLI would give. */
async function exitCode(argv: string[]): Promise<number> {
  try {
    await verifyBundleArgs(argv);
    return 0;
  } catch (e) {
    if (isGatehouseError(e)) return exitCodeByCode[e.code];
    throw e;
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

  describe('bad input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-vb-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const happy = join(BASE, 'rekor2-happy-path');
    const bundleText = skip ? '' : readFileSync(join(happy, 'bundle.sigstore.json'), 'utf8');
    const rootText = skip ? '' : readFileSync(join(happy, 'trusted_root.json'), 'utf8');
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const withFiles = (bundle: string, root: string) => {
      const argv = argvFor(happy);
      argv[argv.indexOf('--bundle') + 1] = bundle;
      argv[argv.indexOf('--trusted-root') + 1] = root;
      return argv;
    };
    const mutate = (f: (b: MutableBundle) => void) => {
      const b = JSON.parse(bundleText) as MutableBundle;
      f(b);
      return JSON.stringify(b);
    };
    const cases: [string, () => string[], number][] = [
      [
        'a truncated bundle',
        () => withFiles(write('t.json', bundleText.slice(0, 200)), join(happy, 'trusted_root.json')),
        1,
      ],
      [
        'a bundle with both content kinds',
        () =>
          withFiles(
            write(
              'both.json',
              mutate((b) => {
                b.dsseEnvelope = { payload: '', payloadType: 'x', signatures: [{ sig: 'AA==' }] };
              }),
            ),
            join(happy, 'trusted_root.json'),
          ),
        1,
      ],
      [
        'a bundle with two kinds of material',
        () =>
          withFiles(
            write(
              'mat.json',
              mutate((b) => {
                b.verificationMaterial.publicKey = { hint: 'x' };
              }),
            ),
            join(happy, 'trusted_root.json'),
          ),
        1,
      ],
      [
        'a proof hash of the wrong length',
        () =>
          withFiles(
            write(
              'len.json',
              mutate((b) => {
                const [entry] = b.verificationMaterial.tlogEntries;
                if (entry) entry.inclusionProof.hashes[0] = 'AAAA';
              }),
            ),
            join(happy, 'trusted_root.json'),
          ),
        1,
      ],
      [
        'a trusted root that is not JSON',
        () => withFiles(join(happy, 'bundle.sigstore.json'), write('root.json', rootText.slice(0, 50))),
        1,
      ],
      [
        'a trusted root without the TSA',
        () =>
          withFiles(
            join(happy, 'bundle.sigstore.json'),
            write('nots.json', JSON.stringify({ ...JSON.parse(rootText), timestampAuthorities: [] })),
          ),
        3,
      ],
      [
        'no trusted root at all',
        () => argvFor(happy).filter((a, i, all) => a !== '--trusted-root' && all[i - 1] !== '--trusted-root'),
        2,
      ],
      [
        'both a key and an identity',
        () => [
          ...argvFor(happy).slice(0, -1),
          '--key',
          join(BASE, 'managed-key-happy-path/key.pub'),
          join(BASE, 'a.txt'),
        ],
        2,
      ],
      ['a missing artifact', () => [...argvFor(happy).slice(0, -1), join(dir, 'absent')], 1],
    ];
    for (const [name, argv, code] of cases) {
      it(`refuses ${name} (exit ${code})`, async () => {
        const saved = process.env[TRUSTED_ROOT_ENV];
        delete process.env[TRUSTED_ROOT_ENV];
        try {
          const run = async () => exitCode(argv());
          if (code === 2) await assert.rejects(run(), UsageError);
          else assert.equal(await run(), code);
        } finally {
          if (saved !== undefined) process.env[TRUSTED_ROOT_ENV] = saved;
        }
      });
    }
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
