import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import { artifactManifest } from '../registry/manifests.ts';
import type { ArtifactFile, ArtifactRegistry, Attachment, CosignLayer } from '../registry/registry.ts';

const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const DECISION = 'application/vnd.gatehouse.decision.v1+json';

/** A scratch directory for the contract's artifact files, removed when the process ends. */
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-registry-contract-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** An artifact file on disk, as the gate hands registries the outputs it received. */
export function artifactFile(name: string, text: string): ArtifactFile & { bytes: Uint8Array } {
  const bytes = new TextEncoder().encode(text);
  const sha256 = sha256Hex(bytes);
  const path = join(scratch, sha256);
  writeFileSync(path, bytes);
  return { name, sha256, size: bytes.byteLength, path, bytes };
}

const file = artifactFile;

function attachment(artifactType: string, text: string, extra: Partial<Attachment> = {}): Attachment {
  return { artifactType, mediaType: artifactType, bytes: new TextEncoder().encode(text), ...extra };
}

function cosignLayer(kind: 'sig' | 'att', text: string, annotations: Record<string, string>): CosignLayer {
  return { kind, mediaType: `application/x.${kind}`, bytes: new TextEncoder().encode(text), annotations };
}

/**
 * The behaviour every ArtifactRegistry adapter must show. `makeRegistry` returns a fresh, empty
 * registry and a function that disposes of it.
 */
