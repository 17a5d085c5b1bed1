/**
 * Signs device configurations (the `ConfigurationSignature` format in adapters/device-adapter.ts)
 * with the tenant's configuration signer, whose key the CA keeps in its custody. A signature binds
 * the configuration to one device's serial number and expires soon after, so it can be neither
 * replayed onto another device nor applied later.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import type { ConfigurationSignature, DeviceConfiguration } from '../adapters/device-adapter';
import { canonicalJson } from '../foundation/canonical-json';
import type { ServiceIdentities } from './certificate-authority';

/** Names what the signed payload is, so no other signed JSON can pass for a configuration. */
export const configurationSignaturePurpose = 'device-configuration';
export const configurationSignatureAlgorithm = 'ecdsa-with-SHA256' satisfies ConfigurationSignature['algorithm'];

/**
 * Signing happens right before the configuration is sent, and a retried push signs again, so an
 * hour covers delivery with room for a device clock that runs a little behind.
 */
const defaultSignatureLifetimeMs = 60 * 60 * 1000;

type BindingFields = Pick<ConfigurationSignature, 'tenant' | 'deviceId' | 'serialNumber' | 'signedAt' | 'expiresAt' | 'nonce'>;

export type SignedDeviceConfiguration = DeviceConfiguration & { signature: ConfigurationSignature };

/** The bytes a configuration signature covers: the canonical JSON of configuration and binding. */
export function configurationSignaturePayload(
  configuration: Pick<DeviceConfiguration, 'templateId' | 'version' | 'settings'>,
  binding: BindingFields,
): Uint8Array {
  return Buffer.from(
    canonicalJson({
      purpose: configurationSignaturePurpose,
      tenant: binding.tenant,
      deviceId: binding.deviceId,
      serialNumber: binding.serialNumber,
      templateId: configuration.templateId,
      version: configuration.version,
      settings: configuration.settings,
      signedAt: binding.signedAt,
      expiresAt: binding.expiresAt,
      nonce: binding.nonce,
    }),
    'utf8',
  );
}

/** A key that signs configurations: the service's lives in custody. */
export interface ConfigurationSigningKey {
  certificatePem: string;
  /** Issuers of the certificate, nearest first, up to the root. */
  chainPem: string[];
  /** ECDSA P-256 over the SHA-256 of `data`, DER-encoded. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

export interface ConfigurationSigningOptions {
  now?: Date;
  lifetimeMs?: number;
}

export async function signConfiguration(
  configuration: DeviceConfiguration,
  device: { tenant: string; deviceId: string; serialNumber: string },
  key: ConfigurationSigningKey,
  options: ConfigurationSigningOptions = {},
): Promise<SignedDeviceConfiguration> {
  const signedAt = options.now ?? new Date();
  const binding: BindingFields = {
    tenant: device.tenant,
    deviceId: device.deviceId,
    serialNumber: device.serialNumber,
    signedAt: signedAt.toISOString(),
    expiresAt: new Date(signedAt.getTime() + (options.lifetimeMs ?? defaultSignatureLifetimeMs)).toISOString(),
    nonce: randomBytes(16).toString('base64url'),
  };
  const { templateId, version, settings } = configuration;
  const value = await key.sign(configurationSignaturePayload(configuration, binding));
  return {
    templateId,
    version,
    settings,
    signature: {
      algorithm: configurationSignatureAlgorithm,
      value: Buffer.from(value).toString('base64'),
      signerCertificatePem: key.certificatePem,
      signerChainPem: key.chainPem,
      ...binding,
    },
  };
}

/** Signs with the tenant's configuration signer from the CA; its key is used where custody keeps it. */
export class ConfigurationSigner {
  constructor(
    private readonly ca: Pick<ServiceIdentities, 'ensureConfigurationSigner'>,
    private readonly options: { lifetimeMs?: number } = {},
  ) {}

  async sign(input: {
    tenantId: string;
    device: { deviceId: string; serialNumber: string };
    configuration: DeviceConfiguration;
  }): Promise<SignedDeviceConfiguration> {
    const { row, chainPem, signer } = await this.ca.ensureConfigurationSigner(input.tenantId);
    const publicKey = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: 'der', type: 'spki' });
    const key: ConfigurationSigningKey = {
      certificatePem: row.pem,
      chainPem,
      sign: async (data) => {
        const signature = await signer.custody.sign(signer.location, 'SHA-256', data);
        // A faulty signer (HSM glitch, wrong key behind a location) must not reach a device.
        if (!verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, signature)) {
          throw new Error(`the configuration signature made with ${signer.location} does not verify against its certificate`);
        }
        return signature;
      },
    };
    return signConfiguration(
      input.configuration,
      { tenant: input.tenantId, deviceId: input.device.deviceId, serialNumber: input.device.serialNumber },
      key,
      this.options,
    );
  }
}
