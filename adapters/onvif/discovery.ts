/**
 * WS-Discovery Probe (SOAP 1.2 over UDP) for ONVIF devices. Real networks probe the multicast group
 * 239.255.255.250:3702; a probe can also go to one address, which is how tests reach a simulated
 * device on loopback and how an operator checks a single camera.
 */
import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { el, firstText, isObject, listOf, readSoapEnvelope, soapEnvelope, textOf, withAttributes } from './soap';

export const wsDiscoveryMulticast = { host: '239.255.255.250', port: 3702 } as const;

const probeAction = 'http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe';
const discoveryTo = 'urn:schemas-xmlsoap-org:ws:2005:04:discovery';

export interface ProbeMatch {
  /** The device's stable endpoint reference, usually `urn:uuid:...`. */
  endpointReference: string;
  types: string[];
  scopes: string[];
  /** Device service URLs. */
  xaddrs: string[];
  /** Where the answer came from. */
  from: { address: string; port: number };
}

export interface ProbeOptions {
  target?: { host: string; port: number };
  /** Local address to send from (e.g. a loopback address in tests). */
  localAddress?: string;
  /** How long to collect answers. */
  waitMs?: number;
}

export function probeMessage(messageId: string): string {
  return soapEnvelope(el('wsd:Probe', el('wsd:Types', 'dn:NetworkVideoTransmitter tds:Device')), [
    withAttributes(el('wsa:Action', probeAction), { 'soap:mustUnderstand': 'true' }),
    el('wsa:MessageID', messageId),
    el('wsa:ReplyTo', el('wsa:Address', 'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous')),
    withAttributes(el('wsa:To', discoveryTo), { 'soap:mustUnderstand': 'true' }),
  ]);
}

/** Sends one Probe and collects the ProbeMatches answering it (by RelatesTo) until `waitMs` passes. */
export async function probeOnvifDevices(options: ProbeOptions = {}): Promise<ProbeMatch[]> {
  const target = options.target ?? wsDiscoveryMulticast;
  const messageId = `urn:uuid:${randomUUID()}`;
  const socket = dgram.createSocket(isIPv6(target.host) ? 'udp6' : 'udp4');
  const matches = new Map<string, ProbeMatch>();
  socket.on('message', (data, remote) => {
    let parsed;
    try {
      parsed = readSoapEnvelope(data.toString('utf8'));
    } catch {
      return; // Not every datagram on a discovery port is for us.
    }
    if (textOf(parsed.header.RelatesTo) !== messageId) return;
    const probeMatches = isObject(parsed.body.ProbeMatches) ? parsed.body.ProbeMatches : {};
    for (const match of listOf(probeMatches.ProbeMatch).filter(isObject)) {
      const reference = isObject(match.EndpointReference) ? textOf(match.EndpointReference.Address) : undefined;
      if (!reference) continue;
      const words = (name: string) => (firstText(match[name]) ?? '').split(/\s+/).filter(Boolean);
      matches.set(reference, {
        endpointReference: reference,
        types: words('Types'),
        scopes: words('Scopes'),
        xaddrs: words('XAddrs'),
        from: { address: remote.address, port: remote.port },
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: options.localAddress, port: 0 }, () => resolve());
  });
  try {
    const message = Buffer.from(probeMessage(messageId), 'utf8');
    await new Promise<void>((resolve, reject) => socket.send(message, target.port, target.host, (error) => (error ? reject(error) : resolve())));
    await new Promise((resolve) => setTimeout(resolve, options.waitMs ?? 1000));
  } finally {
    socket.close();
  }
  return [...matches.values()];
}

