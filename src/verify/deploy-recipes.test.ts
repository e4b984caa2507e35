/**
 * The deploy-side recipes under deploy/, filled from a real home whose gate promoted an artifact
 * to a real docker-registry: each policy must name the keys of the exported trusted root and the
 * identities gatehouse actually issues (the leaf's SAN and issuer, the CT log of its SCT, the log
 * of its entries). Kyverno and policy-controller cannot run here (no Kubernetes); the recorded
 * admission request they would receive is run through gatehouse's own webhook instead.
 */
import '../signing/reflect-metadata-shim.ts';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { parseAllDocuments } from 'yaml';
import { isGatehouseError } from '../common/errors.ts';
import { IDENTITY_BASE, ISSUER, makeOciWorld, type OciWorld } from '../testing/oci-fixture.ts';
import { registrySkip } from '../testing/registry.ts';
import { decideAdmission } from './admission/admission.ts';
import { ociImageVerifier } from './admission/image-verifier.ts';
import { identityRegExp, RECIPE_VARIABLES, recipeValues, renderRecipe } from './deploy-recipes.ts';

const skip = registrySkip();
const deployDir = join(import.meta.dirname, '../../deploy');
const RECIPES = [
  'kyverno/cluster-policy.yaml',
  'kyverno/image-validating-policy.yaml',
  'policy-controller/trust-root.yaml',
  'policy-controller/cluster-image-policy.yaml',
];

// biome-ignore lint/suspicious/noExplicitAny: the parsed policies are checked field by field
type Doc = any;

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();
const spkiOfPem = (pem: string): Buffer =>
  createPublicKey(pem).export({ type: 'spki', format: 'der' }) as Buffer;
