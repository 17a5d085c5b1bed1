import dgram from 'node:dgram';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyViolationError } from '../foundation/errors';
import { deviceAdapters } from './index';
import { DeviceNetworks } from './device-networks';

const production = DeviceNetworks.of(['10.20.0.0/24', '2001:db8:20::/48'], { loopback: false });
const development = DeviceNetworks.of(['10.20.0.0/24'], { loopback: true });

describe('DeviceNetworks', () => {
  it('allows addresses inside its networks only, IPv4 and IPv6, an IPv4-mapped address as the address it maps', () => {
    expect(['10.20.0.1', '10.20.0.255', '2001:db8:20::7', '2001:DB8:20:ffff::1', '::ffff:10.20.0.9'].filter((a) => !production.allows(a))).toEqual([]);
    expect(
      ['10.20.1.1', '127.0.0.1', '::1', '169.254.169.254', '::ffff:127.0.0.1', '2001:db8:21::1', 'fe80::1', 'not-an-address'].filter((a) => production.allows(a)),
    ).toEqual([]);
  });

  it('reaches loopback only in development, and refuses loopback among the networks of a production installation', () => {
    expect(development.allows('127.0.0.1')).toBe(true);
    expect(development.allows('::1')).toBe(true);
    expect(production.allows('127.0.0.1')).toBe(false);
    expect(() => DeviceNetworks.of(['127.0.0.0/8'], { loopback: false })).toThrow(/"127.0.0.0\/8" includes loopback/);
    expect(() => DeviceNetworks.of(['0.0.0.0/0'], { loopback: false })).toThrow(/loopback/);
    expect(() => DeviceNetworks.of(['::/0'], { loopback: false })).toThrow(/loopback/);
    expect(() => DeviceNetworks.of(['10.20.0.0/33'], { loopback: false })).toThrow(/"10.20.0.0\/33"/);
    expect(() => DeviceNetworks.of(['cameras.example'], { loopback: false })).toThrow(/is not an IPv4 or IPv6 CIDR/);
    expect(DeviceNetworks.of([], { loopback: false }).allows('10.20.0.1')).toBe(false);
  });

  it("never reaches this host's own interface addresses in production, even inside the device networks", () => {
    const own = Object.values(networkInterfaces())
      .flat()
      .find((entry) => entry && !entry.internal && entry.family === 'IPv4');
    const ownNetwork = own ? DeviceNetworks.of([own.cidr!], { loopback: false }) : undefined;
    if (own && ownNetwork) {
      expect(ownNetwork.allows(own.address)).toBe(false);
      expect(DeviceNetworks.of([own.cidr!], { loopback: true }).allows(own.address)).toBe(true);
    }
    expect(() => DeviceNetworks.of(['0.0.0.0/8'], { loopback: false })).toThrow(/unspecified/);
    expect(() => DeviceNetworks.of(['::/128'], { loopback: false })).toThrow(/unspecified/);
  });

  it('tells whether a range lies inside one allowed network', () => {
    expect(production.containsNetwork('10.20.0.128/25')).toBe(true);
    expect(production.containsNetwork('10.20.0.0/23')).toBe(false);
    expect(production.containsNetwork('169.254.169.254/32')).toBe(false);
  });

  it('resolves a name and refuses it when an address it stands for lies outside, never retried', async () => {
    const refused = await production.resolve('localhost').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PolicyViolationError);
    expect((refused as PolicyViolationError).retryable).toBe(false);
    expect((refused as Error).message).toMatch(/^localhost \((127\.0\.0\.1|::1)\) is outside the device networks this installation allows \(10\.20\.0\.0\/24, 2001:db8:20::\/48\)$/);
    expect(['127.0.0.1', '::1']).toContain(await development.resolve('localhost'));
    expect(await production.resolve('10.20.0.7')).toBe('10.20.0.7');
    expect(await production.resolve('[2001:db8:20::7]')).toBe('2001:db8:20::7');
  });
});

describe('every device adapter on an IP network', () => {
  let tcp: net.Server;
  let udp: dgram.Socket;
  let connections = 0;
  let datagrams = 0;

  beforeAll(async () => {
    tcp = net.createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    udp = dgram.createSocket('udp4').on('message', () => (datagrams += 1));
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
    await new Promise<void>((resolve) => udp.close(() => resolve()));
  });

  it("refuses, where the connection is made, an address outside the device networks, sending nothing even where something answers on the service's host", async () => {
    const adapters = deviceAdapters(production);
    const tcpPort = (tcp.address() as net.AddressInfo).port;
    const udpPort = udp.address().port;
    const addresses: Record<string, string> = {
      https: `127.0.0.1:${tcpPort}`,
      onvif: `127.0.0.1:${tcpPort}`,
      snmp: `127.0.0.1:${udpPort}`,
      bacnet: `127.0.0.1:${udpPort}/1`,
    };
    // Every protocol but the serial bus's is here, so a new one cannot slip past this test.
    expect([...adapters.keys()].filter((protocol) => protocol !== 'osdp').sort()).toEqual(Object.keys(addresses).sort());
    for (const [protocol, address] of Object.entries(addresses)) {
      const refused = await adapters.get(protocol)!.identify({ address, credentials: { username: 'admin', password: 'factory' } }).catch((error: unknown) => error);
      expect(refused, protocol).toBeInstanceOf(PolicyViolationError);
      expect((refused as Error).message, protocol).toContain('outside the device networks');
    }
    expect({ connections, datagrams }).toEqual({ connections: 0, datagrams: 0 });
  });
});
