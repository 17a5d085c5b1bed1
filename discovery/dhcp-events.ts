/**
 * DHCP lease events: the DHCP server tells us of devices as they get addresses. The document is
 * what `scripts/dhcp-lease-hook.mjs` posts for dnsmasq (`--dhcp-script`); other servers can post
 * the same shape. Parsing is strict about identity (event, MAC, IP) and forgiving about the
 * client's own facts, which are whatever the device sent and only ever evidence.
 *
 * Evidence kept: vendor class (option 60), host name (12), the parameter request list (55, in the
 * client's order: the order is the fingerprint), client identifier (61) and, when a relay added
 * them, circuit id / remote id / subscriber id (option 82).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { normaliseMacAddress } from '../foundation/mac-address';
import type { DiscoveryObservation } from './observation';

export const dhcpLeaseEventKinds = ['add', 'old', 'del'] as const;
export type DhcpLeaseEventKind = (typeof dhcpLeaseEventKinds)[number];

/** Client-supplied strings are capped: they come from anyone on the VLAN. */
const maxClientText = 255;
/** Option 55 carries at most 255 codes. */
const maxRequestedOptions = 255;

const clientText = z.string().max(maxClientText * 4).transform((value) => value.slice(0, maxClientText));

export const dhcpLeaseEventSchema = z
  .object({
    hookVersion: z.literal(1),
    event: z.enum(dhcpLeaseEventKinds),
    macAddress: z.string().transform((value, context) => {
      const mac = normaliseMacAddress(value);
      if (!mac) context.addIssue({ code: 'custom', message: 'must be a 48-bit MAC address' });
      return mac ?? z.NEVER;
    }),
    ip: z.string().refine((value) => isIPv4(value) || isIPv6(value), 'must be an IPv4 or IPv6 address'),
    observedAt: z.iso.datetime({ offset: true }),
    hostname: clientText.optional(),
    suppliedHostname: clientText.optional(),
    oldHostname: clientText.optional(),
    vendorClass: clientText.optional(),
    userClasses: z.array(clientText).max(16).optional(),
    /** Decimal option codes, comma separated, as dnsmasq gives DNSMASQ_REQUESTED_OPTIONS. */
    requestedOptions: z
      .string()
      .max(maxRequestedOptions * 4)
      .regex(/^\d{1,3}(,\d{1,3})*$/, 'must be comma-separated option numbers')
      .transform((value) => value.split(',').map(Number))
      .refine((codes) => codes.every((code) => code >= 1 && code <= 254), 'option codes are 1 to 254')
      .optional(),
    clientId: clientText.optional(),
    interface: z.string().max(15).optional(),
    circuitId: clientText.optional(),
    remoteId: clientText.optional(),
    subscriberId: clientText.optional(),
    relayAddress: z.string().refine((value) => isIPv4(value) || isIPv6(value), 'must be an IP address').optional(),
    domain: clientText.optional(),
    tags: clientText.optional(),
    leaseExpires: z.string().regex(/^\d+$/).transform(Number).optional(),
    timeRemaining: z.string().regex(/^\d+$/).transform(Number).optional(),
  })
  // Newer hooks may send more; what is not understood is dropped, not refused.
  .strip();

export type DhcpLeaseEventInput = z.input<typeof dhcpLeaseEventSchema>;
export type DhcpLeaseEvent = z.output<typeof dhcpLeaseEventSchema>;

export interface DhcpLeaseFieldError {
  field: string;
  message: string;
}

export type DhcpLeaseParseResult =
  | { ok: true; event: DhcpLeaseEvent; observation: DiscoveryObservation }
  | { ok: false; errors: DhcpLeaseFieldError[] };

/**
 * Validates a posted lease event and makes its observation. A `del` event still yields an
 * observation (the device was there); callers decide what a release means for the registry.
 */
export function parseDhcpLeaseEvent(body: unknown): DhcpLeaseParseResult {
  const parsed = dhcpLeaseEventSchema.safeParse(body);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((issue) => ({ field: issue.path.map(String).join('.'), message: issue.message })) };
  }
  return { ok: true, event: parsed.data, observation: dhcpObservation(parsed.data) };
}

export function dhcpObservation(event: DhcpLeaseEvent): DiscoveryObservation {
  // The name the client asked for is what it calls itself; the server's may be a configured one.
  const hostname = event.suppliedHostname ?? event.hostname;
  const evidence: Record<string, unknown> = { leaseEvent: event.event };
  const facts: [string, unknown][] = [
    ['vendorClass', event.vendorClass],
    ['hostname', event.suppliedHostname ?? event.hostname],
    ['serverHostname', event.hostname],
    ['parameterRequestList', event.requestedOptions],
    ['clientId', event.clientId],
    ['userClasses', event.userClasses],
    ['circuitId', event.circuitId],
    ['remoteId', event.remoteId],
    ['subscriberId', event.subscriberId],
    ['relayAddress', event.relayAddress],
    ['interface', event.interface],
    ['leaseExpires', event.leaseExpires],
  ];
  for (const [key, value] of facts) if (value !== undefined) evidence[key] = value;
  return {
    source: 'dhcp',
    observedAt: new Date(event.observedAt).toISOString(),
    ip: event.ip,
    macAddress: event.macAddress,
    // A lease says nothing about which protocols the device speaks.
    endpoints: [],
    ...(hostname ? { hostname } : {}),
    evidence,
  };
}
