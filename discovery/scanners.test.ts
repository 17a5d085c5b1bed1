/**
 * The multicast scanners against simulated devices on a real link, inside network namespaces this
 * test creates (see fixtures/scan-site.ts for the topology): nothing leaves the namespaces.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { networkNamespacesAvailable, runInNetworkNamespace } from '../test/support/netns';
import type { ScanSiteInput, ScanSiteResult } from '../test/fixtures/discovery/scan-site';

const scanWindowMs = 1500;
const abortAfterMs = 400;

describe.runIf(networkNamespacesAvailable())('discovery scanners on a namespaced site network', () => {
  let site: ScanSiteResult;

  beforeAll(async () => {
    site = await runInNetworkNamespace<ScanSiteResult>('test/fixtures/discovery/scan-site.ts', {
      // 10.77.1.200 (a second UPnP device's LOCATION) is deliberately outside the /25.
      input: { scope: { interfaces: ['lan0'], ranges: ['10.77.1.0/25'] }, timeoutMs: scanWindowMs, abortAfterMs } satisfies ScanSiteInput,
      timeoutMs: 60_000,
    });
  }, 90_000);

  it('finds the ONVIF camera by WS-Discovery with its device service address, hardware and scopes', () => {
    const { observations } = site.results['ws-discovery'];
    expect(observations).toHaveLength(1);
    const [camera] = observations;
    expect(camera).toMatchObject({
      source: 'ws-discovery',
      ip: '10.77.1.2',
      model: 'SO-CAM-4K',
      endpoints: [{ protocol: 'onvif', address: site.camera.onvif.address }],
      evidence: {
        endpointReference: site.camera.onvif.endpointReference,
        types: ['dn:NetworkVideoTransmitter', 'tds:Device'],
        name: 'Lobby Camera',
        location: 'building-a/lobby',
        hardware: 'SO-CAM-4K',
        xaddrs: [`http://${site.camera.onvif.address}/onvif/device_service`],
        interface: 'lan0',
      },
    });
    expect(Number.isNaN(Date.parse(camera!.observedAt))).toBe(false);
  });

  it('finds mDNS-advertised devices with host name, service endpoints and TXT facts, asking for records a terse responder left out', () => {
    const { observations, report } = site.results.mdns;
    const byHost = Object.fromEntries(observations.map((observation) => [observation.hostname, observation]));
    expect(Object.keys(byHost).sort()).toEqual(['axis-lan', 'door-lan']);
    expect(byHost['axis-lan']).toMatchObject({
      source: 'mdns',
      ip: '10.77.1.2',
      macAddress: '00:40:8c:12:ab:34',
      manufacturer: 'Axis Communications',
      model: 'M3045-V',
      serialNumber: 'LAN-MDNS-1',
      firmwareVersion: '10.12.114',
    });
    expect(byHost['axis-lan']!.endpoints).toEqual(
      expect.arrayContaining([
        { protocol: 'axis-video', address: '10.77.1.2:80' },
        { protocol: 'https', address: '10.77.1.2:443' },
      ]),
    );
    // The terse responder answered PTR only: port, TXT and address came from follow-up questions.
    expect(byHost['door-lan']).toMatchObject({
      ip: '10.77.1.2',
      manufacturer: 'Simulated Access',
      serialNumber: 'LAN-MDNS-2',
      endpoints: [{ protocol: 'http', address: '10.77.1.2:8080' }],
    });
    expect(report.datagramsSent).toBeGreaterThan(1);
    const asked = site.cameraNetworkHeard.mdns.filter((datagram) => datagram.from.address === '10.77.1.1').flatMap((datagram) => datagram.questions ?? []);
    expect(asked).toEqual(
      expect.arrayContaining([
        { name: '_services._dns-sd._udp.local', type: 12 },
        { name: 'Door LAN._http._tcp.local', type: 33 },
        { name: 'Door LAN._http._tcp.local', type: 16 },
        { name: 'door-lan.local', type: 1 },
      ]),
    );
  });

  it('finds the UPnP device by SSDP and reads manufacturer, model, serial number and UDN from its description', () => {
    const found = site.results.ssdp.observations.find((observation) => observation.evidence.location === site.camera.ssdp.location);
    expect(found).toMatchObject({
      source: 'ssdp',
      ip: '10.77.1.2',
      manufacturer: 'Simulated Access',
      model: 'SA-DOOR-2',
      serialNumber: 'LAN-SSDP-1',
      endpoints: [
        { protocol: 'upnp', address: site.camera.ssdp.location },
        { protocol: 'http', address: new URL(site.camera.ssdp.location).host },
      ],
      evidence: { description: { udn: site.camera.ssdp.udn, modelNumber: '2.0', presentationUrl: '/index.html' } },
    });
    expect(found!.evidence.usns).toContain(`${site.camera.ssdp.udn}::upnp:rootdevice`);
    expect(site.cameraNetworkHeard.ssdpDescriptionFetches).toBe(1);
  });

  it('never fetches a LOCATION whose host is outside the scan scope, though the answer came from inside it', () => {
    const outside = site.results.ssdp.observations.find((observation) => observation.evidence.location === site.camera.secondSsdp!.location);
    expect(outside).toBeDefined();
    expect(outside!.manufacturer).toBeUndefined();
    expect(outside!.evidence.descriptionError).toMatch(/outside the scan scope/);
    expect(site.cameraNetworkHeard.secondSsdpDescriptionFetches).toBe(0);
  });

  it('counts malformed answers from a broken peer in each report and still returns the real devices', () => {
    for (const source of ['ws-discovery', 'mdns', 'ssdp'] as const) {
      const { report, observations } = site.results[source];
      expect(report.malformedPackets, source).toBeGreaterThanOrEqual(2);
      expect(observations.length, source).toBeGreaterThan(0);
    }
    expect(site.cameraNetworkHeard.brokenPeerHeard.map((heard) => heard.port).sort()).toEqual(expect.arrayContaining([1900, 3702, 5353]));
  });

  it('stays within its window', () => {
    for (const source of ['ws-discovery', 'mdns', 'ssdp'] as const) {
      expect(site.results[source].elapsedMs, source).toBeLessThan(scanWindowMs + 1000);
    }
  });

  it('returns what it has as soon as the signal aborts, and without ranges keeps answers from the interface network', () => {
    const { elapsedMs, observations } = site.abortedWsDiscovery;
    expect(elapsedMs).toBeLessThan(abortAfterMs + 600);
    expect(observations.map((observation) => observation.evidence.endpointReference)).toEqual([site.camera.onvif.endpointReference]);
  });

  it('sends only out of the configured interface, even when the multicast route points elsewhere', () => {
    for (const source of ['ws-discovery', 'mdns', 'ssdp'] as const) {
      expect(site.results[source].report.interfacesScanned, source).toEqual([{ name: 'lan0', address: '10.77.1.1' }]);
      expect(site.results[source].report.outOfScopeAnswers, source).toBe(0);
    }
    // The other network heard only the control datagram sent by the routing table, and its devices were not found.
    const other = site.otherNetworkHeard;
    expect(other.onvifProbesSeen).toBe(1);
    expect(other.ssdp).toEqual([]);
    expect(other.mdns.filter((datagram) => datagram.from.address !== '10.77.2.2')).toEqual([]);
    expect(other.brokenPeerHeard).toEqual([]);
    const all = Object.values(site.results).flatMap((result) => result.observations);
    expect(all.filter((observation) => observation.ip?.startsWith('10.77.2.'))).toEqual([]);
    // And the camera network heard the scanners, from lan0's address, on each protocol's group port.
    // Two WS-Discovery scans, each sending its two Probes (tds:Device, NVT) twice (SOAP-over-UDP repetition).
    expect(site.cameraNetworkHeard.onvifProbesSeen).toBe(8);
    expect(site.cameraNetworkHeard.ssdp.every((search) => search.from.address === '10.77.1.1')).toBe(true);
    expect(site.cameraNetworkHeard.ssdp.map((search) => /^ST: (.*)$/m.exec(search.text)?.[1]?.trim()).sort()).toEqual(['ssdp:all', 'upnp:rootdevice']);
    expect(site.cameraNetworkHeard.ssdp[0]!.text).toMatch(/^HOST: 239\.255\.255\.250:1900\r$/m);
  });
});
