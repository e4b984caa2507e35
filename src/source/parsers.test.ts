import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { sshKeyPair } from '../testing/source.ts';
import { parseCommitObject } from './git.ts';
import { parseReviewRecord, REVIEW_TYPE } from './review.ts';
import {
  checkPrincipal,
  parseSshPublicKey,
  signatureFormat,
  sshSign,
  type TrustedSigner,
  verifySshSignature,
} from './signers.ts';
import { checkSourceRequirements, refMatches, unverified } from './source-provider.ts';

const T = 'a'.repeat(40);
const P = 'b'.repeat(40);
const ID = 'Alice <alice@example.com> 1700000000 +0000';
const SIG = '-----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----';
const commitText = (headers: string, message = 'msg\n') => Buffer.from(`${headers}\n\n${message}`, 'latin1');

describe('commit object parsing', () => {
  it('splits out the signature and leaves the payload git signs', () => {
    const raw = commitText(`tree ${T}\nparent ${P}\nauthor ${ID}\ncommitter ${ID}\ngpgsig ${SIG}`);
    const c = parseCommitObject(raw);
    assert.equal(c.tree, T);
    assert.deepEqual(c.parents, [P]);
    assert.equal(c.author.email, 'alice@example.com');
    assert.equal(c.signature, '-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n');
    assert.equal(c.payload.toString(), `tree ${T}\nparent ${P}\nauthor ${ID}\ncommitter ${ID}\n\nmsg\n`);
  });

  it('reads an unsigned root commit', () => {
    const c = parseCommitObject(commitText(`tree ${T}\nauthor ${ID}\ncommitter ${ID}`));
    assert.equal(c.signature, undefined);
    assert.deepEqual(c.parents, []);
  });

  it('removes a signature header for the other hash algorithm from the payload too', () => {
    const raw = commitText(`tree ${T}\nauthor ${ID}\ncommitter ${ID}\ngpgsig-sha256 ${SIG}`);
    const c = parseCommitObject(raw);
    assert.equal(c.signature, undefined);
    assert.ok(!c.payload.toString().includes('gpgsig'));
  });

  const bad: [string, string][] = [
    ['no tree', `author ${ID}\ncommitter ${ID}`],
    ['two trees', `tree ${T}\ntree ${T}\nauthor ${ID}\ncommitter ${ID}`],
    ['a short tree id', `tree abc\nauthor ${ID}\ncommitter ${ID}`],
    ['a parent that is not an id', `tree ${T}\nparent HEAD\nauthor ${ID}\ncommitter ${ID}`],
    ['two authors (which one approved?)', `tree ${T}\nauthor ${ID}\nauthor ${ID}\ncommitter ${ID}`],
    ['a malformed author', `tree ${T}\nauthor Alice alice@example.com\ncommitter ${ID}`],
    [
      'two signatures (ambiguous payload)',
      `tree ${T}\nauthor ${ID}\ncommitter ${ID}\ngpgsig ${SIG}\ngpgsig ${SIG}`,
    ],
    ['a leading continuation line', ` tree ${T}\nauthor ${ID}\ncommitter ${ID}`],
    ['a header without a value', `tree ${T}\nauthor ${ID}\ncommitter ${ID}\nencoding`],
  ];
  for (const [what, headers] of bad) {
    it(`refuses a commit with ${what}`, () => {
      assert.throws(
        () => parseCommitObject(commitText(headers)),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});

describe('signer keys and review records', () => {
  const ed = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm7nQ6zJ2o4cW7b5hJmX5H3Q8xXrK6o9Lr1o8R5i1Jd alice';

  it('reads an SSH public key and its fingerprint', () => {
    const k = parseSshPublicKey(ed);
    assert.equal(k.key, ed.split(' ').slice(0, 2).join(' '));
    assert.match(k.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  const badKeys: [string, string][] = [
    ['an unknown key type', 'ssh-dss AAAAB3NzaC1kc3M='],
    [
      'a blob of another type',
      'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGm7nQ6zJ2o4cW7b5hJmX5H3Q8xXrK6o9Lr1o8R5i1Jd',
    ],
    ['no base64', 'ssh-ed25519 !!!'],
    ['a private key', '-----BEGIN OPENSSH PRIVATE KEY-----'],
    ['nothing', ''],
  ];
  for (const [what, text] of badKeys) {
    it(`refuses an SSH key that is ${what}`, () => {
      assert.throws(
        () => parseSshPublicKey(text),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }

  it('refuses principals that would change an allowed-signers line', () => {
    for (const p of ['a b@example.com', '*', 'a@x,b@y', 'a"@x', '', 'x'.repeat(300)]) {
      assert.throws(
        () => checkPrincipal(p),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
        p,
      );
    }
    assert.equal(checkPrincipal('bob.smith+ci@example.com'), 'bob.smith+ci@example.com');
  });

  it('tells signature formats apart by their armour', () => {
    assert.equal(signatureFormat(SIG), 'ssh');
    assert.equal(signatureFormat('-----BEGIN PGP SIGNATURE-----\n'), 'gpg');
    assert.equal(signatureFormat('-----BEGIN SIGNED MESSAGE-----\n'), 'x509');
    assert.equal(signatureFormat('junk'), undefined);
  });

  const good = {
    type: REVIEW_TYPE,
    repository: 'file:///r',
    commit: T,
    reviewer: 'bob@example.com',
    decision: 'approve',
    timestamp: '2026-01-01T00:00:00Z',
  };
  it('parses a review record', () => {
    assert.deepEqual(parseReviewRecord(good, 'x'), good);
  });
  const badRecords: [string, Record<string, unknown>][] = [
    ['another type', { ...good, type: 'https://example.com/review' }],
    ['an abbreviated commit', { ...good, commit: 'abc123' }],
    ['a decision other than approve', { ...good, decision: 'reject' }],
    ['an extra field', { ...good, scope: 'all commits' }],
    ['no timestamp', { ...good, timestamp: undefined }],
  ];
  for (const [what, value] of badRecords) {
    it(`refuses a review record with ${what}`, () => {
      assert.throws(
        () => parseReviewRecord(value, 'x'),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});

describe('source requirements', () => {
  it('matches ref patterns within one path segment', () => {
    assert.equal(refMatches('refs/heads/main', 'refs/heads/main'), true);
    assert.equal(refMatches('refs/heads/main', 'refs/heads/main2'), false);
    assert.equal(refMatches('refs/heads/release/*', 'refs/heads/release/1.0'), true);
    assert.equal(refMatches('refs/heads/release/*', 'refs/heads/release/1/x'), false);
    assert.equal(refMatches('refs/tags/v*', 'refs/tags/v1.2.3'), true);
    assert.equal(refMatches('refs/heads/a.b', 'refs/heads/aXb'), false);
  });

  it('fails every requirement when the facts could not be established', () => {
    const v = unverified('local-git', 'file:///r', 'repository unreachable');
    assert.deepEqual(
      checkSourceRequirements(v, { minApprovals: 1 }).map((x) => x.requirement),
      ['verified'],
    );
    // Even with no requirement at all, unverified facts are not silently accepted.
    assert.equal(checkSourceRequirements(v, {}).length, 1);
  });
});

describe('SSH signature verification', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-sig-'));
  const keyFile = join(dir, 'k');
  const otherFile = join(dir, 'o');
  after(() => rmSync(dir, { recursive: true, force: true }));
  const signer = (principal: string, file: string): TrustedSigner => {
    const k = parseSshPublicKey(readFileSync(`${file}.pub`, 'utf8'));
    return { id: k.fingerprint, principal, format: 'ssh', publicKey: k.key, createdAt: '' };
  };

  it('accepts the trusted key in its namespace and refuses every other combination', async () => {
    sshKeyPair(keyFile);
    sshKeyPair(otherFile);
    const trusted = [signer('a@example.com', keyFile)];
    const sig = await sshSign(keyFile, 'gatehouse-review', 'payload');
    const ok = await verifySshSignature(trusted, 'gatehouse-review', sig, 'payload');
    assert.equal(ok.principal, 'a@example.com');
    assert.equal(ok.keyId, trusted[0]?.id);
    const refused: [string, () => Promise<unknown>][] = [
      ['a changed payload', () => verifySshSignature(trusted, 'gatehouse-review', sig, 'payload!')],
      [
        'another namespace (a commit signature passed off as a review)',
        () => verifySshSignature(trusted, 'git', sig, 'payload'),
      ],
      [
        'an untrusted key',
        () => verifySshSignature([signer('a@example.com', otherFile)], 'gatehouse-review', sig, 'payload'),
      ],
      ['no trusted keys', () => verifySshSignature([], 'gatehouse-review', sig, 'payload')],
      [
        'a mangled signature',
        () =>
          verifySshSignature(
            trusted,
            'gatehouse-review',
            // Always a different letter: replacing an 'A' with 'A' would change nothing.
            sig.replace(/[A-Za-z](?=[^\n]*\n-----END)/, (c) => (c === 'A' ? 'B' : 'A')),
            'payload',
          ),
      ],
      [
        'a signature that is not one',
        () => verifySshSignature(trusted, 'gatehouse-review', 'junk', 'payload'),
      ],
    ];
    for (const [what, p] of refused) {
      await assert.rejects(p(), (e) => isGatehouseError(e, 'SIGNATURE_INVALID'), what);
    }
  });
});
