/**
 * Key custody: where CA private keys live and how they sign. The certificate authority only ever
 * sees a `location` string and this interface; whether the key sits in an HSM (PKCS#11) or in the
 * sealed software store is a configuration choice, and which of them holds a key is read from its
 * location's scheme (see RoutingKeyCustody).
 */
import type { HashAlgorithm, KeyAlgorithm } from '../x509/public-key';

export type { HashAlgorithm, KeyAlgorithm };

export interface KeyHandle {
  /** Opaque, stable reference to the private key, e.g. `pkcs11:object=...;id=...` or `software:<uuid>`. */
  location: string;
  algorithm: KeyAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  publicKeySpki: Uint8Array;
}

export interface KeyCustody {
  readonly kind: 'pkcs11' | 'software';
  /** Generates a new non-exportable signing key pair. */
  createKey(label: string, algorithm: KeyAlgorithm): Promise<KeyHandle>;
  /** The public half and algorithm of an existing key; NotFoundError when unknown. */
  getKey(location: string): Promise<KeyHandle>;
  /**
   * Signs `data` (the message itself, hashed here with `hash`). ECDSA signatures come back
   * DER-encoded (ECDSA-Sig-Value), as X.509 and CRLs carry them; RSA ones are PKCS#1 v1.5.
   */
  sign(location: string, hash: HashAlgorithm, data: Uint8Array): Promise<Uint8Array>;
  /**
   * Creates a key the service itself must hold in memory: Node's TLS and in-memory OCSP signing
   * cannot sign through an HSM. Only for the service's own identities, never for a CA; a custody
   * that keeps every key inside (an HSM) refuses.
   */
  createExportableKey(label: string, algorithm: KeyAlgorithm): Promise<KeyHandle>;
  /** The PKCS#8 PEM of a key made by `createExportableKey`; PolicyViolationError for any other key. */
  unsealPrivateKeyPem(location: string): Promise<string>;
  /**
   * Creates a non-extractable AES-256 key that only ever encrypts other keys (envelope
   * encryption: the data keys that seal secrets are kept wrapped under it). Returns its location.
   */
  createWrappingKey(label: string): Promise<string>;
  /** AES-256-GCM under the wrapping key, inside the custody: iv(12) | ciphertext | tag(16). */
  wrap(location: string, plaintext: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array>;
  /** The plaintext of `wrap`; throws when the blob was altered, or wrapped under another key or for other data. */
  unwrap(location: string, wrapped: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}
