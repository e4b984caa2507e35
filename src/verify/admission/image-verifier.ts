import { GatehouseError } from '../../common/errors.ts';
import type { RegistryCredentials } from '../../registry/registry-auth.ts';
import type { DeployPolicy } from '../deploy-policy.ts';
import { clientFor, parseOciReference } from '../oci-reference.ts';
import { type VerifiedOciArtifact, verifyOciArtifact } from '../oci-verify.ts';
import { loadRevocations, revokedError } from '../revocations.ts';
import type { ImageVerifier } from './admission.ts';

export interface OciImageVerifierOptions {
  policy: DeployPolicy;
  trustedRoot: unknown;
  /**
   * The revocation list: a file, or the control plane's `http(s)://…/v1/revocations` (signed by a
   * log key of the trusted root). Read again for every review so that a revocation applies at once.
   */
  revocationsPath: string;
  credentials?: RegistryCredentials;
  /** How long a successful verification is reused (revocations are still checked every time). */
  cacheTtlMs?: number;
  now?: () => Date;
}

/**
 * An image verifier for the webhook: the image must be pinned by digest, in a registry the deploy
 * policy lists, and verify with it; results are cached briefly per image.
 */
export function ociImageVerifier(options: OciImageVerifierOptions): ImageVerifier {
  const cache = new Map<string, { until: number; result: VerifiedOciArtifact }>();
  const ttl = options.cacheTtlMs ?? 60_000;
  const registries = options.policy.registries;
  return async (image: string): Promise<void> => {
    const ref = parseOciReference(image);
    const registry = registries?.[ref.host];
    if (registry === undefined) {
      throw new GatehouseError(
        'VERIFICATION_FAILED',
        `registry ${ref.host} is not one the deploy policy allows`,
      );
    }
    // The list is read every time; a missing file is an error, never "nothing revoked".
    const revocations = await loadRevocations(options.revocationsPath, {
      trustedRoot: options.trustedRoot,
      ...(options.now === undefined ? {} : { now: options.now() }),
    });
    const key = `${ref.host}/${ref.repository}@${ref.digest}`;
    const now = options.now?.() ?? new Date();
    const hit = cache.get(key);
    if (hit !== undefined && hit.until > now.getTime()) {
      const digests = new Set([
        hit.result.manifestDigest,
        ...hit.result.files.map((f) => `sha256:${f.sha256}`),
      ]);
      const r = revocations.revoked.find((x) => digests.has(x.digest));
      if (r !== undefined) {
        cache.delete(key);
        throw revokedError(r);
      }
      return;
    }
    const result = await verifyOciArtifact({
      reference: image,
      trustedRoot: options.trustedRoot,
      policy: options.policy,
      revocations,
      client: clientFor(ref, {
        plainHttp: registry.plainHttp,
        ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      }),
      now,
    });
    if (cache.size > 1000) cache.clear();
    cache.set(key, { until: now.getTime() + ttl, result });
  };
}
