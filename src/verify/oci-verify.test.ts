import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, examplesDir } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { blobOf, emptyConfig, manifestBlob } from '../registry/manifests.ts';
import { OciDistributionRegistry } from '../registry/oci-distribution-registry.ts';
import { OCI_MANIFEST, parseImageManifest } from '../registry/oci-format.ts';
import { fallbackTag } from '../registry/oci-names.ts';
import { RUN_PREFIXES } from '../registry/registry-config.ts';
import { createApiServer } from '../server/http-server.ts';
import { parseRevocations, type RevocationList } from '../signing/revocation-list.ts';
import { IDENTITY_BASE, ISSUER, makeOciWorld, type OciWorld } from '../testing/oci-fixture.ts';
import { registrySkip } from '../testing/registry.ts';
import { artifactFile } from '../testing/registry-contract.ts';
import { BUNDLE_MEDIA_TYPE } from './bundle-discovery.ts';
import { type DeployPolicy, parseDeployPolicy } from './deploy-policy.ts';
import { parseOciReference } from './oci-reference.ts';
import { verifyOciArtifact } from './oci-verify.ts';

const skip = registrySkip();
const none: RevocationList = { version: 1, revoked: [] };
const policy: DeployPolicy = {
  projects: ['hello-app'],
  identityBase: IDENTITY_BASE,
  issuer: ISSUER,
  require: ['provenance', 'sbom', 'vsa'],
  minBuildLevel: 2,
  maxAge: '1d',
};

