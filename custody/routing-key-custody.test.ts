import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { PolicyViolationError } from '../foundation/errors';
import { openTestCustody } from '../test/support/custody';
import { openTestDatabase } from '../test/support/database';
import type { KeyCustody, KeyHandle } from './key-custody';
import { Sealer } from './sealing';
import { SoftwareKeyStore } from './software-keystore';
import { RoutingKeyCustody } from './routing-key-custody';

async function signsFor(custody: KeyCustody, key: KeyHandle): Promise<boolean> {
  const data = Buffer.from('tbsCertificate bytes');
  const signature = await custody.sign(key.location, 'SHA-256', data);
  return verify('sha256', data, { key: createPublicKey({ key: Buffer.from(key.publicKeySpki), format: 'der', type: 'spki' }), dsaEncoding: 'der' }, signature);
}

describe('key custody routed by location', () => {
  let handle: DatabaseHandle;
  let hsm: KeyCustody;
  const sealer = new Sealer(randomBytes(32));

  beforeAll(async () => {
    handle = await openTestDatabase('embedded');
    hsm = await openTestCustody('pkcs11', { db: handle.db, sealer });
  });
  afterAll(async () => {
    await hsm?.close();
    await handle?.close();
  });

  it('makes CA keys in the configured HSM and the service-held keys in the software store', async () => {
    const caKey = await hsm.createKey('root-ca:acme', 'P-384');
    const serviceKey = await hsm.createExportableKey('service-identity:acme', 'P-256');
    expect(caKey.location).toMatch(/^pkcs11:/);
    expect(serviceKey.location).toMatch(/^software:/);
    expect(await signsFor(hsm, caKey)).toBe(true);
    expect(await signsFor(hsm, serviceKey)).toBe(true);
    expect(await hsm.unsealPrivateKeyPem(serviceKey.location)).toContain('-----BEGIN PRIVATE KEY-----');
    await expect(hsm.unsealPrivateKeyPem(caKey.location)).rejects.toThrow(PolicyViolationError);
  });

  it('keeps using keys made in the software store after an HSM is configured', async () => {
    const before = new RoutingKeyCustody(new SoftwareKeyStore({ db: handle.db, sealer }));
    const earlierCaKey = await before.createKey('intermediate-ca:acme:hq', 'P-256');
    expect(earlierCaKey.location).toMatch(/^software:/);
    expect(await hsm.getKey(earlierCaKey.location)).toEqual(earlierCaKey);
    expect(await signsFor(hsm, earlierCaKey)).toBe(true);
    await expect(hsm.unsealPrivateKeyPem(earlierCaKey.location)).rejects.toThrow(PolicyViolationError);
  });
});
