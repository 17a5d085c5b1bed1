import { describe, expect, it } from 'vitest';
import { ValidationError } from '../foundation/errors';
import { columnForHeader, deviceSheetColumns, resolveHeaderRow } from './columns';

function headerError(cells: string[]): ValidationError {
  try {
    resolveHeaderRow(cells, 1);
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('the header was accepted');
}

describe('device sheet columns', () => {
  it('publishes the columns in their documented order, with the four required ones marked', () => {
    expect(deviceSheetColumns.map((c) => c.name)).toEqual([
      'serialNumber',
      'macAddress',
      'address',
      'protocol',
      'deviceType',
      'site',
      'name',
      'deviceId',
      'username',
      'password',
    ]);
    expect(deviceSheetColumns.filter((c) => c.required).map((c) => c.name)).toEqual(['serialNumber', 'macAddress', 'address', 'site']);
    expect(deviceSheetColumns.find((c) => c.name === 'deviceType')!.description).toContain('door_controller');
  });

  it('matches headers regardless of case, spaces, underscores and hyphens', () => {
    for (const header of ['serialNumber', 'Serial Number', 'serial_number', 'SERIAL-NUMBER', ' serial number ']) {
      expect(columnForHeader(header)).toBe('serialNumber');
    }
    expect(columnForHeader('MAC address')).toBe('macAddress');
    expect(columnForHeader('device_type')).toBe('deviceType');
    expect(columnForHeader('serial')).toBeUndefined();
  });

  it('maps each header position to its column and ignores empty header cells', () => {
    expect(resolveHeaderRow(['Site', '', 'serial_number', 'MAC Address', 'address'], 1)).toEqual([
      'site',
      undefined,
      'serialNumber',
      'macAddress',
      'address',
    ]);
  });

  it('rejects unknown, repeated and missing columns together, naming each', () => {
    const error = headerError(['serialNumber', 'Serial Number', 'colour', 'address']);
    const reasons = error.fields.map((f) => f.reason);
    expect(reasons).toEqual([
      expect.stringContaining('column "Serial Number" repeats "serialNumber"'),
      expect.stringContaining('unknown column "colour"'),
      'required column macAddress is missing',
      'required column site is missing',
    ]);
    expect(error.fields.every((f) => f.field === 'file' && f.line === 1)).toBe(true);
  });
});