describe('deploy-time verification of a registry artifact', { skip }, () => {
  let w: OciWorld;
  before(async () => {
    w = await makeOciWorld();
  });
  after(() => w?.close());

  const verify = (over: Partial<Parameters<typeof verifyOciArtifact>[0]> = {}) =>
    verifyOciArtifact({
      reference: `oci://${w.allowedRef}`,
      trustedRoot: w.trustedRoot,
      policy,
      revocations: none,
      plainHttp: true,
      ...over,
    });

  it('promotes the allowed artifact with provenance, SBOM and VSA bundles as referrers and cosign tags', () => {
    assert.equal(w.allowed.outcome, 'allow');
    assert.equal(w.allowed.placement.referrers.length, 5);
    assert.equal(w.allowed.placement.cosignTags.length, 2);
  });

  it('verifies it from the referrers: identity, project, attestations and the VSA with its policy digest', async () => {
    const r = await verify();
    assert.equal(
      r.discovery,
      'referrers-tag',
      'distribution 2.8 has no referrers API: the fallback tag is read',
    );
    assert.equal(r.identity, `${IDENTITY_BASE}/projects/hello-app`);
    assert.equal(r.project, 'hello-app');
    assert.deepEqual(r.attestations.map((a) => a.kind).sort(), ['provenance', 'sbom', 'vsa']);
    assert.equal(r.decision?.policyDigest, w.allowed.policyDigest);
    // The fixture's runner attested with a vTPM: Build L3.
    assert.equal(r.decision?.buildLevel, 3);
  });

  const failures: [string, Partial<DeployPolicy>, RegExp][] = [
    ['another project', { projects: ['other-app'] }, /does not allow/],
    ['another issuer', { issuer: 'https://evil.example' }, /issuer/],
    ['a higher build level', { minBuildLevel: 4 }, /level 3, the deploy policy requires 4/],
    ['another policy digest', { policyDigests: ['0'.repeat(64)] }, /does not accept/],
  ];
  for (const [what, change, message] of failures) {
    it(`fails for ${what}`, async () => {
      await assert.rejects(verify({ policy: { ...policy, ...change } }), (e) => {
        assert.ok(isGatehouseError(e, 'VERIFICATION_FAILED'), String(e));
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('fails a decision older than the maximum age', async () => {
    await assert.rejects(verify({ now: new Date(Date.now() + 2 * 86400_000) }), /more than the 1d allowed/);
  });

  it('fails a revoked artifact, by manifest or by file digest', async () => {
    const revokedAt = new Date().toISOString();
    for (const digest of [
      w.allowed.placement.manifestDigest,
      `sha256:${'a'.repeat(0)}${(await verify()).files[0]?.sha256}`,
    ]) {
      await assert.rejects(
        verify({
          revocations: { version: 1, revoked: [{ digest, reason: 'key compromise drill', revokedAt }] },
        }),
        (e) => isGatehouseError(e, 'ARTIFACT_REVOKED') && /key compromise drill/.test(e.message),
      );
    }
  });

  it('finds nothing for the denied artifact in the promoted repository, and never verifies it', async () => {
    assert.equal(w.denied.outcome, 'deny');
    assert.equal(w.denied.placement.area, 'quarantine');
    assert.equal(w.denied.placement.cosignTags.length, 0);
    const promoted = w.deniedRef.replace('/quarantine/', '/promoted/');
    await assert.rejects(
      verify({ reference: promoted, policy: { ...policy, projects: ['shady-app'] } }),
      (e) => isGatehouseError(e, 'NOT_FOUND'),
    );
    await assert.rejects(
      verify({ reference: w.deniedRef, policy: { ...policy, projects: ['shady-app'] } }),
      (e) => isGatehouseError(e, 'VERIFICATION_FAILED'),
    );
  });

  /** Attach `bytes` as a bundle referrer of `subject` in `repo`, as anyone with push access could. */
  async function attachBundle(repo: string, subject: string, bytes: Uint8Array): Promise<void> {
    const layer = blobOf(bytes, BUNDLE_MEDIA_TYPE);
    const empty = emptyConfig();
    await w.client.pushBlob(repo, layer.bytes);
    await w.client.pushBlob(repo, empty.bytes);
    const size = (await w.client.getManifest(repo, subject))?.bytes.byteLength ?? 0;
    const m = manifestBlob({
      artifactType: BUNDLE_MEDIA_TYPE,
      config: empty.descriptor,
      layers: [layer.descriptor],
      subject: { mediaType: OCI_MANIFEST, digest: subject, size },
    });
    await w.client.pushReferrer(repo, subject, m.bytes, BUNDLE_MEDIA_TYPE);
  }

  it('sets aside a junk bundle attached to the artifact and still verifies it', async () => {
    await attachBundle(
      'gatehouse/promoted/hello-app',
      w.allowed.placement.manifestDigest,
      new TextEncoder().encode('{"junk":true}'),
    );
    const r = await verify();
    assert.equal(r.attestations.length, 3);
  });

  it('does not accept bundles copied from an approved artifact onto another one', async () => {
    const repo = 'gatehouse/promoted/hello-app';
    const subject = w.allowed.placement.manifestDigest;
    // Another artifact, pushed straight to the promoted repository by someone with push access.
    const copycat = await new OciDistributionRegistry({ client: w.client, ...RUN_PREFIXES }).promote({
      project: 'hello-app',
      tag: 'copycat',
      files: [artifactFile('hello-app.tar', 'a look-alike\n')],
      attachments: [],
    });
    const { manifests } = await w.client.referrers(repo, subject);
    for (const m of manifests.filter((x) => x.artifactType === BUNDLE_MEDIA_TYPE)) {
      const manifest = await w.client.getManifest(repo, m.digest);
      const layer =
        manifest === undefined ? undefined : parseImageManifest(manifest.bytes, m.digest).layers[0];
      if (layer === undefined) continue;
      await attachBundle(repo, copycat.manifestDigest, await w.client.getBlob(repo, layer.digest, 1 << 24));
    }
    const ref = `${w.registry.host}/${repo}@${copycat.manifestDigest}`;
    await assert.rejects(verify({ reference: ref }), (e) => {
      assert.ok(isGatehouseError(e, 'VERIFICATION_FAILED'), String(e));
      assert.match(e.message, /no verified provenance attestation .*rejected: .*artifact digest/);
      return true;
    });
  });

  it('does not accept the bundles on another manifest of the very same file: they name the manifest signed', async () => {
    const repo = 'gatehouse/promoted/hello-app';
    const subject = w.allowed.placement.manifestDigest;
    // The same bytes under another manifest (here another creation time; for an image, another
    // entrypoint): every file is a subject of the bundles, the manifest is not.
    const twin = await new OciDistributionRegistry({ client: w.client, ...RUN_PREFIXES }).promote({
      project: 'hello-app',
      tag: 'twin',
      files: [artifactFile('hello-app.tar', 'hello, world\n')],
      attachments: [],
      createdAt: '2020-01-01T00:00:00.000Z',
    });
    assert.notEqual(twin.manifestDigest, subject);
    const { manifests } = await w.client.referrers(repo, subject);
    for (const m of manifests.filter((x) => x.artifactType === BUNDLE_MEDIA_TYPE)) {
      const manifest = await w.client.getManifest(repo, m.digest);
      const layer =
        manifest === undefined ? undefined : parseImageManifest(manifest.bytes, m.digest).layers[0];
      if (layer === undefined) continue;
      await attachBundle(repo, twin.manifestDigest, await w.client.getBlob(repo, layer.digest, 1 << 24));
    }
    await assert.rejects(verify({ reference: `${w.registry.host}/${repo}@${twin.manifestDigest}` }), (e) => {
      assert.ok(isGatehouseError(e, 'VERIFICATION_FAILED'), String(e));
      assert.match(e.message, new RegExp(`rejected: .*artifact digest ${twin.manifestDigest}`));
      return true;
    });
  });

  it('CLI: gatehouse verify oci://… exits 0 when verified and 3 when revoked', async () => {
    const policyFile = join(w.homeDir, 'deploy-policy.yaml');
    await writeFile(
      policyFile,
      `projects: [hello-app]\nidentityBase: ${IDENTITY_BASE}\nissuer: ${ISSUER}\nmaxAge: 30d\n`,
    );
    const args = [
      'verify',
      `oci://${w.allowedRef}`,
      '--policy',
      policyFile,
      '--plain-http',
      '--home',
      w.homeDir,
    ];
    const ok = await cli([...args, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).verified, true);
    await w.setRevoked('recalled');
    const revoked = await cli(args);
    assert.equal(revoked.code, 3);
    assert.match(revoked.stderr, /revoked/);
    assert.equal(revoked.stderr.trim().split('\n').length, 1);
    await w.setRevoked();
  });

  it('CLI: away from the control plane, a missing revocation list fails verification unless waived out loud', async () => {
    const root = join(w.homeDir, 'exported-root.json');
    await writeFile(root, JSON.stringify(w.trustedRoot));
    const policyFile = join(w.homeDir, 'away-policy.yaml');
    await writeFile(policyFile, `projects: [hello-app]\nidentityBase: ${IDENTITY_BASE}\nissuer: ${ISSUER}\n`);
    const args = ['verify', `oci://${w.allowedRef}`, '--plain-http', '--trusted-root', root];
    const policy = ['--policy', policyFile, '--home', join(w.homeDir, 'no-home-here')];
    const missing = await cli([...args, ...policy]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /no revocation list/);
    const waived = await cli([...args, ...policy, '--no-revocation-check']);
    assert.equal(waived.code, 0, waived.stderr);
    assert.match(waived.stderr, /revocation check is waived/);
    // From the control plane: the list it signs with the log key, fresh.
    const server = createApiServer({ controlPlane: w.home.controlPlane, apiToken: w.home.apiToken });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const fetched = await cli([...args, ...policy, '--server', url]);
      assert.equal(fetched.code, 0, fetched.stderr);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('CLI: gatehouse run --registry URL promotes a real build there, and verify oci:// accepts it', {
    skip: existsSync('/usr/bin/bwrap') ? false : 'bubblewrap is not installed',
  }, async () => {
    const example = join(examplesDir, 'hello-app');
    const ran = await cli(['run', example, '--registry', w.registry.url, '--home', w.homeDir, '--json']);
    assert.equal(ran.code, 0, ran.stderr);
    const placement = JSON.parse(ran.stdout).decision.placement as {
      reference: string;
      manifestDigest: string;
    };
    assert.ok(placement.reference.startsWith(`${w.registry.host}/gatehouse/promoted/hello-app:`));
    const ref = `oci://${w.registry.host}/gatehouse/promoted/hello-app@${placement.manifestDigest}`;
    const verified = await cli([
      'verify',
      ref,
      '--project',
      'hello-app',
      '--plain-http',
      '--home',
      w.homeDir,
      '--json',
    ]);
    assert.equal(verified.code, 0, verified.stderr);
    const doc = JSON.parse(verified.stdout);
    assert.deepEqual(doc.attestations.map((a: { kind: string }) => a.kind).sort(), [
      'provenance',
      'sbom',
      'vsa',
    ]);
  });

  // Last: it removes the referrers index, as on a registry that keeps no referrers at all.
  it('falls back to the cosign tags when no referrers are found', async () => {
    const repo = 'gatehouse/promoted/hello-app';
    const tag = fallbackTag(w.allowed.placement.manifestDigest);
    const indexDigest = await w.client.manifestDigest(repo, tag);
    assert.ok(indexDigest);
    await w.client.deleteManifest(repo, indexDigest);
    const r = await verify();
    assert.equal(r.discovery, 'cosign-tags');
    assert.deepEqual(r.attestations.map((a) => a.kind).sort(), ['provenance', 'sbom', 'vsa']);
  });
});

describe('registry references, deploy policies and revocation lists', () => {
  it('parses a digest-pinned reference, with or without oci:// and a tag', () => {
    const d = `sha256:${'1'.repeat(64)}`;
    assert.deepEqual(parseOciReference(`oci://reg.example:5000/a/b@${d}`), {
      host: 'reg.example:5000',
      repository: 'a/b',
      digest: d,
    });
    assert.deepEqual(parseOciReference(`localhost/app:v1@${d}`), {
      host: 'localhost',
      repository: 'app',
      digest: d,
      tag: 'v1',
    });
  });
  const badRefs = [
    'reg.example/app:latest',
    `nginx@sha256:${'1'.repeat(64)}`,
    `library/nginx@sha256:${'1'.repeat(64)}`,
    `reg.example/App@sha256:${'1'.repeat(64)}`,
    `reg.example/app@sha256:${'1'.repeat(63)}`,
    `reg.example/app@sha512:${'1'.repeat(128)}`,
    `https://reg.example/app@sha256:${'1'.repeat(64)}`,
    `reg.example/../x@sha256:${'1'.repeat(64)}`,
    '',
  ];
  for (const ref of badRefs) {
    it(`refuses the reference '${ref.slice(0, 40)}'`, () => {
      assert.throws(
        () => parseOciReference(ref),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
  const badPolicies: [string, string][] = [
    ['no identity and no projects', 'require: [provenance]'],
    ['projects without identityBase', 'projects: [a]'],
    ['an unknown attestation', 'identity: x\nrequire: [magic]'],
    ['an unknown field', 'identity: x\nallowAll: true'],
    ['a bad duration', 'identity: x\nmaxAge: forever'],
    ['a duplicate key', 'identity: x\nidentity: y'],
    ['not YAML', 'identity: [x'],
  ];
  for (const [what, text] of badPolicies) {
    it(`refuses a deploy policy with ${what}`, () => {
      assert.throws(
        () => parseDeployPolicy(text, 'p.yaml'),
        (e) => isGatehouseError(e, 'BAD_POLICY'),
      );
    });
  }
  it('defaults to requiring provenance, SBOM and VSA', () => {
    assert.deepEqual(parseDeployPolicy('identity: https://x/projects/a', 'p').require, [
      'provenance',
      'sbom',
      'vsa',
    ]);
  });
  const badLists: [string, string][] = [
    ['not JSON', '{'],
    ['another version', '{"version":2,"revoked":[]}'],
    [
      'a short digest',
      '{"version":1,"revoked":[{"digest":"sha256:00","reason":"x","revokedAt":"2026-01-01T00:00:00Z"}]}',
    ],
    ['no time', `{"version":1,"revoked":[{"digest":"sha256:${'0'.repeat(64)}","reason":"x"}]}`],
  ];
  for (const [what, text] of badLists) {
    it(`refuses a revocation list with ${what}`, () => {
      assert.throws(
        () => parseRevocations(text, 'r.json'),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});
