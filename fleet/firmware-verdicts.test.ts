import { describe, expect, it } from 'vitest';
import type { FirmwareCatalogueEntry } from './firmware-catalogue';
import { judgeFirmware } from './firmware-verdicts';

const digestOf = (c: string) => c.repeat(64);

function entry(version: string, status: 'approved' | 'known_bad', extra: Partial<FirmwareCatalogueEntry> = {}): FirmwareCatalogueEntry {
  return {
    id: `${status}-${version}`,
    vendor: 'Reference Devices',
    model: 'RD-1000',
    version,
    status,
    sha256: null,
    reason: null,
    createdBy: 'test',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...extra,
  };
}

const catalogue = [
  entry('1.0.0', 'approved', { sha256: digestOf('a') }),
  entry('1.1.0', 'approved'),
  entry('0.9.0', 'known_bad', { sha256: digestOf('b'), reason: 'telnet left open' }),
  { ...entry('1.0.0', 'approved', { sha256: digestOf('c') }), id: 'other-model', model: 'RD-2000' },
];
const device = { manufacturer: 'reference devices ', model: 'RD-1000' };

describe('judging firmware against the catalogue', () => {
  it('approves a listed version whose image digest matches, matching vendor and model without regard to case', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '1.0.0', firmwareHash: digestOf('A') }, catalogue)).toMatchObject({
      status: 'approved',
      basis: 'digest',
      catalogueEntryId: 'approved-1.0.0',
    });
  });

  it('treats a digest that differs from the approved image as known bad', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '1.0.0', firmwareHash: digestOf('c') }, catalogue)).toMatchObject({
      status: 'known_bad',
      basis: 'digest',
      reason: 'image digest does not match the approved image',
    });
  });

  it('judges a device that reports no digest by version only, and says so', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '1.0.0' }, catalogue)).toMatchObject({
      status: 'approved',
      basis: 'version',
      reason: expect.stringContaining('reports no image digest'),
    });
    expect(judgeFirmware({ ...device, firmwareVersion: '0.9.0' }, catalogue)).toMatchObject({ status: 'known_bad', basis: 'version' });
  });

  it('approves by version an approved entry whose vendor publishes no digest', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '1.1.0', firmwareHash: digestOf('d') }, catalogue)).toMatchObject({
      status: 'approved',
      basis: 'version',
      reason: expect.stringContaining('publishes no image digest'),
    });
  });

  it('finds a known-bad image by its digest whatever version the device claims', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '7.7.7', firmwareHash: digestOf('b') }, catalogue)).toMatchObject({
      status: 'known_bad',
      basis: 'digest',
      reason: 'version 0.9.0 is known bad: telnet left open',
    });
  });

  it('calls firmware the catalogue does not list unknown', () => {
    expect(judgeFirmware({ ...device, firmwareVersion: '2.0.0', firmwareHash: digestOf('e') }, catalogue)).toMatchObject({ status: 'unknown', basis: 'digest' });
    expect(judgeFirmware({ manufacturer: 'Other', model: 'RD-1000', firmwareVersion: '1.0.0' }, catalogue)).toMatchObject({ status: 'unknown', basis: 'version' });
  });
});
