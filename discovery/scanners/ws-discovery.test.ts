/**
 * WS-Discovery scope rules on loopback only: the scanner probes the simulated camera's responder
 * by unicast (`target`), so nothing is multicast outside a namespace.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import { scanScopeSchema } from '../scope';
import { scanWsDiscovery } from './ws-discovery';
import { testDeviceNetworks } from '../../test/support/device-networks';

const cameras: RunningOnvifDevice[] = [];

afterEach(async () => {
  await Promise.all(cameras.splice(0).map((camera) => camera.close()));
});

/** A camera whose responder answers from 127.0.0.1 while its device service is on 127.0.0.2. */
async function camera() {
  const running = await startOnvifDevice({
    host: '127.0.0.2',
    serialNumber: 'LOOP-CAM-1',
    macAddress: '00:11:22:33:44:66',
    credentials: { username: 'admin', password: 'factory-admin' },
    discovery: { host: '127.0.0.1', port: 0 },
  });
  cameras.push(running);
  return running;
}

describe('WS-Discovery scanner scope', () => {
  it('offers the device service as an endpoint when its XAddr host is inside the scope', async () => {
    const running = await camera();
    const scope = scanScopeSchema.parse({ interfaces: ['lo'], ranges: ['127.0.0.0/30'], allowLoopback: true });
    const outcome = await scanWsDiscovery(scope, { networks: testDeviceNetworks, timeoutMs: 500, target: { host: '127.0.0.1', port: running.discoveryPort! } });
    expect(outcome).toHaveLength(1);
    expect(outcome[0]!.endpoints).toEqual([{ protocol: 'onvif', address: running.address }]);
  });

  it('keeps an XAddr outside the scope as evidence only, never as an endpoint', async () => {
    const running = await camera();
    const scope = scanScopeSchema.parse({ interfaces: ['lo'], ranges: ['127.0.0.1/32'], allowLoopback: true });
    const outcome = await scanWsDiscovery(scope, { networks: testDeviceNetworks, timeoutMs: 500, target: { host: '127.0.0.1', port: running.discoveryPort! } });
    expect(outcome).toHaveLength(1);
    expect(outcome[0]!.endpoints).toEqual([]);
    expect(outcome[0]!.evidence.xaddrs).toEqual([`http://${running.address}/onvif/device_service`]);
  });

  it('ignores answers from outside the scope and counts them', async () => {
    const running = await camera();
    const scope = scanScopeSchema.parse({ interfaces: ['lo'], ranges: ['127.0.0.2/32'], allowLoopback: true });
    const outcome = await scanWsDiscovery(scope, { networks: testDeviceNetworks, timeoutMs: 500, target: { host: '127.0.0.1', port: running.discoveryPort! } });
    expect(outcome).toHaveLength(0);
    expect(outcome.report.outOfScopeAnswers).toBeGreaterThan(0);
  });
});
