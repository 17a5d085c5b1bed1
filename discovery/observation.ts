/** The scanners that report observations. */
export type DiscoverySource = 'ws-discovery' | 'mdns' | 'ssdp' | 'snmp' | 'bacnet' | 'dhcp';

export interface DiscoveryObservation {
  /** Which scanner saw it: 'ws-discovery' | 'mdns' | 'ssdp' | 'snmp' | 'bacnet' | 'dhcp'. */
  source: DiscoverySource;
  observedAt: string;           // ISO time
  ip?: string;                  // canonical text form
  macAddress?: string;          // lower-case aa:bb:cc:dd:ee:ff
  /** The protocol address an adapter can provision it at, e.g. 'onvif' + '10.0.0.5:80'. */
  endpoints: { protocol: string; address: string }[];
  serialNumber?: string;
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  hostname?: string;
  /** Raw facts as reported (scopes, TXT records, sysObjectID, vendor class, PRL, ...), for evidence. */
  evidence: Record<string, unknown>;
}
