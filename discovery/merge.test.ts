import { describe, expect, it } from 'vitest';
import { mergeObservations, type KnownDevice } from './merge';
import type { DiscoveryObservation } from './observation';

function observation(partial: Partial<DiscoveryObservation> & Pick<DiscoveryObservation, 'source'>): DiscoveryObservation {
  return { observedAt: '2026-11-28T05:00:00.000Z', endpoints: [], evidence: {}, ...partial };
}

const cameraMac = 'ac:cc:8e:01:23:45';

/** One Axis camera as three protocols report it: WS-Discovery (MAC scope), SNMP (IP only), DHCP (MAC, IP). */
const cameraSeenThreeWays = [
  observation({
    source: 'ws-discovery',
    ip: '10.0.0.5',
    macAddress: cameraMac,
    model: 'P3265-LVE',
    endpoints: [{ protocol: 'onvif', address: '10.0.0.5:80' }],
    evidence: { types: ['dn:NetworkVideoTransmitter'], scopes: [] },
  }),
  observation({
    source: 'snmp',
    ip: '10.0.0.5',
    manufacturer: 'Axis Communications',
    endpoints: [{ protocol: 'snmp', address: '10.0.0.5:161' }],
    evidence: { sysObjectID: '1.3.6.1.4.1.368.4', sysDescr: 'AXIS P3265-LVE Network Camera' },
  }),
  observation({ source: 'dhcp', ip: '10.0.0.5', macAddress: cameraMac, hostname: 'axis-accc8e012345', observedAt: '2026-11-28T05:00:05.000Z', evidence: { vendorClass: 'AXIS' } }),
];

