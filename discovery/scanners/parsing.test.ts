import { describe, expect, it } from 'vitest';
import { serviceProtocolOf } from './mdns';
import { mSearchMessage, parseDeviceDescription, parseSsdpResponse } from './ssdp';
import { readSoapEnvelope } from '../../adapters/onvif/soap';
import { readOnvifScopes, wsDiscoveryProbe } from './ws-discovery';

describe('SSDP messages', () => {
  it('writes an M-SEARCH with HOST, the quoted MAN, MX and ST, ending in an empty line', () => {
    expect(mSearchMessage('upnp:rootdevice', 2)).toBe(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: upnp:rootdevice\r\n\r\n',
    );
  });

  it('reads a search response case-insensitively and refuses anything without a status line or LOCATION', () => {
    const response = parseSsdpResponse('HTTP/1.1 200 OK\r\nlocation: http://10.0.0.9:49152/desc.xml\r\nSt: upnp:rootdevice\r\nUSN: uuid:1::upnp:rootdevice\r\nEXT:\r\n\r\n');
    expect(response).toMatchObject({ location: 'http://10.0.0.9:49152/desc.xml', searchTarget: 'upnp:rootdevice', usn: 'uuid:1::upnp:rootdevice' });
    expect(parseSsdpResponse('NOTIFY * HTTP/1.1\r\nLOCATION: http://x/\r\n\r\n')).toBeUndefined();
    expect(parseSsdpResponse('HTTP/1.1 200 OK\r\nST: ssdp:all\r\n\r\n')).toBeUndefined();
    expect(parseSsdpResponse('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n')).toBeUndefined();
  });

  it('reads the root device of a description, not its embedded devices, and refuses non-descriptions', () => {
    const xml = `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><URLBase>http://10.0.0.9:80/</URLBase><device>
      <deviceType>urn:schemas-upnp-org:device:Basic:1</deviceType><manufacturer>Acme &amp; Sons &#x2122;</manufacturer><modelName>X1</modelName>
      <serialNumber>S-1</serialNumber><UDN>uuid:abc</UDN><deviceList><device><manufacturer>Inner</manufacturer></device></deviceList>
      </device></root>`;
    expect(parseDeviceDescription(xml)).toEqual({
      deviceType: 'urn:schemas-upnp-org:device:Basic:1',
      manufacturer: 'Acme & Sons ™',
      modelName: 'X1',
      serialNumber: 'S-1',
      udn: 'uuid:abc',
      urlBase: 'http://10.0.0.9:80/',
    });
    expect(parseDeviceDescription('<html><body>router login</body></html>')).toBeUndefined();
    expect(parseDeviceDescription('<root><device>')).toBeUndefined();
  });
});

describe('WS-Discovery Probe', () => {
  it('names exactly one type, so devices with only that type match it, and carries the MessageID answers relate to', () => {
    const { header, body } = readSoapEnvelope(wsDiscoveryProbe('urn:uuid:1234', 'tds:Device'));
    expect(body).toEqual({ Probe: { Types: 'tds:Device' } });
    expect(header.MessageID).toBe('urn:uuid:1234');
    expect(JSON.stringify(header.Action)).toContain('/discovery/Probe');
  });
});

describe('ONVIF scopes', () => {
  it('decodes hardware, name, location, MAC and profiles from onvif:// scopes and ignores others', () => {
    expect(
      readOnvifScopes([
        'onvif://www.onvif.org/hardware/P3265-LV',
        'onvif://www.onvif.org/name/Loading_Dock%20East',
        'onvif://www.onvif.org/location/country/norway',
        'onvif://www.onvif.org/MAC/AC-CC-8E-01-02-03',
        'onvif://www.onvif.org/Profile/T',
        'onvif://www.onvif.org/type/Network_Video_Transmitter',
        'http://vendor.example/whatever',
        'onvif://www.onvif.org/name/%E0%A4%A',
      ]),
    ).toEqual({
      hardware: 'P3265-LV',
      name: '%E0%A4%A',
      location: 'country/norway',
      macAddress: 'ac:cc:8e:01:02:03',
      profiles: ['T'],
      types: ['Network_Video_Transmitter'],
    });
  });
});

describe('DNS-SD service names', () => {
  it('turns a service type into the endpoint protocol name', () => {
    expect(serviceProtocolOf('_axis-video._tcp.local.')).toBe('axis-video');
    expect(serviceProtocolOf('_http._tcp.local')).toBe('http');
  });
});
