/**
 * The engine over real scanner output: one building controller at 127.80.0.2 that speaks both
 * SNMP (real snmpd) and BACnet/IP (the simulated controller), plus an SNMP-only camera next to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBacnetDevice, type SimulatedBacnetDevice } from '../scripts/simulators/bacnet-device';
import { freeUdpPort, startSnmpd, type RunningSnmpd } from '../scripts/simulators/snmp-agent';
import { mergeObservations } from './merge';
import { scanBacnet } from './scanners/bacnet-whois';
import { sweepSnmp } from './scanners/snmp-sweep';
import { parseScanScope } from './scope';
import { testDeviceNetworks } from '../test/support/device-networks';

const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-pass', privPassphrase: 'factory-priv-pass' };
let snmpPort: number;
let bacnetPort: number;
const agents: RunningSnmpd[] = [];
let controller: SimulatedBacnetDevice;

beforeAll(async () => {
  snmpPort = await freeUdpPort('127.80.0.2');
  bacnetPort = await freeUdpPort('127.80.0.2');
  agents.push(
    await startSnmpd({ host: '127.80.0.2', port: snmpPort, sysDescr: 'Building controller BC-9', sysObjectID: '1.3.6.1.4.1.99999.3', admin, readOnlyCommunities: ['public'] }),
    await startSnmpd({ host: '127.80.0.3', port: snmpPort, sysDescr: 'AXIS Q1656 Box Camera', sysObjectID: '1.3.6.1.4.1.368.4.2', admin, readOnlyCommunities: ['public'] }),
  );
  controller = await startBacnetDevice({ host: '127.80.0.2', port: bacnetPort, instance: 9, serialNumber: 'BC9-0001', password: 'device-pass', vendorName: 'Delta Controls', vendorIdentifier: 8, modelName: 'BC-9' });
}, 60_000);

afterAll(async () => {
  await Promise.all([...agents.map((agent) => agent.close()), controller?.close()]);
});

describe('merging what the SNMP and BACnet scanners found', () => {
  it('makes one device of an address seen by both protocols and keeps its neighbour apart', async () => {
    const parsed = parseScanScope({ interfaces: ['lo'], ranges: ['127.80.0.0/29'], allowLoopback: true });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const [snmp, bacnet] = await Promise.all([
      sweepSnmp(parsed.scope, { networks: testDeviceNetworks, timeoutMs: 10_000, port: snmpPort, communities: ['public'], hostTimeoutMs: 300 }),
      scanBacnet(parsed.scope, { networks: testDeviceNetworks, timeoutMs: 10_000, port: bacnetPort, iAmWindowMs: 400, apduTimeoutMs: 500 }),
    ]);
    const { devices, moves, conflicts } = mergeObservations([...snmp, ...bacnet]);
    expect(conflicts).toEqual([]);
    expect(moves).toEqual([]);
    expect(devices.map((device) => device.id).sort()).toEqual(['ip:127.80.0.3', 'serial:delta/BC9-0001']);

    const building = devices.find((device) => device.ip === '127.80.0.2')!;
    expect(building.sources.sort()).toEqual(['bacnet', 'snmp']);
    expect(building.endpoints).toEqual(
      expect.arrayContaining([
        { protocol: 'snmp', address: `127.80.0.2:${snmpPort}` },
        { protocol: 'bacnet', address: `127.80.0.2:${bacnetPort}/9` },
      ]),
    );
    expect(building).toMatchObject({ manufacturer: 'Delta Controls', model: 'BC-9', serialNumber: 'BC9-0001', inConflict: false });
    expect(building.fingerprint.deviceType.value).toBe('building_controller');
    expect(building.fingerprint.capabilities.map((c) => c.value)).toEqual(['bacnet', 'snmp']);

    const camera = devices.find((device) => device.ip === '127.80.0.3')!;
    expect(camera.fingerprint).toMatchObject({ deviceType: { value: 'camera' }, manufacturer: { value: 'Axis Communications' } });
  });
});
