/**
 * A certificate row as the CA stores it, for tests of code that only reads certificate rows
 * (expiry rules, metrics): the PEM and key fields are placeholders.
 */
import { randomBytes } from 'node:crypto';
import type { NewCertificateRow } from '../../db/schema';

export function certificateRowFixture(tenantId: string, overrides: Partial<NewCertificateRow> = {}): NewCertificateRow {
  const serial = randomBytes(8).toString('hex');
  return {
    tenantId,
    certificateType: 'device',
    deviceId: `cam-${serial}`,
    site: 'hq',
    serialNumber: serial,
    fingerprint: randomBytes(32).toString('hex'),
    publicKey: 'unused',
    privateKeyLocation: 'device:unused',
    issuedAt: new Date(Date.now() - 365 * 86_400_000),
    expiresAt: new Date(Date.now() + 365 * 86_400_000),
    subjectDn: `CN=cam-${serial}`,
    issuerDn: 'CN=hq intermediate',
    subject: {},
    extensions: {},
    pem: 'unused',
    ...overrides,
  };
}
