/**
 * The device's check of configuration signatures, fed by the service's signer and certificates
 * from an OpenSSL CA: two independent implementations of the format that must agree.
 */
import { createPrivateKey, generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceConfiguration } from '../../adapters/device-adapter';
import { canonicalJson as serviceCanonicalJson } from '../../foundation/canonical-json';
import { signConfiguration, type ConfigurationSigningKey, type SignedDeviceConfiguration } from '../../pki/configuration-signing';
import { canonicalJson as deviceCanonicalJson, SignatureRefused, verifyConfigurationSignature } from './configuration-signature';
import { OpensslTestCa, type SigningIdentity } from './openssl-test-ca';

const configuration: DeviceConfiguration = {
  templateId: 'camera-default',
  version: 4,
  settings: {
    hostname: 'cam-lobby-01',
    timezone: 'Europe/Berlin',
    site: 'hq',
    ntp: { servers: ['10.0.0.1', 'ntp.example.net'] },
    tls: { minVersion: 'TLSv1.3' },
    management: { httpEnabled: false, passwordLogin: false },
  },
};
const device = { tenant: 'acme', deviceId: 'cam-lobby-01', serialNumber: 'RD-0001' };
const minute = 60_000;
const day = 24 * 60 * minute;

let ca: OpensslTestCa;
let strangerCa: OpensslTestCa;
let signer: SigningIdentity;

beforeAll(() => {
  ca = new OpensslTestCa('Signing');
  strangerCa = new OpensslTestCa('Stranger');
  signer = ca.issueConfigurationSigner();
});
afterAll(() => {
  ca?.dispose();
  strangerCa?.dispose();
});

function keyOf(identity: SigningIdentity): ConfigurationSigningKey {
  const privateKey = createPrivateKey(identity.privateKeyPem);
  return {
    certificatePem: identity.certificatePem,
    chainPem: identity.chainPem,
    sign: async (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'der' }),
  };
}

function signed(identity = signer, options: { now?: Date; lifetimeMs?: number } = {}): Promise<SignedDeviceConfiguration> {
  return signConfiguration(configuration, device, keyOf(identity), options);
}

function check(candidate: SignedDeviceConfiguration, options: { serialNumber?: string; anchors?: string[]; now?: Date } = {}) {
  return verifyConfigurationSignature(candidate, candidate.signature, {
    serialNumber: options.serialNumber ?? device.serialNumber,
    trustAnchorsPem: options.anchors ?? [ca.rootPem],
    ...(options.now ? { now: options.now } : {}),
  });
}

function refusal(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof SignatureRefused) return error.message;
    throw error;
  }
  throw new Error('the signature was accepted');
}

