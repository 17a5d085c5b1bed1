/**
 * Zero-touch provisioning end to end on a network the test builds (network namespaces, a veth
 * link): the service and the site's real dnsmasq on one side, a camera that joins with DHCP on the
 * other. The pre-registered camera is provisioned with no call after its registration; a camera
 * behind the registered MAC with another serial is not.
 */
import { describe, expect, it } from 'vitest';
import { networkNamespacesAvailable, runInNetworkNamespace } from '../support/netns';
import type { ZeroTouchSiteInput, ZeroTouchSiteResult } from '../fixtures/zero-touch-site';

const site = (input: ZeroTouchSiteInput) =>
  runInNetworkNamespace<ZeroTouchSiteResult>('test/fixtures/zero-touch-site.ts', { input, timeoutMs: 150_000 });

describe.skipIf(!networkNamespacesAvailable())('zero-touch provisioning on a site network', () => {
  it('provisions a pre-registered camera once it takes a DHCP lease, with no further call, and it then serves the issued certificate', async () => {
    const result = await site({ serialNumber: 'ZTN-CAM-1', macAddress: '02:5a:00:00:00:01' });

    expect(result.cameraError, result.dnsmasqLog).toBeUndefined();
    expect(result.lease?.address).toMatch(/^10\.89\.0\.\d+$/);
    expect(result.registration.sightings[0]).toMatchObject({ via: 'dhcp', ip: result.lease!.address, macAddress: '02:5a:00:00:00:01' });
    expect(result.registration.state).toBe('provisioned');
    expect(result.provisioning).toMatchObject({ status: 'completed', provisioningMethod: 'automatic' });
    expect(result.presentedFingerprint).toBe(result.provisioning!.certificateFingerprint);
  }, 160_000);

  it('does not provision a camera that takes a lease with the registered MAC but reports another serial', async () => {
    const result = await site({ serialNumber: 'ZTN-CAM-2', macAddress: '02:5a:00:00:00:02', cameraSerialNumber: 'ZTN-IMPOSTOR' });

    expect(result.cameraError, result.dnsmasqLog).toBeUndefined();
    expect(result.registration.state).toBe('waiting');
    expect(result.registration.mismatches[0]?.reason).toContain('ZTN-IMPOSTOR');
    expect(result.provisioning).toBeUndefined();
    expect(result.presentedFingerprint).toBeUndefined();
  }, 160_000);
});
