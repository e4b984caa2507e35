/**
 * Image references as deploy-time verification accepts them: pinned by digest, naming a registry
 * host; and the registry client for one.
 */
import { GatehouseError } from '../common/errors.ts';
import { OciDistributionClient } from '../registry/oci-client.ts';
import type { RegistryCredentials } from '../registry/registry-auth.ts';

/** `HOST[:PORT]/REPO@sha256:HEX`, optionally with `oci://` in front and a tag before the digest. */
export interface OciReference {
  host: string;
  repository: string;
  digest: string;
  tag?: string;
}

const REF_RE =
  /^(?:oci:\/\/)?((?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?)\/([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?@(sha256:[0-9a-f]{64})$/;

/**
 * Parse an image reference pinned by digest. A reference by tag only is refused: a tag can move
 * between verification and pull.
 * @throws GatehouseError BAD_INPUT
 */
export function parseOciReference(ref: string): OciReference {
  const m = REF_RE.exec(ref);
  const host = m?.[1];
  const repository = m?.[2];
  const digest = m?.[4];
  if (host === undefined || repository === undefined || digest === undefined) {
    throw new GatehouseError(
      'BAD_INPUT',
      `'${ref.slice(0, 200)}' is not a registry reference pinned by digest (HOST/REPO@sha256:HEX)`,
    );
  }
  // Without a dot, a port or 'localhost' the first component is a Docker Hub namespace, not a host.
  if (!host.includes('.') && !host.includes(':') && host !== 'localhost') {
    throw new GatehouseError('BAD_INPUT', `'${ref.slice(0, 200)}' names no registry host`);
  }
  return { host, repository, digest, ...(m?.[3] === undefined ? {} : { tag: m[3] }) };
}

/** An artifact in its registry, as verification addresses it; `where` names it in errors. */
export interface RegistryArtifact {
  client: OciDistributionClient;
  ref: OciReference;
  where: string;
}

/** The client for a reference: https unless asked for plain HTTP. */
export function clientFor(
  ref: OciReference,
  options: { plainHttp?: boolean; credentials?: RegistryCredentials },
): OciDistributionClient {
  return new OciDistributionClient({
    baseUrl: `${options.plainHttp === true ? 'http' : 'https'}://${ref.host}`,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    timeoutMs: 15_000,
  });
}
