import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../foundation/errors';
import { parseSnmpAddress } from './addresses';

describe('SNMP device addresses', () => {
  it('defaults to UDP port 161 and keeps an explicit port', () => {
    expect(parseSnmpAddress('10.1.2.3')).toEqual({ host: '10.1.2.3', port: 161, transport: 'udp4' });
    expect(parseSnmpAddress('encoder-7.site.example:1161')).toEqual({ host: 'encoder-7.site.example', port: 1161, transport: 'udp4' });
    expect(parseSnmpAddress('[fe80::1]:16161')).toEqual({ host: 'fe80::1', port: 16161, transport: 'udp6' });
  });

  it('refuses malformed addresses with a ValidationError on the address field', () => {
    for (const address of [' 10.1.2.3', '10.1.2.3:', '10.1.2.3:abc', 'fe80::1', '[10.1.2.3]:161', 'host_name', '10.1.2']) {
      let failure: unknown;
      try {
        parseSnmpAddress(address);
      } catch (error) {
        failure = error;
      }
      expect(failure, address).toBeInstanceOf(ValidationError);
      expect((failure as ValidationError).fields[0].field).toBe('address');
    }
  });
});
