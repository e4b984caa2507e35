/**
 * cosign's formats as cosign reads them, against a real docker-registry: the `.sig` and `.att`
 * tags and the referrers of a promoted artifact are fetched and each layer is decoded and checked
 * step by step the way cosign's own code does (sigstore/cosign: pkg/oci/internal/signature/layer.go
 * for the annotations, pkg/cosign/bundle/rekor.go for the log bundle, pkg/cosign/verify.go
 * VerifyBundle, compareSigs, comparePublicKey, bundleHash, VerifySET and verifyOCISignature /
 * verifyOCIAttestation, pkg/cosign/verifiers.go for the claim checks, pkg/oci/remote/signatures.go
 * Bundle and pkg/cosign/verify.go GetBundles for referrers). This is an independent decoder: it
 * uses none of gatehouse's parsers, only JSON, base64 and node:crypto.
 */
import assert from 'node:assert/strict';
import {
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { isGatehouseError } from '../common/errors.ts';
import { type Descriptor, parseImageManifest } from '../registry/oci-format.ts';
import { cosignTag } from '../registry/oci-names.ts';
import { parseBundle } from '../signing/bundle.ts';
import { bundleFromAttestationLayer, VERIFICATION_MATERIAL_ANNOTATION } from '../signing/cosign.ts';
import { SLSA_PROVENANCE_V1 } from '../signing/intoto.ts';
import { SLSA_VSA_V1 } from '../signing/vsa.ts';
import { IDENTITY_BASE, ISSUER, makeOciWorld, type OciWorld } from '../testing/oci-fixture.ts';
import { registrySkip } from '../testing/registry.ts';
import { verifyArtifactBundle } from './verify.ts';

const skip = registrySkip();
const REPO = 'gatehouse/promoted/hello-app';
const IDENTITY = `${IDENTITY_BASE}/projects/hello-app`;

type Json = Record<string, unknown>;

const sha256hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** RFC 8785 for the values cosign canonicalises (strings, integers, objects): keys sorted. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Json)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** Every PEM certificate of a string, as cryptoutils.LoadCertificatesFromPEM reads them. */
function pemCerts(pem: string | undefined): X509Certificate[] {
  return [...(pem ?? '').matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
}

/** The DER of the first PEM block (pem.Decode). */
function pemDer(pem: string): Buffer {
  const [cert] = pemCerts(pem);
  assert.ok(cert, 'a PEM certificate');
  return cert.raw;
}

/** One layer as cosign's sigLayer presents it: payload, annotations and their accessors. */
interface SigLayer {
  desc: Descriptor;
  payload: Uint8Array;
}

function base64Signature(l: SigLayer): string {
  // layer.go Base64Signature: the annotation must be present (it may be empty for attestations).
  const v = l.desc.annotations?.['dev.cosignproject.cosign/signature'];
  if (v === undefined)
    throw new Error(`signature layer ${l.desc.digest} is missing the signature annotation`);
  return v;
}

/** layer.go Bundle: the RekorBundle JSON (SignedEntryTimestamp []byte is base64 in Go's JSON). */
function rekorBundle(l: SigLayer): {
  SignedEntryTimestamp: string;
  Payload: { body: unknown; integratedTime: number; logIndex: number; logID: string };
} {
  const v = l.desc.annotations?.['dev.sigstore.cosign/bundle'];
  assert.ok(v, 'the layer has a log bundle');
  const b = JSON.parse(v);
  assert.equal(typeof b.SignedEntryTimestamp, 'string');
  assert.ok(Number.isInteger(b.Payload.integratedTime) && Number.isInteger(b.Payload.logIndex));
  return b;
}

/** The Rekor entry kind of a body, decoded as rekor's UnmarshalProposedEntry does. */
function rekorEntry(bodyB64: string): Json {
  return JSON.parse(Buffer.from(bodyB64, 'base64').toString('utf8'));
}

/** verify.go bundleHash / bundleSig / bundleKey, for the kinds gatehouse logs. */
function entryParts(entry: Json): { alg: string; hash: string; sig: string; key: string } {
  const spec = entry.spec as Json;
  if (entry.kind === 'hashedrekord') {
    const data = spec.data as { hash: { algorithm: string; value: string } };
    const sig = spec.signature as { content: string; publicKey: { content: string } };
    return { alg: data.hash.algorithm, hash: data.hash.value, sig: sig.content, key: sig.publicKey.content };
  }
  if (entry.kind === 'dsse') {
    const h = spec.envelopeHash as { algorithm: string; value: string };
    const sigs = spec.signatures as { signature: string; verifier: string }[];
    assert.equal(sigs.length, 1, 'multiple signatures on DSSE envelopes are not supported');
    return { alg: h.algorithm, hash: h.value, sig: sigs[0]?.signature ?? '', key: sigs[0]?.verifier ?? '' };
  }
  throw new Error(`unsupported entry kind ${String(entry.kind)}`);
}

/** The trusted root as cosign's TrustedMaterial holds it: Rekor keys by hex log ID, CA chains. */
function trustMaterial(root: Json): { rekor: Map<string, KeyObject>; roots: X509Certificate[] } {
  const rekor = new Map<string, KeyObject>();
  for (const t of root.tlogs as { logId: { keyId: string }; publicKey: { rawBytes: string } }[]) {
    rekor.set(
      Buffer.from(t.logId.keyId, 'base64').toString('hex'),
      createPublicKey({ key: Buffer.from(t.publicKey.rawBytes, 'base64'), format: 'der', type: 'spki' }),
    );
  }
  const roots: X509Certificate[] = [];
  for (const ca of root.certificateAuthorities as { certChain: { certificates: { rawBytes: string }[] } }[]) {
    const certs = ca.certChain.certificates;
    const last = certs[certs.length - 1];
    if (last !== undefined) roots.push(new X509Certificate(Buffer.from(last.rawBytes, 'base64')));
  }
  return { rekor, roots };
}

/**
 * verify.go VerifyBundle: the body is a string; its signature is the layer's (unless empty, an
 * attestation); its key is the layer's certificate; its hash is the payload's; the SET verifies
 * with the log key of the trusted root named by the log ID. Returns the integrated time.
 */
function verifyBundle(l: SigLayer, root: Json): number {
  const b = rekorBundle(l);
  assert.equal(typeof b.Payload.body, 'string', 'bundle payload body is a string');
  const body = b.Payload.body as string;
  const parts = entryParts(rekorEntry(body));
  const sig = base64Signature(l);
  // compareSigs
  if (sig !== '' && parts.sig !== '' && parts.sig !== sig)
    throw new Error('signature in bundle does not match signature being verified');
  // comparePublicKey: PEM blocks compared by their DER
  const cert = l.desc.annotations?.['dev.sigstore.cosign/certificate'] ?? '';
  if (!pemDer(cert).equals(pemDer(Buffer.from(parts.key, 'base64').toString('utf8'))))
    throw new Error('comparing public key PEMs');
  // bundleHash against the payload
  if (parts.alg !== 'sha256') throw new Error(`unexpected algorithm: ${parts.alg}`);
  if (parts.hash !== sha256hex(l.payload)) throw new Error('matching bundle to payload');
  // VerifySET with the trusted root's Rekor key for the log ID
  const key = trustMaterial(root).rekor.get(b.Payload.logID);
  if (key === undefined) throw new Error('rekor log public key not found for payload');
  const set = canonical({
    body,
    integratedTime: b.Payload.integratedTime,
    logID: b.Payload.logID,
    logIndex: b.Payload.logIndex,
  });
  if (!cryptoVerify('sha256', Buffer.from(set), key, Buffer.from(b.SignedEntryTimestamp, 'base64')))
    throw new Error('unable to verify SET');
  return b.Payload.integratedTime;
}

/**
 * verify.go verifyInternal's certificate part: the layer's certificate chains to a root of the
 * trusted root through the chain annotation (all but its last, the root), has the code-signing
 * EKU, the expected SAN and issuer, and was valid when the log integrated the entry.
 */
function verifyCertificate(l: SigLayer, root: Json, integratedTime: number): X509Certificate {
  const [leaf] = pemCerts(l.desc.annotations?.['dev.sigstore.cosign/certificate']);
  assert.ok(leaf, 'no certificate found on signature');
  const chain = pemCerts(l.desc.annotations?.['dev.sigstore.cosign/chain']);
  assert.ok(chain.length > 1, 'the chain annotation holds the intermediate and the root');
  const intermediates = chain.slice(0, -1);
  const roots = trustMaterial(root).roots;
  let at: X509Certificate = leaf;
  for (const next of intermediates) {
    assert.ok(at.checkIssued(next) && at.verify(next.publicKey), 'the chain verifies');
    at = next;
  }
  assert.ok(
    roots.some((r) => at.checkIssued(r) && at.verify(r.publicKey)),
    'the chain ends at a root of the trusted root',
  );
  assert.ok(leaf.keyUsage?.includes('1.3.6.1.5.5.7.3.3'), 'the certificate has the code-signing EKU');
  assert.equal(leaf.subjectAltName, `URI:${IDENTITY}`);
  const t = integratedTime * 1000;
  assert.ok(new Date(leaf.validFrom).getTime() <= t && t <= new Date(leaf.validTo).getTime(), 'CheckExpiry');
  return leaf;
}

/** verifiers.go SimpleClaimVerifier: the payload's critical.image.docker-manifest-digest is the image's. */
function simpleClaim(l: SigLayer, imageDigest: string): void {
  const p = JSON.parse(Buffer.from(l.payload).toString('utf8'));
  const found = p?.critical?.image?.['docker-manifest-digest'];
  if (found !== imageDigest) throw new Error(`invalid or missing digest in claim: ${String(found)}`);
}

/** verifiers.go IntotoSubjectClaimVerifier: some subject's sha256 digest is the image's. */
function intotoSubjectClaim(l: SigLayer, imageDigest: string): void {
  const env = JSON.parse(Buffer.from(l.payload).toString('utf8'));
  const st = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
  for (const subj of st.subject) {
    if (subj === null) throw new Error('invalid in-toto statement: null subject entry');
    if (typeof subj.digest?.sha256 === 'string' && `sha256:${subj.digest.sha256}` === imageDigest) return;
  }
  throw new Error('no matching subject digest found');
}

/** PAE for DSSE, as go-securesystemslib's envelope verifier computes it. */
function pae(type: string, payload: Buffer): Buffer {
  const t = Buffer.from(type);
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${payload.length} `), payload]);
}

describe("cosign's formats, read as cosign reads them", { skip }, () => {
  let w: OciWorld;
  let manifestDigest: string;
  let sigLayers: SigLayer[];
  let attLayers: SigLayer[];

  async function layersOf(tag: string): Promise<SigLayer[]> {
    const digest = await w.client.manifestDigest(REPO, tag);
    assert.ok(digest, `the tag ${tag} exists`);
    const m = await w.client.getManifest(REPO, digest);
    assert.ok(m);
    const out: SigLayer[] = [];
    for (const desc of parseImageManifest(m.bytes, tag).layers)
      out.push({ desc, payload: await w.client.getBlob(REPO, desc.digest, 1 << 24) });
    return out;
  }

  before(async () => {
    w = await makeOciWorld();
    manifestDigest = w.allowed.placement.manifestDigest;
    sigLayers = await layersOf(cosignTag(manifestDigest, 'sig'));
    attLayers = await layersOf(cosignTag(manifestDigest, 'att'));
  });
  after(() => w?.close());

  it('.sig holds one simple-signing layer that verifies and names the manifest digest', () => {
    assert.deepEqual(
      sigLayers.map((l) => l.desc.mediaType),
      ['application/vnd.dev.cosign.simplesigning.v1+json'],
    );
    const [l] = sigLayers;
    assert.ok(l);
    const t = verifyBundle(l, w.trustedRoot);
    const leaf = verifyCertificate(l, w.trustedRoot, t);
    // verifyOCISignature: the base64 signature over the payload bytes, by the certified key.
    assert.ok(cryptoVerify('sha256', l.payload, leaf.publicKey, Buffer.from(base64Signature(l), 'base64')));
    simpleClaim(l, manifestDigest);
    const p = JSON.parse(Buffer.from(l.payload).toString('utf8'));
    assert.equal(p.critical.type, 'cosign container image signature');
    assert.equal(p.critical.identity['docker-reference'], `${w.registry.host}/${REPO}`);
  });

  it('.att holds DSSE envelope layers, one per statement, each verifying and naming the manifest', () => {
    assert.deepEqual(
      attLayers.map((l) => l.desc.mediaType),
      Array(3).fill('application/vnd.dsse.envelope.v1+json'),
    );
    const types: string[] = [];
    for (const l of attLayers) {
      assert.equal(base64Signature(l), '', 'an attestation carries its signature in the envelope');
      const t = verifyBundle(l, w.trustedRoot);
      const leaf = verifyCertificate(l, w.trustedRoot, t);
      // verifyOCIAttestation: an in-toto envelope, verified over PAE.
      const env = JSON.parse(Buffer.from(l.payload).toString('utf8'));
      assert.equal(env.payloadType, 'application/vnd.in-toto+json');
      const payload = Buffer.from(env.payload, 'base64');
      assert.ok(
        env.signatures.some((s: { sig: string }) =>
          cryptoVerify('sha256', pae(env.payloadType, payload), leaf.publicKey, Buffer.from(s.sig, 'base64')),
        ),
      );
      intotoSubjectClaim(l, manifestDigest);
      const st = JSON.parse(payload.toString('utf8'));
      assert.equal(l.desc.annotations?.predicateType, st.predicateType);
      types.push(st.predicateType);
    }
    assert.deepEqual(types.sort(), [SLSA_PROVENANCE_V1, 'https://cyclonedx.org/bom', SLSA_VSA_V1].sort());
  });

  it('the statements name both the file digest and the artifact manifest digest', () => {
    for (const l of attLayers) {
      const env = JSON.parse(Buffer.from(l.payload).toString('utf8'));
      const st = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
      assert.deepEqual(
        st.subject.map((s: { name: string; digest: { sha256: string } }) => [s.name, s.digest.sha256]),
        [
          ['hello-app.tar', sha256hex('hello, world\n')],
          [`${w.registry.host}/${REPO}`, manifestDigest.slice(7)],
        ],
      );
    }
  });

  it('referrers carry Sigstore bundles with the content and predicate type annotations, read as GetBundles does', async () => {
    const { manifests } = await w.client.referrers(REPO, manifestDigest);
    const bundles = manifests.filter(
      (m) => m.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json',
    );
    assert.equal(bundles.length, 3);
    const verifier = new Verifier(toTrustMaterial(TrustedRoot.fromJSON(structuredClone(w.trustedRoot))));
    for (const d of bundles) {
      assert.equal(d.annotations?.['dev.sigstore.bundle.content'], 'dsse-envelope');
      const m = await w.client.getManifest(REPO, d.digest);
      assert.ok(m);
      const manifest = parseImageManifest(m.bytes, d.digest);
      // signatures.go Bundle: exactly one layer, a bundle media type, a v0.3 bundle.
      assert.equal(manifest.layers.length, 1);
      const [layer] = manifest.layers;
      assert.ok(layer);
      assert.ok(layer.mediaType.startsWith('application/vnd.dev.sigstore.bundle'), 'expected bundle layer');
      assert.equal(manifest.annotations?.['dev.sigstore.bundle.content'], 'dsse-envelope');
      const predicateType = manifest.annotations?.['dev.sigstore.bundle.predicateType'];
      const json = JSON.parse(
        Buffer.from(await w.client.getBlob(REPO, layer.digest, 1 << 24)).toString('utf8'),
      );
      assert.equal(json.mediaType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
      const st = JSON.parse(Buffer.from(json.dsseEnvelope.payload, 'base64').toString('utf8'));
      assert.equal(predicateType, st.predicateType);
      // And the bundle verifies at sigstore-js's defaults (one SCT, one tlog entry), for that identity.
      const signer = verifier.verify(toSignedEntity(bundleFromJSON(json)), {
        subjectAlternativeName: IDENTITY,
        extensions: { issuer: ISSUER },
      });
      assert.equal(signer.identity?.subjectAlternativeName, IDENTITY);
    }
  });

  it("rebuilds each referrer's bundle byte for byte from its .att layer", async () => {
    const { manifests } = await w.client.referrers(REPO, manifestDigest);
    const referred = new Set<string>();
    for (const d of manifests.filter(
      (m) => m.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json',
    )) {
      const m = await w.client.getManifest(REPO, d.digest);
      const [layer] = parseImageManifest(m?.bytes ?? new Uint8Array(), d.digest).layers;
      if (layer !== undefined) referred.add(layer.digest);
    }
    for (const l of attLayers) {
      const rebuilt = bundleFromAttestationLayer(l.payload, l.desc.annotations, l.desc.digest);
      assert.ok(referred.has(`sha256:${sha256hex(rebuilt)}`));
    }
  });

  // The attacks: what each check above is for.
  it('refuses the .sig and .att layers copied onto another image (the claim checks)', () => {
    const other = w.denied.placement.manifestDigest;
    for (const l of sigLayers)
      assert.throws(() => simpleClaim(l, other), /invalid or missing digest in claim/);
    for (const l of attLayers)
      assert.throws(() => intotoSubjectClaim(l, other), /no matching subject digest found/);
  });

  it('refuses a .sig layer whose payload was changed: the log bundle no longer matches it', () => {
    const [l] = sigLayers;
    assert.ok(l);
    const payload = Buffer.from(
      Buffer.from(l.payload).toString('utf8').replace(manifestDigest, w.denied.placement.manifestDigest),
    );
    assert.throws(() => verifyBundle({ ...l, payload }, w.trustedRoot), /matching bundle to payload/);
  });

  it("refuses an .att layer carrying another layer's log bundle", () => {
    const [a, b] = attLayers;
    assert.ok(a && b);
    const swapped: SigLayer = {
      ...a,
      desc: {
        ...a.desc,
        annotations: {
          ...a.desc.annotations,
          'dev.sigstore.cosign/bundle': b.desc.annotations?.['dev.sigstore.cosign/bundle'] ?? '',
        },
      },
    };
    assert.throws(() => verifyBundle(swapped, w.trustedRoot), /matching bundle to payload/);
  });

  it("gatehouse refuses a rebuilt bundle whose verification material is another layer's", () => {
    const [a, b] = attLayers;
    assert.ok(a && b);
    const material = b.desc.annotations?.[VERIFICATION_MATERIAL_ANNOTATION] ?? '';
    const bytes = bundleFromAttestationLayer(
      a.payload,
      { ...a.desc.annotations, [VERIFICATION_MATERIAL_ANNOTATION]: material },
      'swapped',
    );
    assert.throws(
      () =>
        verifyArtifactBundle({
          artifactDigest: Buffer.from(manifestDigest.slice(7), 'hex'),
          bundle: parseBundle(JSON.parse(Buffer.from(bytes).toString('utf8')), 'swapped'),
          trustedRoot: w.trustedRoot,
        }),
      (e) => isGatehouseError(e, 'LOG_PROOF_INVALID'),
    );
  });
});
