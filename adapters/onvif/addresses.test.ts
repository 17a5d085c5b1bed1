import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../foundation/errors';
import { OnvifDeviceAdapter } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';

const onvifDeviceAdapter = new OnvifDeviceAdapter({ networks: testDeviceNetworks });
import { parseOnvifAddress } from './addresses';

describe('ONVIF device addresses', () => {
  it('defaults to port 80 of the device service', () => {
    expect(parseOnvifAddress('192.0.2.10')).toEqual({ host: '192.0.2.10', port: 80 });
    expect(parseOnvifAddress('192.0.2.10:8080')).toEqual({ host: '192.0.2.10', port: 8080 });
  });

  it('takes bracketed IPv6 addresses and DNS names', () => {
    expect(parseOnvifAddress('[fe80::1]:8000')).toEqual({ host: 'fe80::1', port: 8000 });
    expect(parseOnvifAddress('cam-7.site.example')).toEqual({ host: 'cam-7.site.example', port: 80, serverName: 'cam-7.site.example' });
  });

  it.each(['', ' 10.0.0.1', 'fe80::1', '10.0.0.1:0', '10.0.0.1:70000', '10.0.0.1:http', 'bad_host', '1.2.3.4.5', 'http://10.0.0.1'])(
    'refuses %j with a ValidationError naming the address field',
    (address) => {
      let error: unknown;
      try {
        onvifDeviceAdapter.validateAddress(address);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).fields[0]?.field).toBe('address');
    },
  );

  it('reports the host as the network host, lower-cased', () => {
    expect(onvifDeviceAdapter.networkHost('CAM-1.Example:8080')).toBe('cam-1.example');
    expect(onvifDeviceAdapter.networkHost('[2001:db8::7]')).toBe('2001:db8::7');
  });
});
