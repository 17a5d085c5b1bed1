/**
 * SSDP description limits, on loopback only: the scanner searches the simulated device by unicast
 * (`target`), so no multicast leaves this process's host and no namespace is needed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceNetworks } from '../../adapters/device-networks';
import { startSsdpDevice, type RunningSsdpDevice } from '../../scripts/simulators/ssdp-device';
import { scanScopeSchema } from '../scope';
import { maxDescriptionBytes, scanSsdp } from './ssdp';
import { testDeviceNetworks } from '../../test/support/device-networks';

const loopbackScope = scanScopeSchema.parse({ interfaces: ['lo'], ranges: ['127.0.0.0/24'], allowLoopback: true });
const devices: RunningSsdpDevice[] = [];

async function device(descriptionOverride?: string) {
  const running = await startSsdpDevice({
    address: '127.0.0.1',
    port: 0,
    joinGroup: false,
    manufacturer: 'Simulated Access',
    modelName: 'SA-DOOR-2',
    serialNumber: 'LOOP-1',
    maxDelayMs: 20,
    ...(descriptionOverride !== undefined ? { descriptionOverride } : {}),
  });
  devices.push(running);
  return running;
}

afterEach(async () => {
  await Promise.all(devices.splice(0).map((running) => running.close()));
});

describe('SSDP scanner description fetches', () => {
  it('reads a description found by a unicast search on loopback when the scope allows loopback', async () => {
    const running = await device();
    const outcome = await scanSsdp(loopbackScope, { networks: testDeviceNetworks, timeoutMs: 600, target: { host: '127.0.0.1', port: running.port } });
    expect(outcome).toHaveLength(1);
    expect(outcome[0]).toMatchObject({ ip: '127.0.0.1', manufacturer: 'Simulated Access', serialNumber: 'LOOP-1' });
    expect(outcome.report.malformedPackets).toBe(0);
  });

  it('stops reading a description larger than the limit and keeps the device with the reason', async () => {
    const running = await device(`<?xml version="1.0"?><root><device><manufacturer>${'x'.repeat(maxDescriptionBytes)}</manufacturer></device></root>`);
    const outcome = await scanSsdp(loopbackScope, { networks: testDeviceNetworks, timeoutMs: 600, target: { host: '127.0.0.1', port: running.port } });
    expect(outcome).toHaveLength(1);
    expect(outcome[0]!.manufacturer).toBeUndefined();
    expect(outcome[0]!.evidence.descriptionError).toMatch(/exceeds 65536/);
    expect(outcome.report.problems.join('\n')).toMatch(/exceeds 65536/);
  });

  it("never fetches a LOCATION outside the device networks, even one inside the scope: in production, not one on the service's own host", async () => {
    const running = await device();
    const production = DeviceNetworks.of(['10.0.0.0/8'], { loopback: false });
    const outcome = await scanSsdp(loopbackScope, { networks: production, timeoutMs: 600, target: { host: '127.0.0.1', port: running.port } });
    expect(outcome).toHaveLength(1);
    expect(outcome[0]!.manufacturer).toBeUndefined();
    expect(outcome[0]!.evidence.descriptionError).toBe('LOCATION is outside the device networks this installation allows; not fetched');
    expect(outcome.report.problems.join('\n')).toContain(running.location);
  });

  it('counts a description that is not UPnP XML as malformed, not as a failure of the scan', async () => {
    const running = await device('<html><body>Please log in</body></html>');
    const outcome = await scanSsdp(loopbackScope, { networks: testDeviceNetworks, timeoutMs: 600, target: { host: '127.0.0.1', port: running.port } });
    expect(outcome).toHaveLength(1);
    expect(outcome.report.malformedPackets).toBe(1);
    expect(outcome[0]!.evidence.descriptionError).toMatch(/not a UPnP device description/);
  });
});
