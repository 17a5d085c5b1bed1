import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../foundation/errors';
import { formatBacnetAddress, parseBacnetAddress } from './addresses';
import { BacnetDeviceAdapter } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';

const bacnetDeviceAdapter = new BacnetDeviceAdapter({ networks: testDeviceNetworks });

describe('BACnet device addresses', () => {
  it('reads host, port and device instance from host:port/instance', () => {
    expect(parseBacnetAddress('192.0.2.10:47809/1234')).toEqual({
      host: '192.0.2.10',
      port: 47809,
      instance: 1234,
      endpoint: '192.0.2.10:47809',
    });
  });

  it('uses the BACnet/IP port 47808 when none is given', () => {
    expect(parseBacnetAddress('192.0.2.10/0')).toMatchObject({ port: 47808, instance: 0, endpoint: '192.0.2.10:47808' });
  });

  it('round-trips through formatBacnetAddress', () => {
    expect(formatBacnetAddress(parseBacnetAddress('127.0.0.2/4194302'))).toBe('127.0.0.2:47808/4194302');
  });

  it.each([
    ['', 'no instance'],
    ['192.0.2.10', 'no instance'],
    ['192.0.2.10:47808', 'no instance'],
    ['controller.example.net/12', 'a DNS name'],
    ['[2001:db8::1]:47808/12', 'IPv6'],
    ['192.0.2.10:0/12', 'port 0'],
    ['192.0.2.10:70000/12', 'a port above 65535'],
    ['192.0.2.10:/12', 'an empty port'],
    ['192.0.2.10/4194303', 'the wildcard instance'],
    ['192.0.2.10/-1', 'a negative instance'],
    ['192.0.2.10/12 ', 'trailing space'],
    ['192.0.2.256/12', 'an octet above 255'],
  ])('refuses %j (%s) as a ValidationError naming the address field', (address) => {
    let error: unknown;
    try {
      bacnetDeviceAdapter.validateAddress(address);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).fields[0].field).toBe('address');
  });

  it('names the IP host of an address so duplicate IPs can be noticed', () => {
    expect(bacnetDeviceAdapter.networkHost('192.0.2.10:47808/1234')).toBe('192.0.2.10');
    expect(bacnetDeviceAdapter.protocol).toBe('bacnet');
  });
});
