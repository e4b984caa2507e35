import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { BUILD_CONFIG, initRepo, reviewedAndSigned, sshKeyPair } from '../testing/source.ts';
import { addSigner, protectRef } from './admin.ts';
import { pinnedTreeDigest, readCommitTree } from './git.ts';
import { canonicalRepositoryUri, LocalGitProvider } from './local-git-provider.ts';
import { digestWorkspace, pinSource } from './pinned-checkout.ts';
import { recordReview } from './review.ts';
import type { SourceVerification } from './source-provider.ts';
import { verifySubmittedSource } from './verify-submission.ts';

const root = mkdtempSync(join(tmpdir(), 'gh-src-'));
const gnupg = join(root, 'gnupg');
const hasGpg = (() => {
  try {
    execFileSync('gpg', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function sh(cwd: string, cmd: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GNUPGHOME: gnupg, ...env },
  }).trim();
}

const key = (name: string): string => sshKeyPair(join(root, `${name}_ed25519`), name);
const newRepo = (name: string): string =>
  initRepo(join(root, name), { name: 'Alice', email: 'alice@example.com' });

/** Commit the given files; `sign` names an SSH key file, `gpg` signs with Carol's GPG key. */
function commit(
  dir: string,
  files: Record<string, string>,
  options: { sign?: string; gpg?: boolean } = {},
): string {
  for (const [path, content] of Object.entries(files)) writeFileSync(join(dir, path), content);
  sh(dir, 'git', ['add', '-A']);
  const signing =
    options.sign !== undefined
      ? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${options.sign}`, 'commit', '-S']
      : options.gpg === true
        ? ['-c', 'gpg.format=openpgp', '-c', 'user.signingkey=carol@example.com', 'commit', '-S']
        : ['commit'];
  sh(dir, 'git', [...signing, '-q', '-m', `change ${Object.keys(files).join(',')}`]);
  return sh(dir, 'git', ['rev-parse', 'HEAD']);
}

const rule = reviewedAndSigned();

describe('local git source provider', () => {
  const store = SqliteStore.open(':memory:');
  const provider = new LocalGitProvider({ store: store.source });
  let repo: string;
  let uri: string;
  let alice: string;
  let bob: string;
  let mallory: string;
  const c: Record<string, string> = {};
  const requirementsOf = (v: SourceVerification): string[] => v.violations.map((x) => x.requirement).sort();
  const verify = (commitId: string, extra: { treeDigest?: string } = {}) =>
    provider.verify({ repository: uri, commit: commitId, ...extra });

  before(async () => {
    alice = key('alice');
    bob = key('bob');
    mallory = key('mallory');
    repo = newRepo('app');
    uri = await canonicalRepositoryUri(repo);
    await addSigner(store.source, {
      principal: 'alice@example.com',
      format: 'ssh',
      key: readFileSync(`${alice}.pub`, 'utf8'),
    });
    await addSigner(store.source, {
      principal: 'bob@example.com',
      format: 'ssh',
      key: readFileSync(`${bob}.pub`, 'utf8'),
    });

    c.reviewed = commit(repo, { 'gatehouse.yaml': BUILD_CONFIG, 'build.sh': 'echo 1\n' }, { sign: alice });
    sh(repo, 'git', ['checkout', '-q', '-b', 'feature']);
    c.feature = commit(repo, { 'build.sh': 'echo feature\n' }, { sign: alice });
    sh(repo, 'git', ['checkout', '-q', 'main']);
    c.unreviewed = commit(repo, { 'build.sh': 'echo 2\n' }, { sign: alice });
    c.selfApproved = commit(repo, { 'build.sh': 'echo 3\n' }, { sign: alice });
    c.unsigned = commit(repo, { 'build.sh': 'echo 4\n' });
    c.wrongKey = commit(repo, { 'build.sh': 'echo 5\n' }, { sign: mallory });
    if (hasGpg) {
      mkdirSync(gnupg, { mode: 0o700 });
      sh(root, 'gpg', [
        '--batch',
        '--passphrase',
        '',
        '--quick-gen-key',
        'Carol <carol@example.com>',
        'ed25519',
        'sign',
        'never',
      ]);
      const armored = sh(root, 'gpg', ['--armor', '--export', 'carol@example.com']);
      await addSigner(store.source, { principal: 'carol@example.com', format: 'gpg', key: armored });
      c.gpg = commit(repo, { 'build.sh': 'echo 6\n' }, { gpg: true });
      sh(root, 'gpgconf', ['--kill', 'all']);
    }
    await protectRef(store.source, repo, 'refs/heads/main', rule);
    for (const [name, reviewer, keyFile] of [
      ['reviewed', 'bob@example.com', bob],
      ['feature', 'bob@example.com', bob],
      ['selfApproved', 'alice@example.com', alice],
      ['unsigned', 'bob@example.com', bob],
      ['wrongKey', 'bob@example.com', bob],
      ...(hasGpg ? [['gpg', 'bob@example.com', bob]] : []),
    ] as const) {
      await recordReview({
        store: store.source,
        repository: uri,
        commit: c[name] as string,
        reviewer,
        keyFile,
      });
    }
  });

  after(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('approves the reviewed, signed commit on the protected branch', async () => {
    const v = await verify(c.reviewed as string);
    assert.equal(v.verified, true, v.problems.join('; '));
    assert.deepEqual(v.violations, []);
    assert.equal(v.onProtectedRef, true);
    assert.deepEqual(
      v.approvals.map((a) => [a.reviewer, a.exact, a.byAuthor]),
      [['bob@example.com', true, false]],
    );
    assert.equal(v.signature.trusted, true);
    assert.equal(v.signature.signer, 'alice@example.com');
    assert.equal(v.reviewedCommit, c.reviewed);
    assert.equal(v.buildConfig?.path, 'gatehouse.yaml');
    assert.match(v.buildConfig?.sha256 ?? '', /^[0-9a-f]{64}$/);
  });

  it('refuses an unreviewed commit', async () => {
    const v = await verify(c.unreviewed as string);
    assert.deepEqual(requirementsOf(v), ['approvals']);
    assert.match(
      v.violations[0]?.message ?? '',
      /has 0 approvals by someone other than its author, 1 required/,
    );
  });

  it('refuses a commit that is only on an unprotected branch', async () => {
    const v = await verify(c.feature as string);
    assert.deepEqual(requirementsOf(v), ['protected-ref']);
    assert.match(v.violations[0]?.message ?? '', /is not on a protected ref \(refs\/heads\/main\)/);
  });

  it('refuses a change its author approved', async () => {
    const v = await verify(c.selfApproved as string);
    assert.deepEqual(requirementsOf(v), ['approvals', 'self-approval']);
    assert.match(
      v.violations.find((x) => x.requirement === 'self-approval')?.message ?? '',
      /approved by its own author alice@example.com/,
    );
  });

  it('refuses an unsigned commit and one signed by an untrusted key', async () => {
    const unsigned = await verify(c.unsigned as string);
    assert.deepEqual(requirementsOf(unsigned), ['signed-commit']);
    assert.match(unsigned.violations[0]?.message ?? '', /is not signed/);
    const wrong = await verify(c.wrongKey as string);
    assert.deepEqual(requirementsOf(wrong), ['signed-commit']);
    assert.equal(wrong.signature.present, true);
    assert.match(wrong.violations[0]?.message ?? '', /ssh signature that no trusted signer made/);
  });

  it('trusts a commit signed with a trusted GPG key', {
    skip: hasGpg ? false : 'gpg is not installed',
  }, async () => {
    const v = await verify(c.gpg as string);
    assert.deepEqual(v.violations, []);
    assert.equal(v.signature.format, 'gpg');
    assert.equal(v.signature.signer, 'carol@example.com');
  });

  it('refuses a job whose tree is not the commit it names', async () => {
    const other = pinnedTreeDigest(await readCommitTree(repo, c.unreviewed as string));
    const own = pinnedTreeDigest(await readCommitTree(repo, c.reviewed as string));
    assert.equal((await verify(c.reviewed as string, { treeDigest: own })).treeMatches, true);
    const v = await verify(c.reviewed as string, { treeDigest: other });
    assert.deepEqual(requirementsOf(v), ['tree']);
    assert.match(v.violations[0]?.message ?? '', /is not the tree of commit/);
    // A work tree with local changes is never taken for its commit.
    const dirty = await verifySubmittedSource([provider], {
      kind: 'git',
      uri,
      commit: c.reviewed as string,
      dirty: true,
      treeDigest: own,
    });
    assert.deepEqual(requirementsOf(dirty), ['tree']);
  });

  it('ignores a review record whose signature is not the reviewer’s', async () => {
    const rows = await store.source.reviews(uri);
    const bobs = rows.find((r) => r.commit === c.reviewed);
    assert.ok(bobs);
    // Same record, signed by Mallory's key: kept by the store, refused by the provider.
    const forged = JSON.parse(bobs.record) as Record<string, string>;
    forged.commit = c.unreviewed as string;
    const { sshSign } = await import('./signers.ts');
    const { reviewPayload } = await import('./review.ts');
    const { sha256Hex } = await import('../common/encoding.ts');
    const payload = reviewPayload(forged as never);
    await store.source.addReview({
      ...bobs,
      id: sha256Hex(payload),
      commit: c.unreviewed as string,
      record: payload.toString('utf8'),
      signature: await sshSign(mallory, 'gatehouse-review', payload),
    });
    const v = await verify(c.unreviewed as string);
    assert.deepEqual(requirementsOf(v), ['approvals']);
    assert.ok(v.problems.some((p) => /not signed by a trusted key of bob@example.com/.test(p)));
  });

  it('reports an unregistered repository as unverified', async () => {
    const v = await provider.verify({ repository: 'file:///nonexistent/repo', commit: c.reviewed as string });
    assert.equal(v.verified, false);
    assert.match(v.problems[0] ?? '', /not registered/);
  });

  it('refuses a build configuration changed after review, and accepts other changes', async () => {
    const repo2 = newRepo('app2');
    const r1 = commit(repo2, { 'gatehouse.yaml': BUILD_CONFIG, 'build.sh': 'echo 1\n' });
    const r2 = commit(repo2, { 'build.sh': 'echo 2\n' });
    const r3 = commit(repo2, { 'gatehouse.yaml': BUILD_CONFIG.replace('build.sh', 'evil.sh') });
    const { repository } = await protectRef(store.source, repo2, 'refs/heads/main', {
      ...rule,
      signedCommits: false,
      staleApprovals: true,
      buildConfigUnchanged: true,
    });
    await recordReview({
      store: store.source,
      repository,
      commit: r1,
      reviewer: 'bob@example.com',
      keyFile: bob,
    });
    const ok = await provider.verify({ repository, commit: r2 });
    assert.deepEqual(ok.violations, []);
    assert.equal(ok.reviewedCommit, r1);
    const changed = await provider.verify({ repository, commit: r3 });
    assert.deepEqual(requirementsOf(changed), ['build-config']);
    assert.match(
      changed.violations[0]?.message ?? '',
      /build configuration gatehouse.yaml changed after review/,
    );
  });

  it('detects a force push of the protected branch and refuses until the head is accepted', async () => {
    const before = await verify(c.reviewed as string);
    assert.deepEqual(before.violations, []);
    sh(repo, 'git', ['reset', '-q', '--hard', c.reviewed as string]);
    const rewritten = commit(repo, { 'build.sh': 'echo rewritten\n' }, { sign: alice });
    await recordReview({
      store: store.source,
      repository: uri,
      commit: rewritten,
      reviewer: 'bob@example.com',
      keyFile: bob,
    });
    const v = await verify(rewritten);
    assert.ok(requirementsOf(v).includes('rewritten'), JSON.stringify(v.violations));
    assert.match(
      v.violations.find((x) => x.requirement === 'rewritten')?.message ?? '',
      /refs\/heads\/main was rewritten/,
    );
    // Sticky: still refused on the next look, even for the commit that was fine before.
    assert.ok(requirementsOf(await verify(c.reviewed as string)).includes('rewritten'));
    await protectRef(store.source, repo, 'refs/heads/main', rule, { acceptHead: true });
    assert.deepEqual((await verify(rewritten)).violations, []);
  });
});

describe('pinned checkout', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-pin-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses commits whose trees would write outside the workspace or into .git, and submodules', async () => {
    const repo = join(dir, 'crafted');
    mkdirSync(repo);
    sh(repo, 'git', ['init', '-q']);
    const blob = execFileSync('git', ['-C', repo, 'hash-object', '-w', '--stdin'], {
      input: 'x\n',
      encoding: 'utf8',
    }).trim();
    const mktree = (entries: string) =>
      execFileSync('git', ['-C', repo, 'mktree'], { input: entries, encoding: 'utf8' }).trim();
    const commitOf = (tree: string) =>
      execFileSync(
        'git',
        ['-C', repo, '-c', 'user.name=M', '-c', 'user.email=m@example.com', 'commit-tree', tree, '-m', 'x'],
        {
          encoding: 'utf8',
        },
      ).trim();
    const cases: [string, string][] = [
      ['.git', mktree(`100644 blob ${blob}\t.git\n`)],
      ['.GIT (case)', mktree(`100644 blob ${blob}\t.GIT\n`)],
      ['..', mktree(`040000 tree ${mktree(`100644 blob ${blob}\tpasswd\n`)}\t..\n`)],
      ['.', mktree(`100644 blob ${blob}\t.\n`)],
      ['a submodule', mktree(`160000 commit ${'1'.repeat(40)}\tsub\n`)],
    ];
    for (const [what, tree] of cases) {
      await assert.rejects(
        readCommitTree(repo, commitOf(tree)),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
        what,
      );
    }
  });

  it('fills the workspace with exactly the commit, and copies a dirty tree as a directory', async () => {
    const repo = initRepo(join(dir, 'repo'), { name: 'A', email: 'a@example.com' });
    mkdirSync(join(repo, 'sub'));
    writeFileSync(join(repo, 'sub', 'gatehouse.yaml'), BUILD_CONFIG);
    writeFileSync(join(repo, 'sub', 'run.sh'), 'echo hi\n', { mode: 0o755 });
    sh(repo, 'ln', ['-s', 'run.sh', 'sub/link']);
    writeFileSync(join(repo, 'outside.txt'), 'not built\n');
    sh(repo, 'git', ['add', '-A']);
    sh(repo, 'git', ['commit', '-q', '-m', 'one']);
    const head = sh(repo, 'git', ['rev-parse', 'HEAD']);
    const ws = join(dir, 'ws');
    mkdirSync(ws);
    writeFileSync(join(ws, 'stale.txt'), 'left over from the copy\n');

    const pinned = await pinSource(join(repo, 'sub'));
    assert.equal(pinned.pinned, true);
    const facts = await pinned.populate(ws, BUILD_CONFIG);
    assert.equal(facts?.commit, head);
    assert.equal(facts?.path, 'sub');
    assert.equal(facts?.pinned, true);
    assert.deepEqual((await digestWorkspace(ws)).map((e) => `${e.kind} ${e.path}`).sort(), [
      'executable run.sh',
      'file gatehouse.yaml',
      'symlink link',
    ]);
    assert.equal(facts?.treeDigest, pinnedTreeDigest(await readCommitTree(repo, head, 'sub')));

    await assert.rejects(pinned.populate(ws, `${BUILD_CONFIG}# other\n`), (e) =>
      isGatehouseError(e, 'SOURCE_MISMATCH'),
    );

    writeFileSync(join(repo, 'sub', 'run.sh'), 'echo changed\n');
    const dirty = await pinSource(join(repo, 'sub'));
    assert.equal(dirty.pinned, false);
    assert.equal(dirty.facts.dirty, true);
    assert.equal(await dirty.populate(ws, BUILD_CONFIG), undefined);
  });
});
