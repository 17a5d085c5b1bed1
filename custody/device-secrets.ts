/**
 * `DeviceSecrets` for adapters: backed by the sealed vault in the service, by memory in adapter
 * tests that run without a database.
 */
import { randomBytes } from 'node:crypto';
import type { SecretVault } from './secret-vault';

/**
 * Per-device secrets an adapter creates and installs itself (an OSDP SCBK, SNMPv3 USM keys), kept
 * sealed in key custody and never logged. Bound to one device; `purpose` names the secret.
 */
export interface DeviceSecrets {
  read(purpose: string): Promise<Uint8Array | undefined>;
  /** The secret stored under `purpose`; when there is none, `bytes` random bytes are sealed and stored first. */
  ensure(purpose: string, bytes: number): Promise<Uint8Array>;
  /** Replaces the secret under `purpose` (e.g. once a rotated key is confirmed on the device). */
  write(purpose: string, value: Uint8Array): Promise<void>;
  /** Forgets the secret under `purpose` (a rotation's pending key once promoted); absent is not an error. */
  remove(purpose: string): Promise<void>;
}

/** Purposes are namespaced so an adapter's secrets never collide with the service's own. */
const purposePrefix = 'device-key:';

export function vaultDeviceSecrets(vault: SecretVault, tenantId: string, deviceId: string): DeviceSecrets {
  const decode = (stored: string | undefined) => (stored === undefined ? undefined : new Uint8Array(Buffer.from(stored, 'base64')));
  return {
    async read(purpose) {
      return decode(await vault.read<string>(tenantId, deviceId, purposePrefix + purpose));
    },
    async ensure(purpose, bytes) {
      // Two concurrent attempts agree on one key: the first stored wins and both return it.
      const candidate = randomBytes(bytes).toString('base64');
      return decode(await vault.storeIfAbsent(tenantId, deviceId, purposePrefix + purpose, candidate))!;
    },
    async write(purpose, value) {
      await vault.store(tenantId, deviceId, purposePrefix + purpose, Buffer.from(value).toString('base64'));
    },
    async remove(purpose) {
      await vault.remove(tenantId, deviceId, purposePrefix + purpose);
    },
  };
}

/** For adapter tests: the same contract, kept in a map the test can inspect. */
export function memoryDeviceSecrets(store = new Map<string, Uint8Array>()): DeviceSecrets & { store: Map<string, Uint8Array> } {
  return {
    store,
    async read(purpose) {
      return store.get(purpose);
    },
    async ensure(purpose, bytes) {
      if (!store.has(purpose)) store.set(purpose, new Uint8Array(randomBytes(bytes)));
      return store.get(purpose)!;
    },
    async write(purpose, value) {
      store.set(purpose, new Uint8Array(value));
    },
    async remove(purpose) {
      store.delete(purpose);
    },
  };
}
