import { describe, expect, it } from 'vitest';
import { fingerprintDevice, fingerprintRules, vendorKey } from './fingerprint';
import type { DiscoveryObservation } from './observation';

const at = '2026-11-28T05:00:00.000Z';

function observation(partial: Partial<DiscoveryObservation> & Pick<DiscoveryObservation, 'source'>): DiscoveryObservation {
  return { observedAt: at, endpoints: [], evidence: {}, ...partial };
}

const onvifCamera = observation({
  source: 'ws-discovery',
  ip: '10.0.0.5',
  endpoints: [{ protocol: 'onvif', address: '10.0.0.5:80' }],
  evidence: {
    types: ['dn:NetworkVideoTransmitter', 'tds:Device'],
    scopes: ['onvif://www.onvif.org/type/video_encoder', 'onvif://www.onvif.org/Profile/Streaming', 'onvif://www.onvif.org/hardware/P3265-LVE'],
  },
});

const axisSnmp = observation({
  source: 'snmp',
  ip: '10.0.0.5',
  manufacturer: 'Axis Communications',
  endpoints: [{ protocol: 'snmp', address: '10.0.0.5:161' }],
  evidence: { sysObjectID: '1.3.6.1.4.1.368.4', sysDescr: 'AXIS P3265-LVE Network Camera 11.8.61' },
});

describe('fingerprintDevice', () => {
  it('names an ONVIF video transmitter a camera, with the model from its hardware scope and the onvif capability', () => {
    const print = fingerprintDevice([onvifCamera]);
    expect(print.deviceType.value).toBe('camera');
    expect(print.deviceType.confidence).toBeGreaterThan(0.9);
    expect(print.deviceType.evidence.map((e) => e.rule)).toEqual(expect.arrayContaining(['onvif-type-nvt', 'onvif-scope-video', 'onvif-profile-streaming']));
    expect(print.model?.value).toBe('P3265-LVE');
    expect(print.capabilities.map((c) => c.value)).toEqual(expect.arrayContaining(['onvif', 'onvif-profile-s']));
  });

  it('names the vendor from the SNMP enterprise number and raises confidence when protocols agree', () => {
    const snmpOnly = fingerprintDevice([axisSnmp]);
    expect(snmpOnly.manufacturer?.value).toBe('Axis Communications');
    expect(snmpOnly.deviceType.value).toBe('camera');
    expect(snmpOnly.manufacturer?.evidence).toEqual(
      expect.arrayContaining([expect.objectContaining({ source: 'snmp', fact: 'snmp.enterpriseNumber', value: 368, rule: 'snmp-enterprise-number' })]),
    );
    const both = fingerprintDevice([onvifCamera, axisSnmp]);
    expect(both.deviceType.confidence).toBeGreaterThan(snmpOnly.deviceType.confidence);
    expect(both.capabilities.map((c) => c.value)).toEqual(expect.arrayContaining(['onvif', 'snmp']));
  });

  it('takes a BACnet device for a building controller, its identity read from the Device object and its vendor id', () => {
    const print = fingerprintDevice([
      observation({
        source: 'bacnet',
        manufacturer: 'Johnson Controls',
        model: 'FX-PCG',
        firmwareVersion: '7.1',
        endpoints: [{ protocol: 'bacnet', address: '10.0.0.9:47808/1201' }],
        evidence: { deviceInstance: 1201, vendorIdentifier: 5 },
      }),
    ]);
    expect(print.deviceType).toMatchObject({ value: 'building_controller' });
    expect(print.manufacturer?.value).toBe('Johnson Controls');
    expect(print.manufacturer?.evidence.map((e) => e.rule)).toEqual(['bacnet-vendor-identifier', 'reported-by-device']);
    expect(print.firmwareVersion).toMatchObject({ value: '7.1', confidence: 0.95 });
    expect(print.capabilities.map((c) => c.value)).toEqual(['bacnet']);
  });

  it('reads mDNS service types and UPnP device types', () => {
    const print = fingerprintDevice([
      observation({ source: 'mdns', endpoints: [{ protocol: 'https', address: '10.0.0.7:443' }], evidence: { services: [{ type: '_axis-video._tcp.local' }, { type: '_https._tcp.local' }] } }),
    ]);
    expect(print.deviceType.value).toBe('camera');
    expect(print.manufacturer?.value).toBe('Axis Communications');
    expect(print.capabilities.map((c) => c.value)).toEqual(['https']);

    const upnp = fingerprintDevice([
      observation({ source: 'ssdp', evidence: { searchTargets: ['upnp:rootdevice'], description: { deviceType: 'urn:schemas-upnp-org:device:DigitalSecurityCamera:1' } } }),
    ]);
    expect(upnp.deviceType.value).toBe('camera');
    expect(upnp.capabilities.map((c) => c.value)).toEqual(['upnp']);
  });

  it('reads DHCP vendor class, host name and parameter request list', () => {
    const axis = fingerprintDevice([
      observation({ source: 'dhcp', hostname: 'axis-accc8e012345', evidence: { vendorClass: 'AXIS,Network Camera,P3265-LVE,11.8.61', parameterRequestList: [1, 3, 6, 12, 15, 28, 42] } }),
    ]);
    expect(axis.manufacturer?.value).toBe('Axis Communications');
    expect(axis.deviceType.value).toBe('camera');
    expect(axis.deviceType.evidence.map((e) => e.fact)).toEqual(['dhcp.vendorClass', 'dhcp.hostname']);

    const windows = fingerprintDevice([
      observation({ source: 'dhcp', evidence: { parameterRequestList: [1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252] } }),
    ]);
    expect(windows.deviceType).toMatchObject({ value: 'other', confidence: 0.6 });
    expect(windows.deviceType.evidence[0]).toMatchObject({ rule: 'dhcp-prl-windows', value: '1,3,6,15,31,33,43,44,46,47,119,121,249,252' });
  });

  it('says other with no confidence when nothing points anywhere', () => {
    const print = fingerprintDevice([observation({ source: 'snmp', evidence: { sysObjectID: '1.3.6.1.4.1.99999.1', sysDescr: 'Linux' } })]);
    expect(print.deviceType).toEqual({ value: 'other', confidence: 0, evidence: [] });
    expect(print.manufacturer).toBeUndefined();
  });

  it('keeps the better-supported value when sources disagree, with only its own evidence', () => {
    const print = fingerprintDevice([
      observation({ source: 'dhcp', evidence: { vendorClass: 'MSFT 5.0' } }),
      onvifCamera,
    ]);
    expect(print.deviceType.value).toBe('camera');
    expect(print.deviceType.evidence.every((e) => e.source === 'ws-discovery')).toBe(true);
  });

  it('gives every rule a distinct id and a confidence between 0 and 1', () => {
    expect(new Set(fingerprintRules.map((rule) => rule.id)).size).toBe(fingerprintRules.length);
    for (const rule of fingerprintRules) {
      expect(rule.confidence).toBeGreaterThan(0);
      expect(rule.confidence).toBeLessThanOrEqual(1);
    }
  });

  it('compares vendor spellings by their identifying word', () => {
    expect(vendorKey('AXIS')).toBe(vendorKey('Axis Communications AB'));
    expect(vendorKey('Hikvision')).not.toBe(vendorKey('Axis'));
  });
});
