/**
 * Fingerprinting: what a device is (type, vendor, model, firmware, capabilities) from what the
 * discovery protocols reported about it, each answer with a confidence and the facts it rests on.
 *
 * Everything the engine knows is in one table, `fingerprintRules`: a rule reads one named fact
 * (`ws-discovery.scope`, `snmp.enterpriseNumber`, `dhcp.parameterRequestList`, ...) from an
 * observation and, when it matches, concludes some attributes with a confidence. Adding knowledge
 * is adding a row. Several rules agreeing raise the confidence as independent evidence does
 * (1 - Π(1 - cᵢ)); rules disagreeing leave the best-supported value, with the others' evidence
 * kept out of it. Pure: no I/O, no clock.
 */
import type { DeviceType } from '../adapters/device-adapter';
import { deviceTypeFor, enterpriseNumber, enterpriseVendors } from '../adapters/snmp/enterprises';
import type { DiscoveryObservation, DiscoverySource } from './observation';

/** Where a conclusion came from: the scanner, the fact it reported, and the rule that read it. */
export interface FingerprintEvidence {
  source: DiscoverySource;
  /** A rule's fact, or `reported.<field>` for an identity field the scanner reported as such. */
  fact: FactName | `reported.${ReportedField}`;
  value: unknown;
  rule: string;
  confidence: number;
}

export interface FingerprintClaim<T> {
  value: T;
  /** 0..1: how sure the engine is, from all evidence that agrees. */
  confidence: number;
  evidence: FingerprintEvidence[];
}

export interface DeviceFingerprint {
  /** `other` with confidence 0 when nothing pointed anywhere. */
  deviceType: FingerprintClaim<DeviceType>;
  manufacturer?: FingerprintClaim<string>;
  model?: FingerprintClaim<string>;
  firmwareVersion?: FingerprintClaim<string>;
  /** One claim per capability (`onvif`, `snmp`, `bacnet`, `https`, `http`, `rtsp`, `upnp`, ...). */
  capabilities: FingerprintClaim<string>[];
}

/** What a rule may conclude. */
export interface FingerprintConclusion {
  deviceType?: DeviceType;
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  capabilities?: string[];
}

// ------------------------------------------------------------------------------------- facts

/**
 * The facts rules read, each a reader from an observation to the values it holds. Readers look
 * only at the observation of their own source, so a fact name says who reported it.
 */
const factReaders = {
  /** WS-Discovery Types, e.g. `dn:NetworkVideoTransmitter`, `tds:Device`. */
  'ws-discovery.type': (o) => (o.source === 'ws-discovery' ? strings(o.evidence.types) : []),
  /** WS-Discovery scopes, e.g. `onvif://www.onvif.org/Profile/Streaming`. */
  'ws-discovery.scope': (o) => (o.source === 'ws-discovery' ? strings(o.evidence.scopes) : []),
  /** The IANA enterprise number under which the SNMP sysObjectID sits. */
  'snmp.enterpriseNumber': (o) => {
    const oid = o.source === 'snmp' ? o.evidence.sysObjectID : undefined;
    const pen = typeof oid === 'string' ? enterpriseNumber(oid) : undefined;
    return pen === undefined ? [] : [pen];
  },
  'snmp.sysDescr': (o) => (o.source === 'snmp' ? strings([o.evidence.sysDescr]) : []),
  /** The ASHRAE vendor identifier from I-Am / Device object. */
  'bacnet.vendorIdentifier': (o) => (o.source === 'bacnet' && typeof o.evidence.vendorIdentifier === 'number' ? [o.evidence.vendorIdentifier] : []),
  'bacnet.deviceInstance': (o) => (o.source === 'bacnet' && typeof o.evidence.deviceInstance === 'number' ? [o.evidence.deviceInstance] : []),
  /** DNS-SD service types, e.g. `_axis-video._tcp.local`. */
  'mdns.serviceType': (o) =>
    o.source === 'mdns' && Array.isArray(o.evidence.services)
      ? strings((o.evidence.services as { type?: unknown }[]).map((service) => service?.type))
      : [],
  /** UPnP device types from the description and the search targets answered. */
  'ssdp.deviceType': (o) => {
    if (o.source !== 'ssdp') return [];
    const description = o.evidence.description as { deviceType?: unknown } | undefined;
    return [...new Set([...strings([description?.deviceType]), ...strings(o.evidence.searchTargets)])];
  },
  /** DHCP option 60. */
  'dhcp.vendorClass': (o) => (o.source === 'dhcp' ? strings([o.evidence.vendorClass]) : []),
  /** DHCP option 12 (or the name the server recorded). */
  'dhcp.hostname': (o) => (o.source === 'dhcp' ? strings([o.hostname]) : []),
  /** DHCP option 55 as `1,3,6,...`: the order is part of the fingerprint. */
  'dhcp.parameterRequestList': (o) =>
    o.source === 'dhcp' && Array.isArray(o.evidence.parameterRequestList) ? [(o.evidence.parameterRequestList as number[]).join(',')] : [],
  /** The protocol of each endpoint a scanner offers (`onvif`, `onvif-https`, `snmp`, `https`, ...). */
  'endpoint.protocol': (o) => [...new Set(o.endpoints.map((endpoint) => endpoint.protocol))],
} satisfies Record<string, (observation: DiscoveryObservation) => unknown[]>;

