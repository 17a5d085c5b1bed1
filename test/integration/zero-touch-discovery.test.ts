/**
 * Discovery feeding zero-touch provisioning, end to end on a network the test builds (network
 * namespaces, a veth link): cameras and mDNS advertisers stand at their own addresses on a site
 * network; the test pre-registers some of them and configures the site's discovery, then calls
 * nothing else. One camera is seen by WS-Discovery and mDNS, merged into one device and provisioned;
 * an impostor behind a registered MAC, a stranger and an address claimed by two MACs are not.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { alertKinds } from '../../alerts/alert-store';
import type { DiscoverySiteInput, DiscoverySiteResult } from '../fixtures/discovery-site';
import { networkNamespacesAvailable, runInNetworkNamespace } from '../support/netns';

const credentials = { username: 'root', password: 'factory-Passw0rd' };
const mac = (last: number) => `02:5b:00:00:00:0${last}`;

const input: DiscoverySiteInput = {
  devices: {
    cameras: [
      // Registered: seen by WS-Discovery here and by mDNS below, under one MAC.
      { address: '10.91.0.10', serialNumber: 'ZTD-CAM-1', macAddress: mac(1), credentials },
      // Behind a registered MAC, but reports another serial when asked.
      { address: '10.91.0.11', serialNumber: 'ZTD-IMPOSTOR', macAddress: mac(2), credentials },
      // Nobody expects it.
      { address: '10.91.0.12', serialNumber: 'ZTD-STRANGER', macAddress: mac(3), credentials },
      // Registered, but its address is also claimed by another MAC (the advertiser below).
      { address: '10.91.0.13', serialNumber: 'ZTD-CAM-4', macAddress: mac(4), credentials },
    ],
    advertisers: [
      { address: '10.91.0.10', hostname: 'axis-ztd-cam-1', serialNumber: 'ZTD-CAM-1', macAddress: mac(1), model: 'Q1656' },
      { address: '10.91.0.13', hostname: 'axis-squatter', serialNumber: 'ZTD-SQUAT', macAddress: mac(5), model: 'M3045-V' },
    ],
  },
  registrations: [
    { serialNumber: 'ZTD-CAM-1', macAddress: mac(1) },
    { serialNumber: 'ZTD-CAM-2', macAddress: mac(2) },
    { serialNumber: 'ZTD-CAM-4', macAddress: mac(4) },
  ],
  expectProvisioned: ['ZTD-CAM-1'],
  expectMismatched: ['ZTD-CAM-2'],
};

describe.skipIf(!networkNamespacesAvailable())('zero-touch provisioning from discovery on a site network', () => {
  let site: DiscoverySiteResult;

  beforeAll(async () => {
    site = await runInNetworkNamespace<DiscoverySiteResult>('test/fixtures/discovery-site.ts', { input, timeoutMs: 170_000 });
    expect(site.peerError).toBeUndefined();
  }, 180_000);

  const deviceAt = (ip: string, macAddress: string) => site.devices.find((device) => device.ip === ip && device.macAddress === macAddress);

  it('merges a camera seen by WS-Discovery and mDNS into one device and provisions its registration with no further call', () => {
    const camera = deviceAt('10.91.0.10', mac(1));
    expect(camera).toMatchObject({ identityKey: `mac:${mac(1)}`, serialNumber: 'ZTD-CAM-1', inConflict: false, zeroTouchRegistrationId: expect.any(String) });
    expect([...camera!.sources].sort()).toEqual(['mdns', 'ws-discovery']);
    expect(site.devices.filter((device) => device.macAddress === mac(1))).toHaveLength(1);

    const registration = site.registrations['ZTD-CAM-1']!;
    expect(registration.state).toBe('provisioned');
    expect(registration.sightings[0]).toMatchObject({ via: 'discovery', ip: '10.91.0.10', macAddress: mac(1) });
    expect(site.provisioned['ZTD-CAM-1']).toMatchObject({ status: 'completed', provisioningMethod: 'automatic' });
    expect(site.provisioned['ZTD-CAM-1']!.presentedFingerprint).toBe(site.provisioned['ZTD-CAM-1']!.certificateFingerprint);
  });

  it('does not provision a device behind a registered MAC that reports another serial, and records the mismatch', () => {
    const registration = site.registrations['ZTD-CAM-2']!;
    expect(registration.state).toBe('waiting');
    expect(registration.mismatches[0]).toMatchObject({ via: 'discovery', reason: expect.stringContaining('ZTD-IMPOSTOR') });
    // The provisioning run stopped at identification; no run completed for it.
    expect(site.provisioned['ZTD-CAM-2']).toBeUndefined();
  });

  it('raises an unauthorized-device alert for the camera nobody registered, and for no registered one', () => {
    const unauthorized = site.alerts.filter((alert) => alert.kind === alertKinds.deviceUnauthorized).map((alert) => alert.fingerprint);
    expect(unauthorized).toContain(`device.unauthorized:mac:${mac(3)}`);
    expect(unauthorized).not.toContain(`device.unauthorized:mac:${mac(1)}`);
    expect(unauthorized).not.toContain(`device.unauthorized:mac:${mac(2)}`);
  });

  it('records an address claimed by two MACs as a conflict, merges neither claim, and does not offer the registered one to zero-touch', () => {
    const conflict = site.events.find((event) => event.kind === 'ip-claimed-by-several-macs');
    expect(conflict).toMatchObject({ subject: '10.91.0.13', details: expect.objectContaining({ macAddresses: [mac(4), mac(5)] }) });
    expect(deviceAt('10.91.0.13', mac(4))).toMatchObject({ inConflict: true });
    expect(deviceAt('10.91.0.13', mac(5))).toMatchObject({ inConflict: true });
    expect(site.alerts.map((alert) => alert.kind)).toContain(alertKinds.discoveryConflict);

    const registration = site.registrations['ZTD-CAM-4']!;
    expect(registration.state).toBe('waiting');
    expect(registration.sightings).toEqual([]);
  });
});
