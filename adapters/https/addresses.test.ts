import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../foundation/errors';
import { parseDeviceAddress } from './addresses';
import { HttpsDeviceAdapter } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';

const httpsDeviceAdapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

describe('HTTPS device addresses', () => {
  it.each([
    ['10.1.2.3', { host: '10.1.2.3', port: 443, serverName: undefined }],
    ['10.1.2.3:8443', { host: '10.1.2.3', port: 8443, serverName: undefined }],
    ['[fe80::1]', { host: 'fe80::1', port: 443, serverName: undefined }],
    ['[2001:db8::7]:65535', { host: '2001:db8::7', port: 65535, serverName: undefined }],
    ['cam-01.site.example', { host: 'cam-01.site.example', port: 443, serverName: 'cam-01.site.example' }],
    ['door1:1', { host: 'door1', port: 1, serverName: 'door1' }],
  ])('accepts %s', (address, expected) => {
    expect(parseDeviceAddress(address)).toMatchObject(expected);
    expect(() => httpsDeviceAdapter.validateAddress(address)).not.toThrow();
  });

  it.each([
    ['', 'empty'],
    ['fe80::1', 'IPv6 without brackets'],
    ['[not-ipv6]:443', 'brackets around a name'],
    ['10.1.2.3:0', 'port 0'],
    ['10.1.2.3:65536', 'port above 65535'],
    ['10.1.2.3:http', 'named port'],
    ['300.1.2.3', 'an IPv4 look-alike'],
    ['-cam.example', 'label starting with a hyphen'],
    ['cam_01.example', 'underscore in a name'],
    [' 10.1.2.3', 'leading space'],
    ['https://10.1.2.3', 'a URL'],
  ])('rejects %j (%s) with ValidationError naming the address field', (address) => {
    const error = (() => {
      try {
        httpsDeviceAdapter.validateAddress(address);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).fields[0].field).toBe('address');
  });

  it('gives the Host header the port only when it is not 443', () => {
    expect(parseDeviceAddress('cam.example').authority).toBe('cam.example');
    expect(parseDeviceAddress('[::1]:8443').authority).toBe('[::1]:8443');
  });
});