export type FactName = keyof typeof factReaders;

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string' && v.trim() !== '').map((v) => v.trim()) : [];
}

// ------------------------------------------------------------------------------------- rules

export interface FingerprintRule {
  /** Stable name, kept in the evidence. */
  id: string;
  fact: FactName;
  /** A pattern the fact's text must match, or a function concluding from the value. */
  when: RegExp | ((value: unknown) => FingerprintConclusion | undefined);
  /** What a pattern match concludes (unused for function rules). */
  then?: FingerprintConclusion;
  confidence: number;
}

/**
 * BACnet vendor identifiers (ASHRAE's registry) of building-automation vendors; an unknown number
 * is left unnamed rather than guessed.
 */
export const bacnetVendors: ReadonlyMap<number, string> = new Map([
  [2, 'The Trane Company'],
  [5, 'Johnson Controls'],
  [8, 'Delta Controls'],
  [17, 'Honeywell'],
  [24, 'Automated Logic Corporation'],
]);

/** Windows' DHCP client asks for these options in this order (Windows 10 and later). */
const windowsParameterRequestList = '1,3,6,15,31,33,43,44,46,47,119,121,249,252';

export const fingerprintRules: readonly FingerprintRule[] = [
  // ONVIF: Types and scopes (ONVIF Core specification, 7.3.2.2 Scopes).
  { id: 'onvif-type-nvt', fact: 'ws-discovery.type', when: /(^|:)NetworkVideoTransmitter$/i, then: { deviceType: 'camera', capabilities: ['onvif'] }, confidence: 0.8 },
  { id: 'onvif-type-device', fact: 'ws-discovery.type', when: /(^|:)Device$/, then: { capabilities: ['onvif'] }, confidence: 0.9 },
  { id: 'onvif-scope-video', fact: 'ws-discovery.scope', when: /^onvif:\/\/www\.onvif\.org\/type\/(video_encoder|network_video_transmitter|ptz)\b/i, then: { deviceType: 'camera' }, confidence: 0.85 },
  { id: 'onvif-scope-access-control', fact: 'ws-discovery.scope', when: /^onvif:\/\/www\.onvif\.org\/type\/(access_?control|door_?control)/i, then: { deviceType: 'door_controller' }, confidence: 0.8 },
  // Profiles S and T stream video; A and C are access control; D is peripherals (readers, locks).
  { id: 'onvif-profile-streaming', fact: 'ws-discovery.scope', when: /^onvif:\/\/www\.onvif\.org\/Profile\/(Streaming|S|T)$/i, then: { deviceType: 'camera', capabilities: ['onvif-profile-s'] }, confidence: 0.7 },
  { id: 'onvif-profile-access', fact: 'ws-discovery.scope', when: /^onvif:\/\/www\.onvif\.org\/Profile\/(A|C)$/i, then: { deviceType: 'door_controller', capabilities: ['onvif-profile-c'] }, confidence: 0.7 },
  { id: 'onvif-profile-peripheral', fact: 'ws-discovery.scope', when: /^onvif:\/\/www\.onvif\.org\/Profile\/D$/i, then: { deviceType: 'card_reader' }, confidence: 0.6 },
  { id: 'onvif-scope-hardware', fact: 'ws-discovery.scope', when: (value) => hardwareScope(value), confidence: 0.6 },

  // SNMP: the enterprise number names the vendor (and its usual product); the description is more specific.
  {
    id: 'snmp-enterprise-number',
    fact: 'snmp.enterpriseNumber',
    when: (value) => {
      const vendor = enterpriseVendors.get(value as number);
      return vendor ? { manufacturer: vendor.manufacturer, ...(vendor.deviceType !== 'other' ? { deviceType: vendor.deviceType } : {}) } : undefined;
    },
    confidence: 0.6,
  },
  {
    id: 'snmp-sysdescr-type',
    fact: 'snmp.sysDescr',
    when: (value) => {
      const type = deviceTypeFor(String(value), undefined);
      return type === 'other' ? undefined : { deviceType: type };
    },
    confidence: 0.65,
  },

  // BACnet: speaking it at all says building automation; the vendor id names the maker.
  { id: 'bacnet-device', fact: 'bacnet.deviceInstance', when: () => ({ deviceType: 'building_controller', capabilities: ['bacnet'] }), confidence: 0.75 },
  {
    id: 'bacnet-vendor-identifier',
    fact: 'bacnet.vendorIdentifier',
    when: (value) => {
      const manufacturer = bacnetVendors.get(value as number);
      return manufacturer ? { manufacturer } : undefined;
    },
    confidence: 0.8,
  },

  // mDNS / DNS-SD service types.
  { id: 'mdns-axis-video', fact: 'mdns.serviceType', when: /^_axis-video\._tcp\b/i, then: { deviceType: 'camera', manufacturer: 'Axis Communications' }, confidence: 0.8 },
  { id: 'mdns-rtsp', fact: 'mdns.serviceType', when: /^_rtsp\._tcp\b/i, then: { deviceType: 'camera', capabilities: ['rtsp'] }, confidence: 0.5 },
  { id: 'mdns-onvif', fact: 'mdns.serviceType', when: /^_onvif\._tcp\b/i, then: { capabilities: ['onvif'] }, confidence: 0.7 },

  // SSDP / UPnP device types.
  { id: 'ssdp-security-camera', fact: 'ssdp.deviceType', when: /^urn:schemas-upnp-org:device:DigitalSecurityCamera:\d+$/i, then: { deviceType: 'camera', capabilities: ['upnp'] }, confidence: 0.75 },
  { id: 'ssdp-network-video', fact: 'ssdp.deviceType', when: /NetworkVideo|VideoServer|IPCamera/i, then: { deviceType: 'camera', capabilities: ['upnp'] }, confidence: 0.6 },
  { id: 'ssdp-any-device', fact: 'ssdp.deviceType', when: /^urn:[^:]+:device:/i, then: { capabilities: ['upnp'] }, confidence: 0.6 },

  // DHCP: vendor class (option 60), host name (12) and parameter request list (55).
  { id: 'dhcp-vendor-class-axis', fact: 'dhcp.vendorClass', when: /^axis\b/i, then: { manufacturer: 'Axis Communications', deviceType: 'camera' }, confidence: 0.55 },
  { id: 'dhcp-vendor-class-windows', fact: 'dhcp.vendorClass', when: /^MSFT\b/, then: { deviceType: 'other' }, confidence: 0.7 },
  // Axis products name themselves `axis-<MAC without separators>` until renamed.
  { id: 'dhcp-hostname-axis', fact: 'dhcp.hostname', when: /^axis-[0-9a-f]{12}$/i, then: { manufacturer: 'Axis Communications', deviceType: 'camera' }, confidence: 0.6 },
  { id: 'dhcp-prl-windows', fact: 'dhcp.parameterRequestList', when: (value) => (value === windowsParameterRequestList ? { deviceType: 'other' } : undefined), confidence: 0.6 },

  // Endpoints the scanners offer say what the device speaks.
  {
    id: 'endpoint-protocol',
    fact: 'endpoint.protocol',
    when: (value) => {
      const capabilities = endpointCapabilities[String(value)];
      return capabilities ? { capabilities } : undefined;
    },
    confidence: 0.9,
  },
];

