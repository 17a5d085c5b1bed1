/**
 * How activities reach a device right now: over mutual TLS pinned to the certificate we issued once
 * it holds one, else pinned to the factory certificate it showed when first identified. Built per
 * call from the registry and key custody, since activities may run on any worker.
 */
import type { DeviceAdapter, DeviceCredentials, DeviceSession } from '../adapters/device-adapter';
import { vaultDeviceSecrets } from '../custody/device-secrets';
import type { SecretVault } from '../custody/secret-vault';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import { initialCredentialsPurpose } from '../registry/initial-credentials';

const maximumRememberedFingerprints = 20_000;
/**
 * The credentials a device was registered with are written when its run is planned and read by
 * every step of the run: a step reuses what a step before it read this long ago. A step that fails
 * forgets them, so its retry reads them again (the operator may have corrected them).
 */
const credentialsReuseMs = 30_000;
const maximumRememberedCredentials = 5_000;

export function deviceSessions(deps: {
  ca: Pick<CertificateAuthorityService, 'getCertificate'> & Pick<ServiceIdentities, 'ensureServiceIdentity'>;
  vault: SecretVault;
  registry: DeviceRegistry;
  adapterFor: (protocol: string) => DeviceAdapter;
}) {
  const { ca, vault, registry, adapterFor } = deps;
  // A certificate's fingerprint never changes: each step of a run pins the same one without a read.
  const fingerprints = new Map<string, string>();
  async function fingerprintOf(certificateId: string): Promise<string> {
    const known = fingerprints.get(certificateId);
    if (known) return known;
    const { fingerprint } = await ca.getCertificate(certificateId);
    if (fingerprints.size >= maximumRememberedFingerprints) fingerprints.delete(fingerprints.keys().next().value!);
    fingerprints.set(certificateId, fingerprint);
    return fingerprint;
  }

  const recentCredentials = new Map<string, { credentials: DeviceCredentials | undefined; readAt: number }>();
  const credentialsKey = (device: { tenantId: string; deviceId: string }) => `${device.tenantId}\0${device.deviceId}`;
  async function credentialsOf(device: RegisteredDevice): Promise<DeviceCredentials | undefined> {
    const key = credentialsKey(device);
    const recent = recentCredentials.get(key);
    if (recent && Date.now() - recent.readAt < credentialsReuseMs) return recent.credentials;
    const credentials = await vault.read<DeviceCredentials>(device.tenantId, device.deviceId, initialCredentialsPurpose);
    recentCredentials.delete(key);
    if (recentCredentials.size >= maximumRememberedCredentials) recentCredentials.delete(recentCredentials.keys().next().value!);
    recentCredentials.set(key, { credentials, readAt: Date.now() });
    return credentials;
  }

  async function sessionFor(device: RegisteredDevice): Promise<DeviceSession> {
    const credentials = await credentialsOf(device);
    const secrets = vaultDeviceSecrets(vault, device.tenantId, device.deviceId);
    if (device.activeCertificateId) {
      return {
        address: device.address,
        credentials,
        pinnedCertificateFingerprint: await fingerprintOf(device.activeCertificateId),
        clientIdentity: await ca.ensureServiceIdentity(device.tenantId),
        secrets,
      };
    }
    return {
      address: device.address,
      credentials,
      pinnedCertificateFingerprint: device.factoryCertificateFingerprint ?? undefined,
      secrets,
    };
  }

  async function withDevice<T>(
    ref: { tenantId: string; deviceId: string },
    action: (device: RegisteredDevice, adapter: DeviceAdapter, session: DeviceSession) => Promise<T>,
  ): Promise<T> {
    const device = await registry.get(ref.tenantId, ref.deviceId);
    try {
      return await action(device, adapterFor(device.protocol), await sessionFor(device));
    } catch (error) {
      recentCredentials.delete(credentialsKey(device));
      throw error;
    }
  }

  return { sessionFor, withDevice };
}
