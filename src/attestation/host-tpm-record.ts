/** The TPM part of a runner host's enrollment, as the security role signs it. */
import { z } from 'zod';

/** The boot PCRs a host quotes (SRTM: firmware, configuration, boot loader, boot manager). */
export const HOST_PCRS: readonly number[] = Object.freeze([0, 1, 2, 3, 4, 5, 6, 7]);

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const b64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/);

/** What a host's enrollment records about its TPM (signed by the security role with the rest). */
export const hostTpmSchema = z.strictObject({
  /** SHA-256 of the EK certificate's DER. */
  ekCertSha256: hex64,
  /** The EK certificate's path, issuer first, up to the trusted manufacturer root. */
  ekPath: z.array(z.string().max(512)).min(1).max(5),
  /** The host AK's TPM2B_PUBLIC (base64): the host's identity. */
  akPublic: b64,
  akName: z.string().regex(/^[0-9a-f]{68}$/),
  /** The vTPM CA key (TPM2B_PUBLIC, base64), certified by the AK at enrollment. */
  vtpmCaPublic: b64,
  /** Its key identifier: what the vTPM EK certificates name as their authority. */
  vtpmCaKeyId: z.string().regex(/^[0-9a-f]{40}$/),
  /** The boot reference values: SHA-256 PCRs 0–7 as appraised at enrollment. */
  bootPcrs: z.record(z.string().regex(/^[0-7]$/), hex64),
});

/** The TPM part of a host enrollment. */
export type HostTpmRecord = z.infer<typeof hostTpmSchema>;
