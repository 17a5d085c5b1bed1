/**
 * Who-Is sweep against simulated BACnet/IP devices on 127.79.0.x, all on one port: devices that
 * answer, one that is silent, one whose confirmed answers are not BACnet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBacnetDevice, type SimulatedBacnetDevice } from '../../scripts/simulators/bacnet-device';
import { freeUdpPort } from '../../scripts/simulators/snmp-agent';
import { networkNamespacesAvailable, runInNetworkNamespace } from '../../test/support/netns';
import { fingerprintDevice } from '../fingerprint';
import type { DiscoveryObservation } from '../observation';
import type { ScanReport } from '../scanner';
import { parseScanScope, type ScanScope } from '../scope';
import { readIAm, scanBacnet, whoIsFrame } from './bacnet-whois';
import { testDeviceNetworks } from '../../test/support/device-networks';

let port: number;
const devices: SimulatedBacnetDevice[] = [];

function loopbackScope(ranges: string[]): ScanScope {
  const parsed = parseScanScope({ interfaces: ['lo'], ranges, allowLoopback: true });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.scope;
}

beforeAll(async () => {
  port = await freeUdpPort('127.79.0.2');
  const common = { password: 'device-pass', port };
  devices.push(
    await startBacnetDevice({ ...common, host: '127.79.0.2', instance: 1201, serialNumber: 'JC-0001', vendorName: 'Johnson Controls', vendorIdentifier: 5, modelName: 'FX-PCG', firmwareRevision: '7.1.4' }),
    await startBacnetDevice({ ...common, host: '127.79.0.3', instance: 88, serialNumber: 'SBS-88', scCapable: true }),
    await startBacnetDevice({ ...common, host: '127.79.0.5', instance: 500, serialNumber: 'SILENT', faults: { silent: true } }),
    await startBacnetDevice({ ...common, host: '127.79.0.6', instance: 600, serialNumber: 'BROKEN', faults: { malformedReplies: 'not-bacnet' } }),
  );
}, 60_000);

afterAll(async () => {
  await Promise.all(devices.map((device) => device.close()));
});

describe('scanBacnet', () => {
  it('finds the devices that answer Who-Is and reads vendor, model, firmware and serial from each', async () => {
    const found = await scanBacnet(loopbackScope(['127.79.0.0/28']), { networks: testDeviceNetworks, timeoutMs: 10_000, port, iAmWindowMs: 500, apduTimeoutMs: 500 });
    const byIp = Object.fromEntries(found.map((o) => [o.ip, o]));
    expect(Object.keys(byIp).sort()).toEqual(['127.79.0.2', '127.79.0.3', '127.79.0.6']);

    expect(byIp['127.79.0.2']).toMatchObject({
      source: 'bacnet',
      manufacturer: 'Johnson Controls',
      model: 'FX-PCG',
      firmwareVersion: '7.1.4',
      serialNumber: 'JC-0001',
      endpoints: [{ protocol: 'bacnet', address: `127.79.0.2:${port}/1201` }],
      evidence: { deviceInstance: 1201, vendorIdentifier: 5, segmentation: 'none', objectName: 'SBS-1201', applicationSoftwareVersion: 'app-2026.1' },
    });
    expect(byIp['127.79.0.3']).toMatchObject({ manufacturer: 'Simulated Building Systems', model: 'SBS-SC-500', serialNumber: 'SBS-88', evidence: { vendorIdentifier: 999 } });

    // It answered Who-Is, so it is there; its identity could not be read, and that is said.
    expect(byIp['127.79.0.6']!.serialNumber).toBeUndefined();
    expect(byIp['127.79.0.6']!.endpoints).toEqual([{ protocol: 'bacnet', address: `127.79.0.6:${port}/600` }]);
    expect(byIp['127.79.0.6']!.evidence.identityReadError).toMatch(/does not speak BACnet\/IP/);
    expect(found.report.problems).toEqual([expect.stringContaining('127.79.0.6')]);

    // 14 addresses in a /28; no Who-Is goes anywhere else.
    expect(found.report.datagramsSent).toBe(14);

    const print = fingerprintDevice([byIp['127.79.0.2']!]);
    expect(print.deviceType.value).toBe('building_controller');
    expect(print.manufacturer).toMatchObject({ value: 'Johnson Controls' });
    expect(print.capabilities.map((c) => c.value)).toEqual(['bacnet']);
  });

  it('keeps only answers from inside the scope', async () => {
    const found = await scanBacnet(loopbackScope(['127.79.0.2/32']), { networks: testDeviceNetworks, timeoutMs: 5_000, port, iAmWindowMs: 300, apduTimeoutMs: 500 });
    expect(found.map((o) => o.ip)).toEqual(['127.79.0.2']);
  });
});

describe('Who-Is and I-Am frames', () => {
  it('builds an 8-octet Who-Is and refuses frames that are not I-Am', () => {
    expect(whoIsFrame(false).toString('hex')).toBe('810a000801001008');
    expect(whoIsFrame(true).toString('hex')).toBe('810b000801001008');
    expect(readIAm(whoIsFrame(true))).toBeUndefined();
    expect(readIAm(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))).toBeUndefined();
  });

  it('reads an I-Am relayed from behind a BACnet router with its source network', () => {
    // BVLC unicast, NPDU with SNET 5 / SLEN 1 / SADR 0x07, I-Am device 260, max APDU 480, no segmentation, vendor 8.
    const frame = Buffer.from('810a0018' + '0108' + '0005' + '01' + '07' + '1000' + 'c402000104' + '2201e0' + '9103' + '2108', 'hex');
    expect(readIAm(frame)).toEqual({ deviceInstance: 260, maxApdu: 480, segmentation: 'none', vendorIdentifier: 8, routedFrom: { network: 5, address: '07' } });
  });
});

describe.runIf(networkNamespacesAvailable())('scanBacnet by broadcast', () => {
  it('finds a controller on another host by a broadcast Who-Is out of the scope interface alone', async () => {
    const device = { instance: 4711, serialNumber: 'DC-4711', vendorName: 'Delta Controls', vendorIdentifier: 8, modelName: 'eBCON' };
    const result = await runInNetworkNamespace<{ observations: DiscoveryObservation[]; report: ScanReport }>('test/fixtures/discovery/bacnet-broadcast-host.ts', {
      input: { device },
      timeoutMs: 45_000,
    });
    expect(result.report).toMatchObject({ interfacesScanned: [{ name: 'bacscan0', address: '10.89.0.1' }], datagramsSent: 1, problems: [] });
    expect(result.observations).toEqual([
      expect.objectContaining({
        source: 'bacnet',
        ip: '10.89.0.20',
        endpoints: [{ protocol: 'bacnet', address: '10.89.0.20:47808/4711' }],
        manufacturer: 'Delta Controls',
        model: 'eBCON',
        serialNumber: 'DC-4711',
        evidence: expect.objectContaining({ deviceInstance: 4711, vendorIdentifier: 8 }),
      }),
    ]);
  });
});
