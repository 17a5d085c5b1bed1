/**
 * Key custody that finds each key where its location says it lives: `software:` keys in the sealed
 * software store, every other scheme (`pkcs11:`) in the configured custody. New CA keys are made in
 * the configured custody; keys the service must hold in memory always in the software store. Keys
 * stay usable where they were made after the configured custody changes, and nothing above this
 * ever reads a location's scheme.
 */
import type { HashAlgorithm, KeyAlgorithm, KeyCustody, KeyHandle } from './key-custody';
import type { SoftwareKeyStore } from './software-keystore';

const softwareScheme = 'software';

export class RoutingKeyCustody implements KeyCustody {
  readonly kind: KeyCustody['kind'];
  readonly #configured: KeyCustody;
  readonly #software: SoftwareKeyStore;

  /** `configured` makes new CA keys; it is the software store itself when no HSM is configured. */
  constructor(software: SoftwareKeyStore, configured: KeyCustody = software) {
    this.#software = software;
    this.#configured = configured;
    this.kind = configured.kind;
  }

  createKey(label: string, algorithm: KeyAlgorithm): Promise<KeyHandle> {
    return this.#configured.createKey(label, algorithm);
  }

  createExportableKey(label: string, algorithm: KeyAlgorithm): Promise<KeyHandle> {
    return this.#software.createExportableKey(label, algorithm);
  }

  unsealPrivateKeyPem(location: string): Promise<string> {
    return this.#holderOf(location).unsealPrivateKeyPem(location);
  }

  getKey(location: string): Promise<KeyHandle> {
    return this.#holderOf(location).getKey(location);
  }

  sign(location: string, hash: HashAlgorithm, data: Uint8Array): Promise<Uint8Array> {
    return this.#holderOf(location).sign(location, hash, data);
  }

  createWrappingKey(label: string): Promise<string> {
    return this.#configured.createWrappingKey(label);
  }

  wrap(location: string, plaintext: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array> {
    return this.#holderOf(location).wrap(location, plaintext, associatedData);
  }

  unwrap(location: string, wrapped: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array> {
    return this.#holderOf(location).unwrap(location, wrapped, associatedData);
  }

  async close(): Promise<void> {
    await this.#configured.close();
    if (this.#software !== this.#configured) await this.#software.close();
  }

  /** An unknown scheme goes to the configured custody, which refuses it as it always has. */
  #holderOf(location: string): KeyCustody {
    return location.split(':', 1)[0] === softwareScheme ? this.#software : this.#configured;
  }
}
