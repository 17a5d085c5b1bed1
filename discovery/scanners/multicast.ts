/**
 * The link-local multicast scanners, by source, for the discovery workflow's activities to pick
 * from. Each has the `DiscoveryScan` shape: `(scope, { timeoutMs, signal }) => observations`
 * with a `report` attached.
 */
import type { DiscoveryScan } from '../scanner';
import { scanMdns } from './mdns';
import { scanSsdp } from './ssdp';
import { scanWsDiscovery } from './ws-discovery';

export const multicastScanners = {
  'ws-discovery': scanWsDiscovery,
  mdns: scanMdns,
  ssdp: scanSsdp,
} as const satisfies Record<string, DiscoveryScan>;

export type MulticastSource = keyof typeof multicastScanners;