export function describeRegistryContract(
  name: string,
  makeRegistry: () => Promise<{ registry: ArtifactRegistry; close: () => Promise<void> }>,
): void {
  describe(`${name} registry contract`, () => {
    let registry: ArtifactRegistry;
    let close: () => Promise<void> = async () => {};
    before(async () => {
      ({ registry, close } = await makeRegistry());
    });
    after(async () => {
      await close();
    });

    it('promotes an artifact with its files, referrers and cosign tags', async () => {
      const app = file('app.tar', 'the app');
      const placement = await registry.promote({
        project: 'contract-app',
        tag: 'job-1',
        files: [app],
        attachments: [
          attachment(BUNDLE, '{"bundle":"provenance"}', {
            annotations: { 'dev.sigstore.bundle.predicateType': 'https://slsa.dev/provenance/v1' },
          }),
          attachment(BUNDLE, '{"bundle":"signature"}'),
          attachment(DECISION, '{"outcome":"allow"}'),
        ],
        cosign: [
          cosignLayer('att', '{"envelope":"provenance"}', {
            predicateType: 'https://slsa.dev/provenance/v1',
          }),
          cosignLayer('sig', '{"critical":{}}', { 'dev.cosignproject.cosign/signature': 'c2ln' }),
          cosignLayer('att', '{"envelope":"sbom"}', { predicateType: 'https://cyclonedx.org/bom' }),
        ],
      });
      assert.equal(placement.area, 'promoted');
      assert.match(placement.manifestDigest, /^sha256:[0-9a-f]{64}$/);
      assert.ok(placement.reference.endsWith(`:job-1@${placement.manifestDigest}`));
      assert.deepEqual(
        placement.referrers.map((r) => r.artifactType),
        [BUNDLE, BUNDLE, DECISION],
      );
      const hex = placement.manifestDigest.slice(7);
      assert.deepEqual(placement.cosignTags, [`sha256-${hex}.sig`, `sha256-${hex}.att`]);

      const byTag = await registry.inspect('promoted', 'contract-app', 'job-1');
      assert.ok(byTag);
      assert.equal(byTag.manifestDigest, placement.manifestDigest);
      assert.deepEqual(byTag.files, [{ name: 'app.tar', sha256: app.sha256, size: app.bytes.byteLength }]);
      assert.deepEqual(
        byTag.referrers.map((r) => r.digest).sort(),
        placement.referrers.map((r) => r.digest).sort(),
      );
      const provenance = byTag.referrers.find(
        (r) => r.annotations['dev.sigstore.bundle.predicateType'] === 'https://slsa.dev/provenance/v1',
      );
      assert.ok(provenance, 'the referrer keeps its annotations');
      assert.deepEqual([...byTag.cosignTags].sort(), [...placement.cosignTags].sort());
      const byDigest = await registry.inspect('promoted', 'contract-app', placement.manifestDigest);
      assert.equal(byDigest?.manifestDigest, placement.manifestDigest);

      const decision = placement.referrers.find((r) => r.artifactType === DECISION);
      assert.ok(decision);
      const bytes = await registry.attachment('promoted', 'contract-app', decision.digest);
      assert.equal(new TextDecoder().decode(bytes), '{"outcome":"allow"}');
    });

    it('keeps a quarantined artifact out of the promoted area', async () => {
      const placement = await registry.quarantine({
        project: 'contract-bad',
        tag: 'job-2',
        files: [file('bad.tar', 'bad')],
        attachments: [attachment(DECISION, '{"outcome":"deny"}')],
      });
      assert.equal(placement.area, 'quarantine');
      assert.deepEqual(placement.cosignTags, []);
      assert.equal(await registry.inspect('promoted', 'contract-bad', 'job-2'), undefined);
      assert.equal(await registry.inspect('promoted', 'contract-bad', placement.manifestDigest), undefined);
      const q = await registry.inspect('quarantine', 'contract-bad', 'job-2');
      assert.equal(q?.manifestDigest, placement.manifestDigest);
      assert.notEqual(registry.repositoryUri('quarantine', 'x'), registry.repositoryUri('promoted', 'x'));
    });

    it('reads a quarantined artifact back with its bytes and takes one more referrer', async () => {
      const bad = file('held.tar', 'held bytes');
      const placement = await registry.quarantine({
        project: 'contract-held',
        tag: 'job-h',
        files: [bad],
        attachments: [attachment(DECISION, '{"outcome":"quarantine"}')],
      });
      const into = mkdtempSync(join(scratch, 'read-'));
      const files = await registry.files('quarantine', 'contract-held', 'job-h', into);
      assert.deepEqual(
        files.map((f) => [f.name, f.sha256, readFileSync(f.path, 'utf8')]),
        [['held.tar', bad.sha256, 'held bytes']],
      );
      await assert.rejects(registry.files('promoted', 'contract-held', 'job-h', into), (e) =>
        isGatehouseError(e, 'NOT_FOUND'),
      );
      const mark = await registry.attach(
        'quarantine',
        'contract-held',
        placement.manifestDigest,
        attachment(DECISION, '{"triage":"reject"}'),
      );
      const after = await registry.inspect('quarantine', 'contract-held', 'job-h');
      assert.equal(after?.manifestDigest, placement.manifestDigest, 'the artifact itself is unchanged');
      assert.ok(after?.referrers.some((r) => r.digest === mark.digest));
      const bytes = await registry.attachment('quarantine', 'contract-held', mark.digest);
      assert.equal(new TextDecoder().decode(bytes), '{"triage":"reject"}');
      await assert.rejects(
        registry.attach('promoted', 'contract-held', placement.manifestDigest, attachment(DECISION, '{}')),
        (e) => isGatehouseError(e, 'NOT_FOUND'),
      );
    });

    it('places exactly the manifest planned before signing, and the same one again', async () => {
      const files = [file('planned.tar', 'planned bytes')];
      const input = {
        files,
        annotations: { 'dev.gatehouse.decision': 'allow' },
        createdAt: '2026-01-02T03:04:05.000Z',
      };
      const planned = artifactManifest(input).descriptor.digest;
      const request = {
        project: 'contract-planned',
        tag: 'job-p',
        attachments: [],
        ...input,
        manifestDigest: planned,
      };
      const first = await registry.promote(request);
      assert.equal(first.manifestDigest, planned);
      const again = await registry.promote(request);
      assert.equal(again.manifestDigest, planned, 'placing it again is idempotent');
    });

    it('refuses a placement whose manifest is not the one its attestations were signed for', async () => {
      const files = [file('signed.tar', 'signed bytes')];
      const signedFor = artifactManifest({ files, createdAt: '2026-01-02T03:04:05.000Z' }).descriptor.digest;
      // An attacker (or a bug) changes what the manifest says after signing: another creation time.
      await assert.rejects(
        registry.promote({
          ...{ project: 'contract-resigned', tag: 'job-r', files, attachments: [] },
          createdAt: '2026-01-02T03:04:06.000Z',
          manifestDigest: signedFor,
        }),
        (e) => isGatehouseError(e, 'INTERNAL'),
      );
      assert.equal(await registry.inspect('promoted', 'contract-resigned', 'job-r'), undefined);
    });

    it('moves a tag to the newer artifact and keeps the older one by digest', async () => {
      const first = await registry.promote({
        project: 'contract-tag',
        tag: 'latest',
        files: [file('a', '1')],
        attachments: [],
      });
      const second = await registry.promote({
        project: 'contract-tag',
        tag: 'latest',
        files: [file('a', '2')],
        attachments: [],
      });
      assert.notEqual(first.manifestDigest, second.manifestDigest);
      assert.equal(
        (await registry.inspect('promoted', 'contract-tag', 'latest'))?.manifestDigest,
        second.manifestDigest,
      );
      assert.equal(
        (await registry.inspect('promoted', 'contract-tag', first.manifestDigest))?.manifestDigest,
        first.manifestDigest,
      );
    });

    it('keeps every one of many promotions of one project made at once', async () => {
      const tags = Array.from({ length: 8 }, (_, i) => `job-at-once-${i}`);
      const placed = await Promise.all(
        tags.map((tag, i) =>
          registry.promote({
            project: 'contract-concurrent',
            tag,
            files: [file('a', `concurrent ${i}`)],
            attachments: [attachment(DECISION, `{"n":${i}}`)],
          }),
        ),
      );
      for (const [i, tag] of tags.entries())
        assert.equal(
          (await registry.inspect('promoted', 'contract-concurrent', tag))?.manifestDigest,
          placed[i]?.manifestDigest,
          `${tag} is still tagged`,
        );
    });

    const bad: [string, () => Parameters<ArtifactRegistry['promote']>[0]][] = [
      [
        'a file whose bytes do not match its digest',
        () => ({
          project: 'contract-bad-input',
          tag: 'job-3',
          files: [{ ...file('x', 'one'), sha256: sha256Hex('two') }],
          attachments: [],
        }),
      ],
      [
        'a project name that is not a repository name',
        () => ({ project: '../Etc', tag: 'job-3', files: [file('x', 'y')], attachments: [] }),
      ],
      [
        'a tag that is not a valid tag',
        () => ({ project: 'contract-bad-input', tag: 'a/b', files: [file('x', 'y')], attachments: [] }),
      ],
    ];
    for (const [what, request] of bad) {
      it(`refuses ${what} and stores nothing`, async () => {
        await assert.rejects(registry.promote(request()), (e) => isGatehouseError(e, 'BAD_INPUT'));
        assert.equal(await registry.inspect('promoted', 'contract-bad-input', 'job-3'), undefined);
      });
    }
  });
}
