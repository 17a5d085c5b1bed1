/**
 * The tenant's configuration signer, through both key custodies (the SoftHSM2 token of the test
 * run for PKCS#11): its certificate as OpenSSL reads it, its renewal, and the reference device
 * verifying what the custody-held key signed before applying it.
 */
import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceConfiguration, DeviceSession } from '../adapters/device-adapter';
import { HttpsDeviceAdapter } from '../adapters/https';
import { testDeviceNetworks } from '../test/support/device-networks';
import type { KeyCustody } from '../custody/key-custody';
import { Sealer } from '../custody/sealing';
import type { DatabaseHandle } from '../db/client';
import { certificates } from '../db/schema';
import { verifyConfigurationSignature } from '../scripts/simulators/configuration-signature';
import { ReferenceDevice } from '../scripts/simulators/reference-device';
import { ConfigurationRejectedError } from '../foundation/errors';
import { createLogger } from '../foundation/logger';
import { openTestDatabase } from '../test/support/database';
import { certificateExtensionsText, verifyChain } from '../test/support/openssl';
import { custodyKinds, openTestCustody } from '../test/support/custody';
import { pkiSettings as settings } from '../test/support/pki-publication';
import { CertificateAuthority } from './certificate-authority';
import { ConfigurationSigner, signConfiguration } from './configuration-signing';

const adapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

const logger = createLogger('silent');
const day = 24 * 60 * 60 * 1000;

const configuration: DeviceConfiguration = {
  templateId: 'camera-default',
  version: 7,
  settings: {
    hostname: 'cam-lobby-01',
    timezone: 'Europe/Berlin',
    site: 'hq',
    ntp: { servers: ['127.0.0.1'] },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
  },
};