const endpointCapabilities: Record<string, string[]> = {
  onvif: ['onvif'],
  'onvif-https': ['onvif', 'https'],
  snmp: ['snmp'],
  bacnet: ['bacnet'],
  https: ['https'],
  http: ['http'],
  rtsp: ['rtsp'],
  upnp: ['upnp'],
};

function hardwareScope(value: unknown): FingerprintConclusion | undefined {
  const match = /^onvif:\/\/www\.onvif\.org\/hardware\/(.+)$/i.exec(String(value));
  if (!match) return undefined;
  try {
    return { model: decodeURIComponent(match[1]!) };
  } catch {
    return { model: match[1]! };
  }
}

/**
 * How far each scanner's own identity fields (manufacturer, model, firmware) are trusted: values a
 * device reads out of its own object model (BACnet Device object, UPnP description) over ones a
 * scanner derived (SNMP maps the enterprise number to a vendor).
 */
export const reportedFieldConfidence: Record<DiscoverySource, number> = {
  bacnet: 0.95,
  ssdp: 0.85,
  'ws-discovery': 0.8,
  mdns: 0.8,
  snmp: 0.7,
  dhcp: 0.5,
};

// ------------------------------------------------------------------------------------- engine

type ReportedField = 'manufacturer' | 'model' | 'firmwareVersion';
type Attribute = 'deviceType' | ReportedField;

interface Candidate {
  value: string;
  evidence: FingerprintEvidence[];
}

