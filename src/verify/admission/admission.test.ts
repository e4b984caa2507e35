import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IDENTITY_BASE, ISSUER, makeOciWorld, type OciWorld } from '../../testing/oci-fixture.ts';
import { registrySkip } from '../../testing/registry.ts';
import type { DeployPolicy } from '../deploy-policy.ts';
import { decideAdmission, podImages } from './admission.ts';
import { ociImageVerifier } from './image-verifier.ts';
import { selfSignedServingCertificate } from './tls.ts';
import { type RunningWebhook, startAdmissionWebhook } from './webhook-server.ts';

const skip = registrySkip();
const testdata = join(import.meta.dirname, 'testdata');

/** A recorded AdmissionReview with its IMAGE_n placeholders filled in. */
function review(name: string, ...images: string[]): Record<string, unknown> {
  let text = readFileSync(join(testdata, name), 'utf8');
  images.forEach((image, i) => {
    text = text.replaceAll(`"IMAGE_${i}"`, JSON.stringify(image));
  });
  return JSON.parse(text) as Record<string, unknown>;
}

function post(
  port: number,
  ca: string,
  body: string,
  path = '/validate',
  method = 'POST',
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        ca,
        headers: { 'content-type': 'application/json' },
        timeout: 20_000,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || '{}') as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

type Response = { uid: string; allowed: boolean; status?: { code: number; message: string } };

