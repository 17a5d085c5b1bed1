import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../foundation/errors';
import { formatReaderAddress, parseReaderAddress } from './addresses';
import { osdpReaderAdapter } from './index';

describe('OSDP reader addresses', () => {
  it('reads the port, a hex or decimal PD address and an optional baud rate', () => {
    expect(parseReaderAddress('/dev/ttyUSB0@0x65')).toEqual({ portPath: '/dev/ttyUSB0', pdAddress: 0x65, baudRate: 9600 });
    expect(parseReaderAddress('/dev/ttyUSB0@101?baud=115200')).toEqual({ portPath: '/dev/ttyUSB0', pdAddress: 101, baudRate: 115200 });
    expect(parseReaderAddress('/dev/serial/by-id/usb-FTDI_RS485-if00@0')).toMatchObject({ pdAddress: 0 });
  });

  it('formats addresses so they parse back to the same reader', () => {
    for (const address of ['/dev/ttyUSB0@0x65', '/dev/ttyS1@0x00?baud=38400']) {
      expect(formatReaderAddress(parseReaderAddress(address))).toBe(address);
    }
  });

  it.each([
    ['', 'empty'],
    ['/dev/ttyUSB0', 'no PD address'],
    ['ttyUSB0@1', 'relative path'],
    ['/dev/ttyUSB0@0x7f', 'broadcast address'],
    ['/dev/ttyUSB0@200', 'address above 126'],
    ['/dev/ttyUSB0@1?baud=1234', 'unknown baud rate'],
    ['/dev/../etc/passwd@1', 'path escaping /dev'],
    ['192.0.2.1:443', 'a network address'],
    ['/dev/ttyUSB0@1 ', 'trailing space'],
  ])('refuses %j (%s) with a ValidationError naming address', (address) => {
    const attempt = () => osdpReaderAdapter.validateAddress(address);
    expect(attempt).toThrow(ValidationError);
    try {
      attempt();
    } catch (error) {
      expect((error as ValidationError).fields.map((f) => f.field)).toEqual(['address']);
    }
  });

  it('has no network host: readers sit on a serial bus', () => {
    expect(osdpReaderAdapter.networkHost('/dev/ttyUSB0@0x65')).toBeUndefined();
  });
});
