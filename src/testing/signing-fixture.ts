/** Real keys, CA, log and bundle for the verification tests (test support, not product code). */
import { X509Certificate } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SerializedBundle } from '@sigstore/bundle';
import { sha256 } from '../common/encoding.ts';
import { buildBundle } from '../signing/bundle.ts';
import { InternalCa } from '../signing/ca.ts';
import type { PrecertificateLog } from '../signing/ct.ts';
import { type Envelope, signEnvelope } from '../signing/dsse.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import {
  INTOTO_PAYLOAD_TYPE,
  makeStatement,
  SLSA_PROVENANCE_V1,
  slsaProvenance,
  statementPayload,
} from '../signing/intoto.ts';
import type { Signer } from '../signing/signer.ts';
import { buildTrustedRoot } from '../signing/trust-root.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { CtLog } from '../tlog/ct-log.ts';
import { dsseEntryBody, TransparencyLog } from '../tlog/transparency-log.ts';

export const ORIGIN = 'gatehouse.test/log';
export const CT_ORIGIN = 'gatehouse.test/ct/test';
export const IDENTITY = 'https://gatehouse.test/projects/demo/jobs/1';
export const ISSUER = 'https://gatehouse.test';

export interface World {
  ca: InternalCa;
  logKey: EphemeralSigner;
  log: TransparencyLog;
  /** The CA's certificate transparency log, listed in the trusted root's `ctlogs`. */
  ct: CtLog;
  ctKey: EphemeralSigner;
  trustedRoot: ReturnType<typeof buildTrustedRoot>;
}

export async function makeWorld(options: { now?: () => Date } = {}): Promise<World> {
  const ca = await InternalCa.create(await mkdtemp(join(tmpdir(), 'gatehouse-ca-')), {
    name: 'gatehouse test',
    now: new Date(Date.now() - 3600_000),
  });
  const logKey = EphemeralSigner.generate();
  const store = SqliteStore.open(':memory:');
  const log = new TransparencyLog({
    store: store.log,
    signer: logKey,
    origin: ORIGIN,
    ...(options.now ? { now: options.now } : {}),
  });
  const ctKey = EphemeralSigner.generate();
  const ct = new CtLog({
    store: store.ct,
    signer: ctKey,
    origin: CT_ORIGIN,
    acceptedRoots: () => [new X509Certificate(ca.rootPem()).raw],
  });
  const trustedRoot = buildTrustedRoot({
    ca: { rootPem: ca.rootPem(), intermediatePem: ca.intermediatePem(), validFrom: ca.validFrom() },
    tlog: {
      spkiDer: logKey.publicKeySpki(),
      baseUrl: `https://${ORIGIN}`,
      validFrom: new Date(Date.now() - 3600_000),
    },
    ctlogs: [
      {
        spkiDer: ctKey.publicKeySpki(),
        baseUrl: `https://${CT_ORIGIN}`,
        validFrom: new Date(Date.now() - 3600_000),
      },
    ],
  });
  return { ca, logKey, log, ct, ctKey, trustedRoot };
}

export interface SignOptions {
  artifact?: Uint8Array;
  identity?: string;
  issuer?: string;
  /** Sign the envelope with this key instead of the certified one. */
  envelopeSigner?: Signer;
  /** Issue the leaf from this CA instead. */
  ca?: InternalCa;
  /** Submit the precertificate to these CT logs instead of the world's (none: a leaf without SCTs). */
  ctLogs?: readonly PrecertificateLog[];
  notBefore?: Date;
  validityMinutes?: number;
}

export interface Signed {
  artifact: Uint8Array;
  digest: Buffer;
  envelope: Envelope;
  certificatePem: string;
  bundle: SerializedBundle;
}

/** The whole signing path: leaf key, leaf cert, statement, DSSE, log append, bundle. */
export async function signArtifact(world: World, options: SignOptions = {}): Promise<Signed> {
  const artifact = options.artifact ?? Buffer.from('the artifact bytes\n');
  const digest = sha256(artifact);
  const leafKey = EphemeralSigner.generate();
  const certificatePem = await (options.ca ?? world.ca).issueLeaf(
    {
      publicKeySpki: leafKey.publicKeySpki(),
      identity: options.identity ?? IDENTITY,
      issuer: options.issuer ?? ISSUER,
      ...(options.notBefore ? { notBefore: options.notBefore } : {}),
      ...(options.validityMinutes ? { validityMinutes: options.validityMinutes } : {}),
      extensions: {
        sourceRepositoryUri: 'https://git.test/demo',
        sourceRepositoryRef: 'refs/heads/main',
        runnerEnvironment: 'gatehouse-bubblewrap',
      },
    },
    options.ctLogs ?? [world.ct],
  );
  const now = new Date();
  const statement = makeStatement(
    [{ name: 'demo.tgz', digest: { sha256: digest.toString('hex') } }],
    SLSA_PROVENANCE_V1,
    slsaProvenance({
      buildType: 'https://gatehouse.test/build/v1',
      externalParameters: { project: 'demo' },
      builderId: 'https://gatehouse.test/runner',
      invocationId: 'job-1',
      startedOn: now,
      finishedOn: now,
    }),
  );
  const envelope = await signEnvelope(
    INTOTO_PAYLOAD_TYPE,
    statementPayload(statement),
    options.envelopeSigner ?? leafKey,
  );
  const body = dsseEntryBody(envelope, certificatePem);
  const appended = await world.log.append(body);
  // Another entry after ours, so the proof is not trivial.
  await world.log.append(Buffer.from('{"other":true}'));
  const proof = await world.log.inclusionProof(appended.index);
  const bundle = buildBundle({ envelope, certificatePem, entry: { ...appended, body, proof } });
  return { artifact, digest, envelope, certificatePem, bundle };
}

/** A deep copy of a JSON value, for tampering. */
export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
