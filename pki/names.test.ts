import * as asn1js from 'asn1js';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../foundation/errors';
import { allowedSubjectAltNames, macAddressUrn, parseDeviceAddress } from './device-names';
import { buildName, fitsSerialNumberAttribute, formatDistinguishedName, roleCommonName, summariseName } from '../x509/distinguished-name';
import { keyUsageExtension, summariseExtensions } from '../x509/extensions';
import { canonicalIpAddress, formatIpAddress, ipAddressBytes } from '../x509/ip-address';

describe('device addresses', () => {
  it.each([
    ['10.0.0.5', { host: '10.0.0.5', port: undefined }],
    ['10.0.0.5:8443', { host: '10.0.0.5', port: 8443 }],
    ['[fd00:0::5]:443', { host: 'fd00::5', port: 443 }],
    ['[FD00::5]', { host: 'fd00::5', port: undefined }],
    ['fd00::5', { host: 'fd00::5', port: undefined }],
    ['[fe80::1%eth0]:80', { host: 'fe80::1', port: 80 }],
    ['Cam-1.Site.Example.com:443', { host: 'cam-1.site.example.com', port: 443 }],
  ])('reads %s', (address, expected) => {
    expect(parseDeviceAddress(address)).toEqual(expected);
  });

  it.each(['', 'host:99999', 'host:0', 'bad_host:80', '-leading.example', '[not-an-ip]:80'])(
    'rejects "%s" with a ValidationError',
    (address) => {
      expect(() => parseDeviceAddress(address)).toThrow(ValidationError);
    },
  );

  it('writes a MAC address as an RFC 9039 device URN in lower case', () => {
    expect(macAddressUrn('00:11:22:AA:BB:CC')).toBe('urn:dev:mac:001122aabbcc');
    expect(macAddressUrn('00-11-22-aa-bb-cc')).toBe('urn:dev:mac:001122aabbcc');
    expect(macAddressUrn('0011.22aa.bbcc')).toBe('urn:dev:mac:001122aabbcc');
    expect(() => macAddressUrn('00:11:22:aa:bb')).toThrow(ValidationError);
  });

  it('allows an IP SAN for address hosts and a DNS SAN for named hosts, with the MAC URN', () => {
    expect(allowedSubjectAltNames({ address: '10.1.2.3:443', macAddress: '00:11:22:33:44:55' })).toEqual({
      dns: [],
      ip: ['10.1.2.3'],
      uri: ['urn:dev:mac:001122334455'],
    });
    expect(allowedSubjectAltNames({ address: 'door.example:443', macAddress: '00:11:22:33:44:55' })).toEqual({
      dns: ['door.example'],
      ip: [],
      uri: ['urn:dev:mac:001122334455'],
    });
  });
});

describe('IP addresses', () => {
  it.each([
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:10.0.0.1', '::ffff:a00:1'],
    ['192.168.000.1', undefined],
    ['192.168.0.1', '192.168.0.1'],
  ])('writes %s canonically as %s', (text, canonical) => {
    expect(canonicalIpAddress(text)).toBe(canonical);
  });

  it('round-trips the octets a certificate carries', () => {
    expect(Array.from(ipAddressBytes('10.0.0.5')!)).toEqual([10, 0, 0, 5]);
    expect(formatIpAddress(ipAddressBytes('fd00::5')!)).toBe('fd00::5');
    expect(() => formatIpAddress(new Uint8Array(5))).toThrow();
  });
});

describe('distinguished names', () => {
  it('formats RFC 4514 strings, least significant RDN first, with escapes', () => {
    const name = buildName([
      { type: 'country', value: 'DE' },
      { type: 'organization', value: 'Acme, Inc. + "Partners"' },
      { type: 'organizationalUnit', value: '#1 site ' },
      { type: 'commonName', value: 'cam;1' },
    ]);
    expect(formatDistinguishedName(name)).toBe('CN=cam\\;1,OU=\\#1 site\\ ,O=Acme\\, Inc. \\+ \\"Partners\\",C=DE');
    expect(summariseName(name)).toMatchObject({ country: 'DE', commonName: 'cam;1', organizationalUnit: '#1 site ' });
  });

  it('puts each attribute in an RDN of its own', () => {
    const name = buildName([
      { type: 'organization', value: 'acme' },
      { type: 'commonName', value: 'x' },
    ]);
    const rdns = (asn1js.fromBER(name.toSchema().toBER()).result as asn1js.Sequence).valueBlock.value;
    expect(rdns).toHaveLength(2);
    for (const rdn of rdns) {
      expect(rdn).toBeInstanceOf(asn1js.Set);
      expect((rdn as asn1js.Set).valueBlock.value).toHaveLength(1);
    }
    expect(formatDistinguishedName(name)).toBe('CN=x,O=acme');
  });

  it('refuses to encode a serialNumber that is not a PrintableString, or any value past its upper bound', () => {
    expect(() => buildName([{ type: 'serialNumber', value: 'SN_0001' }])).toThrow(/PrintableString/);
    expect(() => buildName([{ type: 'commonName', value: 'x'.repeat(65) }])).toThrow(/1 to 64 characters/);
    expect(() => buildName([{ type: 'organization', value: '' }])).toThrow(/1 to 64 characters/);
    expect(fitsSerialNumberAttribute('SN-0001.a')).toBe(true);
    expect(fitsSerialNumberAttribute('SN_0001')).toBe(false);
    expect(fitsSerialNumberAttribute('S'.repeat(65))).toBe(false);
  });

  it('shortens the label of a role common name so that the whole fits in 64 characters', () => {
    expect(roleCommonName('hq', 'Intermediate CA')).toBe('hq Intermediate CA');
    const long = roleCommonName('s'.repeat(64), 'Intermediate CA');
    expect(long).toHaveLength(64);
    expect(long.endsWith(' Intermediate CA')).toBe(true);
  });
});

describe('key usage', () => {
  it.each([
    [['digitalSignature'], ['digitalSignature']],
    [['digitalSignature', 'keyEncipherment'], ['digitalSignature', 'keyEncipherment']],
    [['keyCertSign', 'cRLSign'], ['keyCertSign', 'cRLSign']],
    [['decipherOnly'], ['decipherOnly']],
  ] as const)('round-trips %j', (usages, expected) => {
    const extension = keyUsageExtension(usages);
    expect(extension.critical).toBe(true);
    expect(summariseExtensions([extension]).keyUsage).toEqual(expected);
  });

  it('encodes the named bit list in minimal DER', () => {
    const der = Buffer.from(keyUsageExtension(['keyCertSign', 'cRLSign']).extnValue.valueBlock.valueHexView);
    // BIT STRING, length 2, one unused bit, bits 5 and 6 set.
    expect(der.toString('hex')).toBe('03020106');
  });
});