/** The fingerprint of one device from every observation attributed to it. */
export function fingerprintDevice(observations: readonly DiscoveryObservation[], rules: readonly FingerprintRule[] = fingerprintRules): DeviceFingerprint {
  const candidates: Record<Attribute, Map<string, Candidate>> = {
    deviceType: new Map(),
    manufacturer: new Map(),
    model: new Map(),
    firmwareVersion: new Map(),
  };
  const capabilities = new Map<string, Candidate>();
  const add = (map: Map<string, Candidate>, key: string, value: string, evidence: FingerprintEvidence) => {
    const candidate = map.get(key) ?? { value, evidence: [] };
    candidate.evidence.push(evidence);
    map.set(key, candidate);
  };

  for (const observation of observations) {
    for (const rule of rules) {
      for (const value of factReaders[rule.fact](observation)) {
        const conclusion = concludes(rule, value);
        if (!conclusion) continue;
        const evidence: FingerprintEvidence = { source: observation.source, fact: rule.fact, value, rule: rule.id, confidence: rule.confidence };
        if (conclusion.deviceType) add(candidates.deviceType, conclusion.deviceType, conclusion.deviceType, evidence);
        if (conclusion.manufacturer) add(candidates.manufacturer, vendorKey(conclusion.manufacturer), conclusion.manufacturer, evidence);
        if (conclusion.model) add(candidates.model, conclusion.model.toLowerCase(), conclusion.model, evidence);
        if (conclusion.firmwareVersion) add(candidates.firmwareVersion, conclusion.firmwareVersion, conclusion.firmwareVersion, evidence);
        for (const capability of conclusion.capabilities ?? []) add(capabilities, capability, capability, evidence);
      }
    }
    // What the device said of itself, as the scanner reported it.
    const confidence = reportedFieldConfidence[observation.source];
    const reported = (attribute: ReportedField, key: (value: string) => string) => {
      const value = observation[attribute]?.trim();
      if (!value) return;
      add(candidates[attribute], key(value), value, { source: observation.source, fact: `reported.${attribute}`, value, rule: 'reported-by-device', confidence });
    };
    reported('manufacturer', vendorKey);
    reported('model', (value) => value.toLowerCase());
    reported('firmwareVersion', (value) => value);
  }

  return {
    deviceType: (best(candidates.deviceType) as FingerprintClaim<DeviceType> | undefined) ?? { value: 'other', confidence: 0, evidence: [] },
    ...optionalClaim('manufacturer', best(candidates.manufacturer)),
    ...optionalClaim('model', best(candidates.model)),
    ...optionalClaim('firmwareVersion', best(candidates.firmwareVersion)),
    capabilities: [...capabilities.values()].map(claimOf).sort((a, b) => a.value.localeCompare(b.value)),
  };
}

function concludes(rule: FingerprintRule, value: unknown): FingerprintConclusion | undefined {
  if (rule.when instanceof RegExp) return rule.when.test(String(value)) ? rule.then : undefined;
  return rule.when(value);
}

function optionalClaim<K extends string>(key: K, claim: FingerprintClaim<string> | undefined): Partial<Record<K, FingerprintClaim<string>>> {
  return claim ? ({ [key]: claim } as Record<K, FingerprintClaim<string>>) : {};
}

/** Independent evidence combines as 1 - Π(1 - cᵢ), counting each rule once per source. */
function claimOf(candidate: Candidate): FingerprintClaim<string> {
  const counted = new Map<string, number>();
  for (const evidence of candidate.evidence) {
    const key = `${evidence.source}/${evidence.rule}`;
    counted.set(key, Math.max(counted.get(key) ?? 0, evidence.confidence));
  }
  const doubt = [...counted.values()].reduce((product, confidence) => product * (1 - confidence), 1);
  return { value: candidate.value, confidence: Math.round((1 - doubt) * 1000) / 1000, evidence: candidate.evidence };
}

function best(candidates: Map<string, Candidate>): FingerprintClaim<string> | undefined {
  let chosen: FingerprintClaim<string> | undefined;
  for (const candidate of candidates.values()) {
    const claim = claimOf(candidate);
    if (!chosen || claim.confidence > chosen.confidence) chosen = claim;
  }
  return chosen;
}

/** Legal-form and filler words that spell one vendor several ways ("AXIS", "Axis Communications AB"). */
const vendorNoise = new Set(['inc', 'ltd', 'llc', 'ab', 'ag', 'gmbh', 'co', 'corp', 'corporation', 'company', 'the', 'communications', 'technology', 'technologies', 'systems']);

/** A vendor name reduced to what identifies it, for comparing spellings. */
export function vendorKey(manufacturer: string): string {
  const words = manufacturer.toLowerCase().split(/[^a-z0-9]+/).filter((word) => word && !vendorNoise.has(word));
  return words[0] ?? manufacturer.trim().toLowerCase();
}