describe.each(custodyKinds)('configuration signing with %s key custody', (custodyKind) => {
  let handle: DatabaseHandle;
  let custody: KeyCustody;
  let ca: CertificateAuthority;
  const tenant = `acme-${randomBytes(3).toString('hex')}`;
  const devices: ReferenceDevice[] = [];

  beforeAll(async () => {
    handle = await openTestDatabase('embedded');
    const sealer = new Sealer(Buffer.alloc(32, 5));
    custody = await openTestCustody(custodyKind, { db: handle.db, sealer });
    ca = new CertificateAuthority({ db: handle.db, custody, settings, logger });
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((device) => device.stop()));
  });
  afterAll(async () => {
    await custody?.close();
    await handle?.close();
  });

  it('issues one configuration signer per tenant from its services intermediate, with its key held in the CA custody', async () => {
    const [first, second] = await Promise.all([ca.ensureConfigurationSigner(tenant), ca.ensureConfigurationSigner(tenant)]);
    expect(second.row.id).toBe(first.row.id);
    const { row, chainPem, signer } = first;
    const root = await ca.ensureRootCa(tenant);
    const services = await ca.ensureServicesIntermediateCa(tenant);

    expect(row).toMatchObject({ tenantId: tenant, certificateType: 'configuration-signing', issuerCertificateId: services.id, deviceId: null });
    // The same custody as the CA keys: the HSM when there is one, never an exportable software key.
    expect(row.privateKeyLocation.startsWith(custodyKind === 'pkcs11' ? 'pkcs11:' : 'software:')).toBe(true);
    expect(signer.custody.kind).toBe(custodyKind);
    expect(signer.algorithm).toBe('P-256');
    expect(row.subjectDn).toBe(`CN=${tenant} Configuration Signing,O=${tenant}`);
    expect(row.extensions).toMatchObject({
      basicConstraints: { ca: false },
      keyUsage: ['digitalSignature'],
      extendedKeyUsage: ['documentSigning'],
    });
    expect(row.expiresAt.getTime() - row.issuedAt.getTime()).toBeGreaterThan(364 * day);
    expect(chainPem).toEqual([services.pem, root.pem]);

    expect(verifyChain({ rootPem: root.pem, intermediatePems: [services.pem], leafPem: row.pem })).toContain('OK');
    const text = certificateExtensionsText(row.pem, ['keyUsage', 'extendedKeyUsage', 'basicConstraints']);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\s/);
    expect(text).toContain('1.3.6.1.5.5.7.3.36');
    expect(text).toMatch(/CA:FALSE/);
  });

  it('signs with the custody-held key, and a device holding the tenant root verifies it', async () => {
    const signed = await new ConfigurationSigner(ca).sign({
      tenantId: tenant,
      device: { deviceId: 'cam-lobby-01', serialNumber: 'RD-HSM-1' },
      configuration,
    });
    const verified = verifyConfigurationSignature(signed, signed.signature, {
      serialNumber: 'RD-HSM-1',
      trustAnchorsPem: await ca.trustAnchorsPem(tenant),
    });
    expect(verified.signer.fingerprint256).toBe(
      (await ca.ensureConfigurationSigner(tenant)).row.fingerprint.match(/../g)!.join(':').toUpperCase(),
    );
    // A device of another tenant, holding only that tenant's root, refuses it.
    const otherRoot = await ca.trustAnchorsPem(`globex-${randomBytes(3).toString('hex')}`);
    expect(() =>
      verifyConfigurationSignature(signed, signed.signature, { serialNumber: 'RD-HSM-1', trustAnchorsPem: otherRoot }),
    ).toThrow(/does not chain to a trust anchor/);
  });

  /** The CA as another process sees it, or this one once its brief memory of the signer has lapsed. */
  const freshCa = () => new CertificateAuthority({ db: handle.db, custody, settings, logger });

  it('reissues the signer once a third of its validity is left, superseding the old one', async () => {
    const old = (await ca.ensureConfigurationSigner(tenant)).row;
    await handle.db
      .update(certificates)
      .set({ issuedAt: new Date(Date.now() - 300 * day), expiresAt: new Date(Date.now() + 60 * day) })
      .where(eq(certificates.id, old.id));
    // Within its minute the CA keeps using the signer it has: still valid, and devices accept it.
    expect((await ca.ensureConfigurationSigner(tenant)).row.id).toBe(old.id);
    ca = freshCa();
    const renewed = (await ca.ensureConfigurationSigner(tenant)).row;
    expect(renewed.id).not.toBe(old.id);
    expect(renewed.privateKeyLocation).not.toBe(old.privateKeyLocation);
    const [superseded] = await handle.db.select().from(certificates).where(eq(certificates.id, old.id));
    expect(superseded).toMatchObject({ revocationReason: 'superseded' });
    expect((await ca.ensureConfigurationSigner(tenant)).row.id).toBe(renewed.id);
  });

  it('replaces a signer issued with the purpose signers carried before id-kp-documentSigning', async () => {
    const current = (await ca.ensureConfigurationSigner(tenant)).row;
    // What rows of signers issued before said of their purpose.
    await handle.db
      .update(certificates)
      .set({ extensions: { ...(current.extensions as object), extendedKeyUsage: ['configurationSigning'] } })
      .where(eq(certificates.id, current.id));
    ca = freshCa();
    const replaced = (await ca.ensureConfigurationSigner(tenant)).row;
    expect(replaced.id).not.toBe(current.id);
    expect(replaced.extensions).toMatchObject({ extendedKeyUsage: ['documentSigning'] });
  });

  it('provisions the reference device with our CA, then it applies a configuration signed in custody and refuses one from another tenant', async () => {
    const serialNumber = `RD-${randomBytes(3).toString('hex').toUpperCase()}`;
    const credentials = { username: 'admin', password: 'factory-Secret-9' };
    const device = new ReferenceDevice({ serialNumber, macAddress: '02:00:5e:10:00:01', credentials });
    devices.push(device);
    const address = await device.start();
    const deviceId = 'cam-lobby-01';

    const identity = await adapter.identify({ address });
    const factory: DeviceSession = { address, credentials, pinnedCertificateFingerprint: identity.presentedCertificateFingerprint };
    const csrPem = await adapter.createCertificateSigningRequest(factory, {
      commonName: deviceId,
      keyAlgorithm: 'P-256',
      subjectAltNames: { dns: [], ip: ['127.0.0.1'], uri: [] },
    });
    const certificate = await ca.issueDeviceCertificate({
      tenantId: tenant,
      device: { deviceId, serialNumber, macAddress: '02:00:5e:10:00:01', address, site: 'hq' },
      csrPem,
    });
    await adapter.installCertificate(factory, await ca.installationFor(certificate));
    const session: DeviceSession = {
      address,
      pinnedCertificateFingerprint: certificate.fingerprint,
      clientIdentity: await ca.ensureServiceIdentity(tenant),
    };

    const signer = new ConfigurationSigner(ca);
    const receipt = await adapter.pushConfiguration(session, await signer.sign({ tenantId: tenant, device: { deviceId, serialNumber }, configuration }));
    expect(receipt).toMatchObject({ version: 7, hash: device.configuration?.hash });
    expect(device.configuration?.signature?.signerSubject).toContain(`CN=${tenant} Configuration Signing`);

    // A signer of another tenant (its own root) cannot configure this tenant's device.
    const intruder = await signer.sign({
      tenantId: `globex-${randomBytes(3).toString('hex')}`,
      device: { deviceId, serialNumber },
      configuration: { ...configuration, version: 8 },
    });
    const refused = await adapter.pushConfiguration(session, intruder).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigurationRejectedError);
    expect((refused as Error).message).toMatch(/does not chain to a trust anchor/);

    // Nor can someone holding the tenant's signer certificate but not its key.
    const forged = await signConfiguration({ ...configuration, version: 9 }, { tenant, deviceId, serialNumber }, {
      certificatePem: (await ca.ensureConfigurationSigner(tenant)).row.pem,
      chainPem: await ca.trustAnchorsPem(tenant),
      sign: async () => new Uint8Array(Buffer.from('3006020101020101', 'hex')),
    });
    await expect(adapter.pushConfiguration(session, forged)).rejects.toThrow(/does not match the configuration as received/);
    expect(device.configuration?.version).toBe(7);
  });
});
