/**
 * Who keeps a pooled vTPM state's encryption key: the key is sealed to the host TPM when the
 * state is manufactured, and only that TPM unseals it when the state is started. A copy of the
 * state (a copied home) is ciphertext anywhere else.
 */
import type { HostTpm } from './host-tpm.ts';

/** Seals a vTPM state key to this machine and unseals it again. */
export interface VtpmStateSealer {
  /** The sealed blob of `key`, to be stored beside the state. */
  seal(key: Uint8Array): Promise<Buffer>;
  /** The key a blob made by {@link VtpmStateSealer.seal} holds; throws where it does not unseal. */
  unseal(sealed: Uint8Array): Promise<Buffer>;
}

/** The state sealer whose keys are sealed to the host TPM's storage root key. */
export class HostTpmStateSealer implements VtpmStateSealer {
  readonly #tpm: HostTpm;

  constructor(tpm: HostTpm) {
    this.#tpm = tpm;
  }

  seal(key: Uint8Array): Promise<Buffer> {
    return this.#tpm.seal(key);
  }

  unseal(sealed: Uint8Array): Promise<Buffer> {
    return this.#tpm.unseal(sealed);
  }
}
