/**
 * A UPnP root device as SSDP sees it (UPnP Device Architecture 1.1): it joins 239.255.255.250 on
 * one interface, answers M-SEARCH requests whose ST it matches with a unicast response after a
 * random delay within MX, and serves its description document over HTTP at LOCATION.
 * Every datagram received is recorded, so tests can see what a scanner sent.
 */
import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const ssdpGroup = '239.255.255.250';
const ssdpPort = 1900;
const descriptionPath = '/upnp/description.xml';
const maxAge = 1800;

export interface SsdpDeviceOptions {
  /** Address of the interface to join the group on and serve the description from. */
  address: string;
  deviceType?: string;
  friendlyName?: string;
  manufacturer: string;
  modelName: string;
  modelNumber?: string;
  serialNumber: string;
  /** `uuid:...`; derived at random when absent. */
  udn?: string;
  /** Relative or absolute; omitted from the description when absent. */
  presentationUrl?: string;
  /** SSDP port; 1900 unless a test on loopback needs another. */
  port?: number;
  httpPort?: number;
  group?: string;
  /** Longest answer delay, below MX, to keep tests quick. */
  maxDelayMs?: number;
  /** Serve this instead of the description document (tests of broken devices). */
  descriptionOverride?: string;
  /**
   * Join the multicast group; false for loopback tests that search by unicast, where no multicast
   * may be used outside a test's own network namespace.
   */
  joinGroup?: boolean;
}

export interface ReceivedSearch {
  from: { address: string; port: number };
  text: string;
}

export interface RunningSsdpDevice {
  location: string;
  /** The SSDP port it listens on. */
  port: number;
  udn: string;
  received: ReceivedSearch[];
  /** How many times the description was fetched. */
  descriptionFetches(): number;
  close(): Promise<void>;
}

function escapeXml(value: string): string {
  return value.replace(/[<>&'"]/g, (character) => `&#${character.charCodeAt(0)};`);
}

export async function startSsdpDevice(options: SsdpDeviceOptions): Promise<RunningSsdpDevice> {
  const group = options.group ?? ssdpGroup;
  const deviceType = options.deviceType ?? 'urn:schemas-upnp-org:device:Basic:1';
  const udn = options.udn ?? `uuid:${randomUUID()}`;
  const received: ReceivedSearch[] = [];
  let fetches = 0;

  const fields: [string, string | undefined][] = [
    ['deviceType', deviceType],
    ['friendlyName', options.friendlyName ?? `${options.manufacturer} ${options.modelName}`],
    ['manufacturer', options.manufacturer],
    ['modelName', options.modelName],
    ['modelNumber', options.modelNumber],
    ['serialNumber', options.serialNumber],
    ['UDN', udn],
    ['presentationURL', options.presentationUrl],
  ];
  const description =
    options.descriptionOverride ??
    [
      '<?xml version="1.0"?>',
      '<root xmlns="urn:schemas-upnp-org:device-1-0">',
      '<specVersion><major>1</major><minor>1</minor></specVersion>',
      '<device>',
      ...fields.filter(([, value]) => value !== undefined).map(([name, value]) => `<${name}>${escapeXml(value!)}</${name}>`),
      '</device>',
      '</root>',
    ].join('\n');

  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && request.url === descriptionPath) {
      fetches += 1;
      response.writeHead(200, { 'content-type': 'text/xml; charset="utf-8"' });
      response.end(description);
      return;
    }
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(options.httpPort ?? 0, options.address, () => resolve()));
  const location = `http://${options.address}:${(server.address() as AddressInfo).port}${descriptionPath}`;

  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    // Wildcard bind: Linux delivers no multicast to a socket bound to a unicast address.
    socket.bind({ port: options.port ?? ssdpPort }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  if (options.joinGroup ?? true) socket.addMembership(group, options.address);
  const port = socket.address().port;

  /** The (ST, USN) pairs answering a search target (UDA 1.1 §1.3.3). */
  function matches(searchTarget: string): [string, string][] {
    const all: [string, string][] = [
      ['upnp:rootdevice', `${udn}::upnp:rootdevice`],
      [udn, udn],
      [deviceType, `${udn}::${deviceType}`],
    ];
    if (searchTarget === 'ssdp:all') return all;
    return all.filter(([st]) => st === searchTarget);
  }

  const timers = new Set<NodeJS.Timeout>();
  socket.on('message', (data, remote) => {
    const text = data.toString('latin1');
    received.push({ from: { address: remote.address, port: remote.port }, text });
    const [requestLine, ...lines] = text.split('\r\n');
    if (requestLine !== 'M-SEARCH * HTTP/1.1') return;
    const headers = new Map(
      lines.filter((line) => line.includes(':')).map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
    );
    if (headers.get('man') !== '"ssdp:discover"') return;
    const mx = Number(headers.get('mx'));
    if (!Number.isInteger(mx) || mx < 1) return; // A multicast search without a valid MX is ignored.
    for (const [st, usn] of matches(headers.get('st') ?? '')) {
      const response = [
        'HTTP/1.1 200 OK',
        `CACHE-CONTROL: max-age=${maxAge}`,
        `DATE: ${new Date().toUTCString()}`,
        'EXT:',
        `LOCATION: ${location}`,
        'SERVER: Linux/6.1 UPnP/1.1 SimulatedDevice/1.0',
        `ST: ${st}`,
        `USN: ${usn}`,
        'BOOTID.UPNP.ORG: 1',
        '',
        '',
      ].join('\r\n');
      const delay = Math.random() * Math.min(mx * 1000, options.maxDelayMs ?? 200);
      const timer = setTimeout(() => {
        timers.delete(timer);
        socket.send(Buffer.from(response, 'latin1'), remote.port, remote.address);
      }, delay);
      timers.add(timer);
    }
  });

  return {
    location,
    port,
    udn,
    received,
    descriptionFetches: () => fetches,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