describe('mergeObservations', () => {
  it('makes one device of a camera seen by three protocols, with every endpoint and a fingerprint from all of them', () => {
    const { devices, moves, conflicts } = mergeObservations(cameraSeenThreeWays);
    expect(conflicts).toEqual([]);
    expect(moves).toEqual([]);
    expect(devices).toHaveLength(1);
    const [camera] = devices;
    expect(camera).toMatchObject({
      id: `mac:${cameraMac}`,
      known: false,
      macAddress: cameraMac,
      ip: '10.0.0.5',
      manufacturer: 'Axis Communications',
      hostname: 'axis-accc8e012345',
      inConflict: false,
      firstObservedAt: '2026-11-28T05:00:00.000Z',
      lastObservedAt: '2026-11-28T05:00:05.000Z',
    });
    expect(camera!.sources.sort()).toEqual(['dhcp', 'snmp', 'ws-discovery']);
    expect(camera!.endpoints).toEqual([
      { protocol: 'onvif', address: '10.0.0.5:80' },
      { protocol: 'snmp', address: '10.0.0.5:161' },
    ]);
    expect(camera!.fingerprint.deviceType.value).toBe('camera');
    expect(new Set(camera!.fingerprint.deviceType.evidence.map((e) => e.source))).toEqual(new Set(['ws-discovery', 'snmp', 'dhcp']));
  });

  it('joins observations without a MAC by serial and vendor, whatever the vendor spelling', () => {
    const { devices } = mergeObservations([
      observation({ source: 'bacnet', ip: '10.0.0.9', serialNumber: 'JC-1', manufacturer: 'Johnson Controls', endpoints: [{ protocol: 'bacnet', address: '10.0.0.9:47808/7' }] }),
      observation({ source: 'ssdp', ip: '10.0.1.9', serialNumber: 'JC-1', manufacturer: 'Johnson Controls, Inc.' }),
    ]);
    expect(devices).toHaveLength(1);
    expect(devices[0]).toMatchObject({ id: 'serial:johnson/JC-1', serialNumber: 'JC-1' });
  });

  it('reports a known MAC at a new IP as a move of the known device, not a new device', () => {
    const known: KnownDevice[] = [{ id: 'device-17', macAddress: cameraMac, ip: '10.0.0.4', serialNumber: 'ACCC8E012345', manufacturer: 'Axis' }];
    const { devices, moves, conflicts } = mergeObservations(cameraSeenThreeWays, known);
    expect(conflicts).toEqual([]);
    expect(moves).toEqual([{ mac: cameraMac, from: '10.0.0.4', to: '10.0.0.5', deviceId: 'device-17' }]);
    expect(devices).toHaveLength(1);
    expect(devices[0]).toMatchObject({ id: 'device-17', known: true });
  });

  it('recognises a known device by serial when the protocol reports no MAC, without a move', () => {
    const known: KnownDevice[] = [{ id: 'device-3', macAddress: '00:11:22:33:44:55', ip: '10.0.0.9', serialNumber: 'JC-1', manufacturer: 'Johnson Controls' }];
    const { devices, moves } = mergeObservations([observation({ source: 'bacnet', ip: '10.0.0.9', serialNumber: 'JC-1', manufacturer: 'Johnson Controls' })], known);
    expect(devices[0]).toMatchObject({ id: 'device-3', known: true });
    expect(moves).toEqual([]);
  });

  it('reports two MACs claiming one serial as a conflict and keeps them two devices', () => {
    const { devices, conflicts } = mergeObservations([
      observation({ source: 'ws-discovery', ip: '10.0.0.5', macAddress: cameraMac, serialNumber: 'SN-1', manufacturer: 'Axis' }),
      observation({ source: 'ssdp', ip: '10.0.0.6', macAddress: 'ac:cc:8e:99:99:99', serialNumber: 'SN-1', manufacturer: 'AXIS' }),
      // No MAC: cannot be told apart, so it is attributed to neither.
      observation({ source: 'bacnet', ip: '10.0.0.50', serialNumber: 'SN-1', manufacturer: 'Axis' }),
    ]);
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({ kind: 'serial-claimed-by-several-macs', serialNumber: 'SN-1', macAddresses: [cameraMac, 'ac:cc:8e:99:99:99'] });
    expect(conflicts[0]!.claims.map((claim) => claim.source)).toEqual(['ws-discovery', 'ssdp', 'bacnet']);
    expect(devices).toHaveLength(3);
    expect(devices.every((device) => device.inConflict)).toBe(true);
    expect(devices.map((device) => device.observations.length)).toEqual([1, 1, 1]);
  });

  it('reports a serial seen under a MAC other than the registered one as a conflict with the registry', () => {
    const known: KnownDevice[] = [{ id: 'device-17', macAddress: cameraMac, serialNumber: 'SN-1', manufacturer: 'Axis' }];
    const { devices, conflicts } = mergeObservations([observation({ source: 'ssdp', ip: '10.0.0.6', macAddress: 'ac:cc:8e:99:99:99', serialNumber: 'SN-1', manufacturer: 'Axis' })], known);
    expect(conflicts).toEqual([
      expect.objectContaining({ kind: 'serial-claimed-by-several-macs', macAddresses: ['ac:cc:8e:99:99:99', cameraMac] }),
    ]);
    expect(conflicts[0]!.claims).toContainEqual(expect.objectContaining({ source: 'registry', deviceId: 'device-17' }));
    expect(devices[0]).toMatchObject({ known: false, inConflict: true, id: 'mac:ac:cc:8e:99:99:99' });
  });

  it('reports one IP claimed by two MACs as a conflict and merges nothing at that IP', () => {
    const { devices, conflicts } = mergeObservations([
      observation({ source: 'dhcp', ip: '10.0.0.5', macAddress: cameraMac }),
      observation({ source: 'ws-discovery', ip: '10.0.0.5', macAddress: '00:11:22:33:44:55' }),
      observation({ source: 'snmp', ip: '10.0.0.5', endpoints: [{ protocol: 'snmp', address: '10.0.0.5:161' }] }),
    ]);
    expect(conflicts).toEqual([
      expect.objectContaining({ kind: 'ip-claimed-by-several-macs', ip: '10.0.0.5', macAddresses: [cameraMac, '00:11:22:33:44:55'] }),
    ]);
    expect(conflicts[0]!.claims).toHaveLength(3);
    expect(devices).toHaveLength(3);
    expect(devices.map((device) => device.sources)).toEqual([['dhcp'], ['ws-discovery'], ['snmp']]);
    expect(devices.every((device) => device.inConflict)).toBe(true);
  });

  it('never joins two MACs through a MAC-less observation that shares an IP with one and a serial with the other', () => {
    const { devices, conflicts } = mergeObservations([
      observation({ source: 'dhcp', ip: '10.0.0.5', macAddress: cameraMac }),
      observation({ source: 'bacnet', ip: '10.0.0.5', serialNumber: 'SN-9', manufacturer: 'Delta Controls' }),
      observation({ source: 'ssdp', ip: '10.0.0.8', macAddress: '00:11:22:33:44:55', serialNumber: 'SN-9', manufacturer: 'Delta' }),
    ]);
    const macs = devices.map((device) => device.macAddress).filter(Boolean);
    expect(new Set(macs).size).toBe(macs.length);
    expect(devices.every((device) => new Set(device.observations.map((o) => o.macAddress).filter(Boolean)).size <= 1)).toBe(true);
    expect(conflicts).toEqual([expect.objectContaining({ kind: 'ip-claimed-by-several-macs', ip: '10.0.0.5' })]);
  });

  it('keeps devices at different IPs without shared identity apart', () => {
    const { devices } = mergeObservations([
      observation({ source: 'snmp', ip: '10.0.0.5' }),
      observation({ source: 'snmp', ip: '10.0.0.6' }),
    ]);
    expect(devices.map((device) => device.id)).toEqual(['ip:10.0.0.5', 'ip:10.0.0.6']);
  });
});
