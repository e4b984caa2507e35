/**
 * sigstore-python cannot run here (docs/signing.md says why), but its SCT check is Python
 * `cryptography` reading the certificate: the embedded SCT list, `tbs_precertificate_bytes`
 * (the TBS without the SCT list) and each SCT's `extension_bytes`, then the RFC 6962 signed
 * struct over them. This test has that library read a gatehouse leaf and verify its SCT with the
 * CT log key of the trusted root, the way sigstore-python's `verify_sct` assembles it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { makeWorld, signArtifact, type World } from '../testing/signing-fixture.ts';
import { CtLog } from '../tlog/ct-log.ts';

const SCRIPT = `
import hashlib, json, struct, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
req = json.load(sys.stdin)
leaf = x509.load_pem_x509_certificate(req["leaf"].encode())
issuer = x509.load_pem_x509_certificate(req["issuer"].encode())
ctkey = serialization.load_der_public_key(bytes.fromhex(req["ctkey"]))
try:
    scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
except x509.ExtensionNotFound:
    print(json.dumps({"error": "no SCT extension"})); sys.exit(0)
issuer_hash = hashlib.sha256(issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
tbs = leaf.tbs_precertificate_bytes
out = []
for sct in scts:
    ts = int(sct.timestamp.replace(tzinfo=__import__("datetime").timezone.utc).timestamp() * 1000)
    data = struct.pack(">BBQH", 0, 0, ts, 1) + issuer_hash + len(tbs).to_bytes(3, "big") + tbs
    data += struct.pack(">H", len(sct.extension_bytes)) + sct.extension_bytes
    try:
        ctkey.verify(sct.signature, data, ec.ECDSA(hashes.SHA256()))
        ok = True
    except Exception:
        ok = False
    out.append({"logId": sct.log_id.hex(), "verified": ok, "extensions": sct.extension_bytes.hex()})
print(json.dumps({"scts": out}))
`;

function pythonCryptography(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import cryptography.x509; print(cryptography.__version__)'], {
    encoding: 'utf8',
  });
  return r.status === 0 ? undefined : 'python3 with the cryptography package is not installed';
}

describe('Python cryptography (what sigstore-python verifies SCTs with) reads gatehouse SCTs', {
  skip: pythonCryptography(),
}, () => {
  let world: World;
  before(async () => {
    world = await makeWorld();
  });

  function check(leafPem: string): { error?: string; scts?: { logId: string; verified: boolean }[] } {
    const input = JSON.stringify({
      leaf: leafPem,
      issuer: world.ca.intermediatePem(),
      ctkey: Buffer.from(world.ctKey.publicKeySpki()).toString('hex'),
    });
    return JSON.parse(execFileSync('python3', ['-c', SCRIPT], { input, encoding: 'utf8' }));
  }

  it('finds one SCT by the trusted CT log and verifies it over the precertificate TBS', async () => {
    const signed = await signArtifact(world);
    const r = check(signed.certificatePem);
    assert.equal(r.scts?.length, 1);
    assert.equal(r.scts?.[0]?.logId, world.ct.logId.toString('hex'));
    assert.equal(r.scts?.[0]?.verified, true);
  });

  it('finds no SCT in a leaf issued around the log, and a foreign log’s SCT does not verify', async () => {
    assert.equal(check((await signArtifact(world, { ctLogs: [] })).certificatePem).error, 'no SCT extension');
    const rogue = new CtLog({
      store: SqliteStore.open(':memory:').ct,
      signer: EphemeralSigner.generate(),
      origin: 'rogue.test/ct',
      acceptedRoots: () => [new X509Certificate(world.ca.rootPem()).raw],
    });
    const foreign = check((await signArtifact(world, { ctLogs: [rogue] })).certificatePem);
    assert.equal(foreign.scts?.[0]?.verified, false);
  });
});