describe('the admission webhook', { skip }, () => {
  let w: OciWorld;
  let hook: RunningWebhook;
  let ca = '';
  let policy: DeployPolicy;
  before(async () => {
    w = await makeOciWorld();
    await w.setRevoked();
    policy = {
      projects: ['hello-app', 'shady-app'],
      identityBase: IDENTITY_BASE,
      issuer: ISSUER,
      require: ['provenance', 'sbom', 'vsa'],
      maxAge: '7d',
      registries: { [w.registry.host]: { plainHttp: true } },
    };
    const tls = await selfSignedServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    ca = tls.certPem;
    hook = await startAdmissionWebhook({
      host: '127.0.0.1',
      port: 0,
      certPem: tls.certPem,
      keyPem: tls.keyPem,
      verifyImage: ociImageVerifier({
        policy,
        trustedRoot: w.trustedRoot,
        revocationsPath: w.revocationsPath,
      }),
    });
  });
  after(async () => {
    await hook?.close();
    await w?.close();
  });

  const admit = async (body: unknown): Promise<Response> => {
    const r = await post(hook.port, ca, JSON.stringify(body));
    assert.equal(r.status, 200);
    assert.equal(r.json.apiVersion, 'admission.k8s.io/v1');
    assert.equal(r.json.kind, 'AdmissionReview');
    return r.json.response as Response;
  };

  it('allows a Pod whose images the gate promoted, echoing the request uid', async () => {
    const r = await admit(review('pod-create.json', w.allowedRef));
    assert.deepEqual(r, { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
  });

  it('allows a CronJob update whose job template runs a promoted image', async () => {
    const r = await admit(review('cronjob-update.json', w.allowedRef));
    assert.equal(r.allowed, true);
  });

  it('denies a Deployment with one quarantined image, naming it', async () => {
    const r = await admit(review('deployment-create.json', w.allowedRef, w.deniedRef));
    assert.equal(r.allowed, false);
    assert.equal(r.status?.code, 403);
    assert.match(
      r.status?.message ?? '',
      new RegExp(`image ${w.deniedRef.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    assert.doesNotMatch(r.status?.message ?? '', /hello-app@/);
  });

  const denials: [string, () => string, RegExp][] = [
    [
      'an image by tag only',
      () => `${w.registry.host}/gatehouse/promoted/hello-app:latest`,
      /pinned by digest/,
    ],
    [
      'an image from another registry',
      () => w.allowedRef.replace(w.registry.host, 'registry.example:5000'),
      /not one the deploy policy allows/,
    ],
    [
      'an image the registry does not have',
      () => w.allowedRef.replace(/@sha256:.*/, `@sha256:${'e'.repeat(64)}`),
      /no such manifest/,
    ],
  ];
  for (const [what, image, message] of denials) {
    it(`denies ${what}`, async () => {
      const r = await admit(review('pod-create.json', image()));
      assert.equal(r.allowed, false);
      assert.match(r.status?.message ?? '', message);
    });
  }

  it('allows a deletion, which runs nothing new', async () => {
    assert.equal((await admit(review('pod-delete.json', 'anything'))).allowed, true);
  });

  it('denies kinds it cannot judge and pods without images', async () => {
    const svc = review('pod-create.json', w.allowedRef);
    (svc.request as { kind: unknown }).kind = { group: '', version: 'v1', kind: 'Service' };
    assert.match((await admit(svc)).status?.message ?? '', /does not judge objects of kind Service/);
    const empty = review('pod-create.json', w.allowedRef);
    (empty.request as { object: { spec: unknown } }).object.spec = { containers: [] };
    assert.equal((await admit(empty)).allowed, false);
  });

  it('answers 400 to what is not an AdmissionReview, 413 to a huge body, and serves /healthz', async () => {
    assert.equal((await post(hook.port, ca, '{not json')).status, 400);
    assert.equal(
      (
        await post(
          hook.port,
          ca,
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1beta1',
            kind: 'AdmissionReview',
            request: { uid: 'x' },
          }),
        )
      ).status,
      400,
    );
    assert.equal((await post(hook.port, ca, JSON.stringify({ kind: 'AdmissionReview' }))).status, 400);
    assert.equal((await post(hook.port, ca, 'x'.repeat(5 * 1024 * 1024))).status, 413);
    assert.equal((await post(hook.port, ca, '', '/healthz', 'GET')).status, 200);
  });

  it('denies a revoked artifact at once, even one it verified a moment ago', async () => {
    await w.setRevoked('recalled build');
    const r = await admit(review('pod-create.json', w.allowedRef));
    assert.equal(r.allowed, false);
    assert.match(r.status?.message ?? '', /revoked .*recalled build/);
    await w.setRevoked();
  });

  it('fails closed when the revocation list cannot be read', async () => {
    const saved = await readFile(w.revocationsPath, 'utf8');
    await rm(w.revocationsPath);
    try {
      const r = await admit(review('pod-create.json', w.allowedRef));
      assert.equal(r.allowed, false);
      assert.match(r.status?.message ?? '', /revocation list/);
    } finally {
      await writeFile(w.revocationsPath, saved);
    }
  });

  it('fails closed when the registry cannot be reached', async () => {
    const deadHost = '127.0.0.1:1';
    const verifier = ociImageVerifier({
      policy: { ...policy, registries: { [deadHost]: { plainHttp: true } } },
      trustedRoot: w.trustedRoot,
      revocationsPath: w.revocationsPath,
    });
    const body = review('pod-create.json', w.allowedRef.replace(w.registry.host, deadHost));
    const r = await decideAdmission(body, verifier);
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /cannot reach the registry/);
  });

  it('denies when verification does not finish before the deadline', async () => {
    const r = await decideAdmission(review('pod-create.json', w.allowedRef), () => new Promise(() => {}), 50);
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /did not finish/);
  });

  it('CLI: gatehouse admission serves with a self-signed certificate it generates', async () => {
    const policyFile = join(w.homeDir, 'admission-policy.yaml');
    await writeFile(
      policyFile,
      `projects: [hello-app]\nidentityBase: ${IDENTITY_BASE}\nissuer: ${ISSUER}\nregistries:\n  "${w.registry.host}": { plainHttp: true }\n`,
    );
    const child = spawn(
      join(import.meta.dirname, '..', '..', '..', 'bin', 'gatehouse'),
      ['admission', '--policy', policyFile, '--listen', '127.0.0.1:0', '--home', w.homeDir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no listening line: ${out} ${err}`)), 30_000);
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
        });
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on https:\/\/127\.0\.0\.1:([0-9]+)\/validate/.exec(out);
          if (m?.[1] !== undefined) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        child.on('exit', () => reject(new Error(`exited: ${err}`)));
      });
      const cert = await readFile(join(w.homeDir, 'admission', 'tls.crt.pem'), 'utf8');
      const r = await post(port, cert, JSON.stringify(review('pod-create.json', w.allowedRef)));
      assert.equal((r.json.response as Response).allowed, true);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

describe('pod images', () => {
  it('collects containers, initContainers and ephemeralContainers, once each', () => {
    const pod = {
      spec: {
        containers: [{ image: 'a' }, { image: 'b' }],
        initContainers: [{ image: 'a' }],
        ephemeralContainers: [{ image: 'c' }],
      },
    };
    assert.deepEqual(podImages('Pod', pod), ['a', 'b', 'c']);
  });
  const bad: [string, string, unknown][] = [
    ['no spec', 'Pod', {}],
    ['containers not a list', 'Pod', { spec: { containers: {} } }],
    ['a container without an image', 'Pod', { spec: { containers: [{ name: 'x' }] } }],
    ['an image that is not a string', 'Pod', { spec: { containers: [{ image: 7 }] } }],
    ['a Deployment without a template', 'Deployment', { spec: {} }],
    ['an unknown kind', 'Secret', { data: {} }],
    ['a null object', 'Pod', null],
  ];
  for (const [what, kind, object] of bad) {
    it(`refuses ${what}`, () => assert.throws(() => podImages(kind, object)));
  }
});