describe('configuration signature check on the device', () => {
  it('accepts a configuration the service signed for this device with a signer under its trust anchor', async () => {
    const good = await signed();
    expect(good.signature).toMatchObject({
      algorithm: 'ecdsa-with-SHA256',
      tenant: 'acme',
      deviceId: 'cam-lobby-01',
      serialNumber: 'RD-0001',
      signerCertificatePem: signer.certificatePem,
      nonce: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
    });
    expect(Date.parse(good.signature.expiresAt) - Date.parse(good.signature.signedAt)).toBe(60 * minute);
    const verified = check(good);
    expect(verified.signer.subject).toBe('CN=Signing Configuration Signing');
    expect(verified.nonce).toBe(good.signature.nonce);
  });

  it('accepts a signer with the purpose signers carried before id-kp-documentSigning, while that signer is valid', async () => {
    const legacy = ca.issueConfigurationSigner({ purpose: 'legacy' });
    expect(check(await signed(legacy)).signer.fingerprint256).toBe(new X509Certificate(legacy.certificatePem).fingerprint256);
    // The test CA's signers last two days.
    const afterExpiry = new Date(Date.now() + 3 * day);
    const late = await signed(legacy, { now: afterExpiry });
    expect(refusal(() => check(late, { now: afterExpiry }))).toMatch(/outside its validity/);
  });

  it('refuses settings changed after signing', async () => {
    const good = await signed();
    const tampered = { ...good, settings: { ...good.settings, management: { httpEnabled: true, passwordLogin: true } } };
    expect(refusal(() => check(tampered))).toMatch(/does not match the configuration as received/);
    expect(refusal(() => check({ ...good, version: 5 }))).toMatch(/does not match/);
    expect(refusal(() => check({ ...good, templateId: 'other' }))).toMatch(/does not match/);
  });

  it('refuses binding fields changed after signing: another device id, a later expiry, another nonce', async () => {
    const good = await signed();
    const later = new Date(Date.parse(good.signature.expiresAt) + day).toISOString();
    for (const signature of [
      { ...good.signature, deviceId: 'cam-other' },
      { ...good.signature, tenant: 'globex' },
      { ...good.signature, expiresAt: later },
      { ...good.signature, nonce: 'A'.repeat(22) },
    ]) {
      expect(refusal(() => check({ ...good, signature }))).toMatch(/does not match/);
    }
  });

  it('refuses a configuration signed for another device, even if it is otherwise valid', async () => {
    const good = await signed();
    expect(refusal(() => check(good, { serialNumber: 'RD-0002' }))).toMatch(/signed for the device with serial number RD-0001, not this one/);
    // Rewriting the serial number to this device's breaks the signature.
    const rebound = { ...good, signature: { ...good.signature, serialNumber: 'RD-0002' } };
    expect(refusal(() => check(rebound, { serialNumber: 'RD-0002' }))).toMatch(/does not match/);
  });

  it('refuses an expired signature, and one claiming to come from the future', async () => {
    const good = await signed(signer, { lifetimeMs: 10 * minute });
    const afterExpiry = new Date(Date.parse(good.signature.expiresAt) + 1000);
    expect(refusal(() => check(good, { now: afterExpiry }))).toMatch(/expired at/);
    const future = await signed(signer, { now: new Date(Date.now() + 30 * minute) });
    expect(refusal(() => check(future))).toMatch(/signed in the future/);
    // Up to the last moment it is good.
    expect(() => check(good, { now: new Date(Date.parse(good.signature.expiresAt) - 1000) })).not.toThrow();
  });

  it('refuses a signer that does not chain to the device trust anchors, whatever chain it brings', async () => {
    const stranger = await signed(strangerCa.issueConfigurationSigner());
    expect(refusal(() => check(stranger))).toMatch(/does not chain to a trust anchor/);
    // A device of the stranger's tenant accepts it: the check is the anchor, not the format.
    expect(() => check(stranger, { anchors: [strangerCa.rootPem] })).not.toThrow();
    // Our intermediate in the chain does not help a certificate it did not issue.
    const smuggled = { ...stranger, signature: { ...stranger.signature, signerChainPem: [ca.intermediatePem, ca.rootPem] } };
    expect(refusal(() => check(smuggled))).toMatch(/does not chain/);
  });

  it('refuses a signer without the configuration-signing purpose or the digitalSignature key usage', async () => {
    const codeSigning = await signed(ca.issueConfigurationSigner({ purpose: 'codeSigning' }));
    expect(refusal(() => check(codeSigning))).toMatch(/not valid for configuration signing/);
    const keyAgreement = await signed(ca.issueConfigurationSigner({ keyUsage: 'keyAgreement' }));
    expect(refusal(() => check(keyAgreement))).toMatch(/does not allow digital signatures/);
    // A TLS client certificate of the same CA is no configuration signer either.
    const client = ca.issueClientIdentity('provisioning-service');
    const asClient = await signed({ ...client, chainPem: [ca.intermediatePem] });
    expect(refusal(() => check(asClient))).toMatch(/not valid for configuration signing/);
  });

  it('refuses a signer certificate outside its validity', async () => {
    // The OpenSSL test CA issues for two days; three days on, the signer has expired.
    const inThreeDays = new Date(Date.now() + 3 * day);
    const late = await signed(signer, { now: inThreeDays });
    expect(refusal(() => check(late, { now: inThreeDays }))).toMatch(/the signer certificate is outside its validity/);
  });

  it('refuses a signature made by another key than the certified one', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const forged = await signConfiguration(configuration, device, {
      certificatePem: signer.certificatePem,
      chainPem: signer.chainPem,
      sign: async (data) => sign('sha256', data, { key: other, dsaEncoding: 'der' }),
    });
    expect(refusal(() => check(forged))).toMatch(/does not match/);
    const garbage = { ...forged, signature: { ...forged.signature, value: Buffer.from('not a signature').toString('base64') } };
    expect(refusal(() => check(garbage))).toMatch(/does not match/);
  });

  it('refuses algorithms it does not implement and certificates it cannot read', async () => {
    const good = await signed();
    expect(refusal(() => check({ ...good, signature: { ...good.signature, algorithm: 'ES256' as never } }))).toMatch(/algorithm ES256 is not supported/);
    expect(refusal(() => check({ ...good, signature: { ...good.signature, signerCertificatePem: 'junk' } }))).toMatch(/not a PEM X\.509/);
    expect(refusal(() => check(good, { anchors: [] }))).toMatch(/holds no trust anchors/);
  });

  it('serialises exactly as the service does, so both sign and hash the same bytes', () => {
    const samples: unknown[] = [
      configuration.settings,
      { b: [1, 2, { z: null, y: 'é\u2028"' }], a: { '10': 1, '9': 2, B: true, a: false } },
      { numbers: [0, -1.5, 1e21, 1e-7, 0.1 + 0.2] },
    ];
    for (const sample of samples) expect(deviceCanonicalJson(sample)).toBe(serviceCanonicalJson(sample));
  });
});