const pemCerts = (pem: string): X509Certificate[] =>
  [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
const b64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

/** The log IDs of the SCTs embedded in a leaf (RFC 6962 §3.3: a TLS-encoded list in an OCTET STRING). */
function sctLogIds(der: Buffer): Buffer[] {
  const ext = new x509.X509Certificate(der).getExtension('1.3.6.1.4.1.11129.2.4.2');
  assert.ok(ext, 'the leaf embeds SCTs');
  const outer = Buffer.from(ext.value);
  assert.equal(outer[0], 0x04);
  const lenByte = outer[1] ?? 0;
  const start = lenByte < 0x80 ? 2 : 2 + (lenByte & 0x7f);
  const list = outer.subarray(start);
  const ids: Buffer[] = [];
  for (let i = 2; i < list.length; ) {
    const len = list.readUInt16BE(i);
    ids.push(list.subarray(i + 3, i + 3 + 32)); // after the version byte
    i += 2 + len;
  }
  return ids;
}

/** The issuer a Fulcio-style leaf names (OID 1.3.6.1.4.1.57264.1.8, a DER UTF8String). */
function leafIssuer(der: Buffer): string {
  const ext = new x509.X509Certificate(der).getExtension('1.3.6.1.4.1.57264.1.8');
  assert.ok(ext);
  return Buffer.from(ext.value).subarray(2).toString('utf8');
}

/** Kyverno's wildcard: `*` matches any run of characters, `?` one. */
function kyvernoGlob(glob: string, image: string): boolean {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(image);
}

/** policy-controller's glob (pkg/apis/glob): `*` stays within a path segment, `**` crosses them. */
function policyControllerGlob(glob: string, image: string): boolean {
  const re = glob.replaceAll('.', '\\.').replaceAll('**', '#').replaceAll('*', '[^/]*').replaceAll('#', '.*');
  return new RegExp(`^${re}$`).test(image);
}

describe('deploy-side recipes, filled from a real home', { skip }, () => {
  let w: OciWorld;
  let docs: Record<string, Doc[]>;
  let leafDer: Buffer;
  let san: string;
  let tlogId: Buffer;
  let predicateTypes: string[];

  before(async () => {
    w = await makeOciWorld();
    const values = recipeValues({
      trustedRoot: w.trustedRoot,
      identityBase: IDENTITY_BASE,
      issuer: ISSUER,
      images: `${w.registry.host}/gatehouse/promoted/*`,
    });
    docs = {};
    for (const r of RECIPES) {
      const text = renderRecipe(readFileSync(join(deployDir, r), 'utf8'), values, r);
      assert.doesNotMatch(text, /\$\{GATEHOUSE_/, `${r} is fully filled in`);
      docs[r] = parseAllDocuments(text).map((d) => d.toJS());
    }
    const b = w.allowed.bundle as Doc;
    leafDer = Buffer.from(b.verificationMaterial.certificate.rawBytes, 'base64');
    san = new X509Certificate(leafDer).subjectAltName?.replace(/^URI:/, '') ?? '';
    tlogId = Buffer.from(b.verificationMaterial.tlogEntries[0].logId.keyId, 'base64');
    const placed = await w.client.referrers(
      'gatehouse/promoted/hello-app',
      w.allowed.placement.manifestDigest,
    );
    predicateTypes = placed.manifests
      .map((m) => m.annotations?.['dev.sigstore.bundle.predicateType'])
      .filter((t): t is string => t !== undefined);
  });
  after(() => w?.close());

  const root = (): Doc => w.trustedRoot;
  const caChain = (): X509Certificate[] =>
    root().certificateAuthorities[0].certChain.certificates.map(
      (c: { rawBytes: string }) => new X509Certificate(Buffer.from(c.rawBytes, 'base64')),
    );

  /** The identity a policy names must be the leaf's, and only identities gatehouse can issue. */
  function checkIdentity(subjectRegExp: string, issuer: string): void {
    const re = new RegExp(subjectRegExp);
    assert.ok(re.test(san), `${subjectRegExp} matches the issued SAN ${san}`);
    for (const other of [
      'https://evil.example/projects/hello-app',
      `${IDENTITY_BASE}/projects/hello-app/extra`,
      `${IDENTITY_BASE}/projects/`,
      `${IDENTITY_BASE}.evil.example/projects/hello-app`,
      `x${IDENTITY_BASE}/projects/hello-app`,
    ])
      assert.ok(!re.test(other), `${subjectRegExp} refuses ${other}`);
    assert.equal(issuer, leafIssuer(leafDer));
  }

  /** A key the policy names is the trusted root's log key, the one that logged the bundle. */
  function checkRekorKey(pem: string): void {
    assert.ok(sha256(spkiOfPem(pem)).equals(tlogId), 'the Rekor key is the log that holds the entries');
  }

  /** A key the policy names is the CT log whose SCT the leaf embeds. */
  function checkCtKey(pem: string): void {
    const id = sha256(spkiOfPem(pem));
    assert.ok(
      sctLogIds(leafDer).some((x) => x.equals(id)),
      'the CT log key is the one that signed the SCT',
    );
  }

  it('Kyverno ClusterPolicy: roots, Rekor and CT keys, identity and attestations match what was issued', () => {
    const [p] = docs['kyverno/cluster-policy.yaml'] ?? [];
    assert.equal(p.apiVersion, 'kyverno.io/v1');
    const [rule] = p.spec.rules;
    assert.deepEqual(rule.match.any[0].resources.kinds, ['Pod']);
    const [vi] = rule.verifyImages;
    assert.ok(kyvernoGlob(vi.imageReferences[0], w.allowedRef));
    assert.ok(!kyvernoGlob(vi.imageReferences[0], w.deniedRef), 'the quarantine repository is not admitted');
    assert.equal(vi.required, true);
    const keyless = vi.attestors[0].entries[0].keyless;
    checkIdentity(keyless.subjectRegExp, keyless.issuer);
    const roots = pemCerts(keyless.roots);
    const chain = caChain();
    assert.equal(roots.length, 1);
    assert.ok(
      roots[0]?.raw.equals(chain[chain.length - 1]?.raw ?? Buffer.alloc(0)),
      'the root CA of the trusted root',
    );
    const leaf = new X509Certificate(leafDer);
    const intermediate = chain[0];
    assert.ok(
      intermediate &&
        leaf.verify(intermediate.publicKey) &&
        intermediate.verify(roots[0]?.publicKey as never),
    );
    checkRekorKey(keyless.rekor.pubkey);
    assert.equal(keyless.rekor.url, root().tlogs[0].baseUrl);
    checkCtKey(keyless.ctlog.pubkey);
    for (const a of vi.attestations) {
      assert.ok(predicateTypes.includes(a.type), `gatehouse attaches ${a.type}`);
      assert.deepEqual(a.attestors[0].entries[0].keyless, keyless, 'the same attestor');
    }
  });

  it('Kyverno ImageValidatingPolicy: the exported trusted root inline, the identity, the attestations', () => {
    const [p] = docs['kyverno/image-validating-policy.yaml'] ?? [];
    assert.equal(p.kind, 'ImageValidatingPolicy');
    assert.deepEqual(p.spec.matchConstraints.resourceRules[0].resources, ['pods']);
    assert.ok(kyvernoGlob(p.spec.matchImageReferences[0].glob, w.allowedRef));
    const [attestor] = p.spec.attestors;
    assert.deepEqual(JSON.parse(attestor.cosign.trustedRoot.value), w.trustedRoot);
    const [id] = attestor.cosign.keyless.identities;
    checkIdentity(id.subjectRegExp, id.issuer);
    for (const a of p.spec.attestations) assert.ok(predicateTypes.includes(a.intoto.type));
    for (const v of p.spec.validations) assert.match(v.expression, /attestors\.gatehouse|attestations\.vsa/);
  });

  it('policy-controller TrustRoot: the CA chain, the log key and the CT log key, base64 PEM', () => {
    const [t] = docs['policy-controller/trust-root.yaml'] ?? [];
    const keys = t.spec.sigstoreKeys;
    const chain = pemCerts(b64(keys.certificateAuthorities[0].certChain));
    assert.deepEqual(
      chain.map((c) => c.fingerprint256),
      caChain().map((c) => c.fingerprint256),
    );
    assert.equal(
      keys.certificateAuthorities[0].subject.organization,
      root().certificateAuthorities[0].subject.organization,
    );
    checkRekorKey(b64(keys.tLogs[0].publicKey));
    checkCtKey(b64(keys.ctLogs[0].publicKey));
    assert.equal(keys.ctLogs[0].baseURL, root().ctlogs[0].baseUrl);
  });

  it('policy-controller ClusterImagePolicy: refers to that TrustRoot, names the identity and the attestations', () => {
    const [c] = docs['policy-controller/cluster-image-policy.yaml'] ?? [];
    const [t] = docs['policy-controller/trust-root.yaml'] ?? [];
    assert.ok(policyControllerGlob(c.spec.images[0].glob, w.allowedRef));
    assert.ok(!policyControllerGlob(c.spec.images[0].glob, w.deniedRef));
    const [a] = c.spec.authorities;
    assert.equal(a.keyless.trustRootRef, t.metadata.name);
    assert.equal(a.ctlog.trustRootRef, t.metadata.name);
    assert.equal(a.keyless.insecureIgnoreSCT, undefined, 'SCTs are checked');
    const [id] = a.keyless.identities;
    checkIdentity(id.subjectRegExp, id.issuer);
    for (const att of a.attestations) assert.ok(predicateTypes.includes(att.predicateType));
  });

  it("runs the recorded admission request through gatehouse's webhook: the signed image is admitted", async () => {
    const text = readFileSync(join(deployDir, 'testdata/kubectl-run-review.json'), 'utf8');
    const review = (image: string) => JSON.parse(text.replaceAll('"IMAGE_0"', JSON.stringify(image)));
    const verifyImage = ociImageVerifier({
      policy: {
        projects: ['hello-app'],
        identityBase: IDENTITY_BASE,
        issuer: ISSUER,
        require: ['provenance', 'sbom', 'vsa'],
        registries: { [w.registry.host]: { plainHttp: true } },
      },
      trustedRoot: w.trustedRoot,
      revocationsPath: w.revocationsPath,
    });
    await w.setRevoked();
    const ok = await decideAdmission(review(w.allowedRef), verifyImage);
    assert.deepEqual(ok.response, { uid: '0df28fbd-5f5f-11e8-bc74-36e6bb280816', allowed: true });
    const refused = await decideAdmission(review(w.deniedRef), verifyImage);
    assert.equal(refused.response.allowed, false);
    // The policies above select this very request: a Pod, created.
    const [kyverno] = docs['kyverno/cluster-policy.yaml'] ?? [];
    assert.ok(kyverno.spec.rules[0].match.any[0].resources.kinds.includes(review('x').request.kind.kind));
    const [ivpol] = docs['kyverno/image-validating-policy.yaml'] ?? [];
    assert.ok(
      ivpol.spec.matchConstraints.resourceRules[0].operations.includes(review('x').request.operation),
    );
  });
});

/** A placeholder as a template writes it. */
const ph = (name: string): string => `\${${name}}`;

describe('filling a recipe template', () => {
  const values = Object.fromEntries(RECIPE_VARIABLES.map((v) => [v, `value of ${v}`])) as Parameters<
    typeof renderRecipe
  >[1];

  it('replaces a whole-value placeholder and keeps everything else', () => {
    const out = renderRecipe(`a: "${ph('GATEHOUSE_ISSUER')}"\nb: plain\n`, values, 't.yaml');
    assert.deepEqual(parseAllDocuments(out)[0]?.toJS(), { a: 'value of GATEHOUSE_ISSUER', b: 'plain' });
  });

  const bad: [string, string][] = [
    ['an unknown placeholder', `a: "${ph('GATEHOUSE_NOPE')}"\n`],
    ['a placeholder inside a longer value', `a: "prefix ${ph('GATEHOUSE_ISSUER')}"\n`],
    ['two placeholders in one value', `a: "${ph('GATEHOUSE_ISSUER')}${ph('GATEHOUSE_IMAGES')}"\n`],
    ['a placeholder in a key', `"${ph('GATEHOUSE_ISSUER')}": x\n`],
    ['a malformed placeholder', `a: "${ph('GATEHOUSE_ISSUER').slice(0, -1)}"\n`],
    ['not YAML', 'a: [unclosed\n'],
  ];
  for (const [what, template] of bad)
    it(`refuses ${what}`, () => {
      assert.throws(
        () => renderRecipe(template, values, 't.yaml'),
        (e) => isGatehouseError(e, 'BAD_INPUT') && /t\.yaml/.test(String(e.where ?? e.message)),
      );
    });

  it('anchors the identity expression to the identity base and one project name', () => {
    const re = new RegExp(identityRegExp('https://build.example.com/'));
    assert.ok(re.test('https://build.example.com/projects/app-1'));
    assert.ok(!re.test('https://build.example.com/projects/app-1/../x'));
    assert.ok(!re.test('https://buildXexample.com/projects/app-1'));
  });
});
