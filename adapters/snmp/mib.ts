/**
 * The MIB objects this adapter reads and writes, named once. Table rows are addressed through
 * typed index builders, so no OID is spelled out by hand anywhere else.
 */

/** SNMPv2-MIB system group (RFC 3418). */
export const systemGroup = {
  sysDescr: '1.3.6.1.2.1.1.1.0',
  sysObjectID: '1.3.6.1.2.1.1.2.0',
  /** TimeTicks (hundredths of a second) since the agent last started. */
  sysUpTime: '1.3.6.1.2.1.1.3.0',
  sysContact: '1.3.6.1.2.1.1.4.0',
  sysName: '1.3.6.1.2.1.1.5.0',
  sysLocation: '1.3.6.1.2.1.1.6.0',
} as const;

/** SNMP-FRAMEWORK-MIB (RFC 3411): the agent's engine, to which USM keys are localized. */
export const snmpEngineID = '1.3.6.1.6.3.10.2.1.1.0';

/** Private enterprise arc: sysObjectID values below it name the vendor by its IANA number. */
export const enterprisesArc = '1.3.6.1.4.1';

/** ENTITY-MIB entPhysicalTable (RFC 6933) columns used for the fingerprint. */
export const entPhysicalEntry = {
  base: '1.3.6.1.2.1.47.1.1.1.1',
  softwareRev: 10,
  serialNum: 11,
  mfgName: 12,
  modelName: 13,
} as const;

/** IF-MIB ifTable ifPhysAddress column (RFC 2863). */
export const ifPhysAddressColumn = '1.3.6.1.2.1.2.2.1.6';

/** SNMP-USER-BASED-SM-MIB usmUserTable (RFC 3414 section 5). */
export const usmUserEntry = {
  base: '1.3.6.1.6.3.15.1.2.2.1',
  securityName: 3,
  cloneFrom: 4,
  authProtocol: 5,
  authKeyChange: 6,
  privProtocol: 8,
  privKeyChange: 9,
  storageType: 12,
  status: 13,
} as const;

/** SNMP-VIEW-BASED-ACM-MIB vacmSecurityToGroupTable (RFC 3415). */
export const vacmSecurityToGroupEntry = {
  base: '1.3.6.1.6.3.16.1.2.1',
  groupName: 3,
  storageType: 4,
  status: 5,
} as const;

/** Security models as VACM numbers them (RFC 3411 SnmpSecurityModel). */
export const securityModel = { v1: 1, v2c: 2, usm: 3 } as const;

/** RowStatus (RFC 2579) values. */
export const rowStatus = { active: 1, notInService: 2, notReady: 3, createAndGo: 4, createAndWait: 5, destroy: 6 } as const;

/** StorageType (RFC 2579): nonVolatile rows survive an agent restart. */
export const storageType = { volatile: 2, nonVolatile: 3, permanent: 4, readOnly: 5 } as const;

/** Authentication and privacy protocol identities (RFC 3414, RFC 3826, RFC 7860). */
export const usmProtocols = {
  hmac192Sha256AuthProtocol: '1.3.6.1.6.3.10.1.1.5',
  aesCfb128Protocol: '1.3.6.1.6.3.10.1.2.4',
} as const;

/** OCTET STRING index: length then one sub-identifier per octet (RFC 2578 section 7.7). */
export function octetStringIndex(value: Buffer | string): string {
  const octets = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return [octets.length, ...octets].join('.');
}

/** A usmUserTable cell: the row is indexed by (usmUserEngineID, usmUserName). */
export function usmUserCell(column: number, engineId: Buffer, userName: string): string {
  return `${usmUserEntry.base}.${column}.${octetStringIndex(engineId)}.${octetStringIndex(userName)}`;
}

/** A vacmSecurityToGroupTable cell: indexed by (vacmSecurityModel, vacmSecurityName). */
export function vacmSecurityToGroupCell(column: number, model: number, securityName: Buffer | string): string {
  return `${vacmSecurityToGroupEntry.base}.${column}.${model}.${octetStringIndex(securityName)}`;
}

/** Splits `<base>.<column>.<index...>` into the column and the index sub-identifiers, or undefined. */
export function tableCell(oid: string, base: string): { column: number; index: number[] } | undefined {
  if (!oid.startsWith(`${base}.`)) return undefined;
  const [column, ...index] = oid.slice(base.length + 1).split('.').map(Number);
  return { column, index };
}

/** Reads an OCTET STRING index (length-prefixed) from the front of `index`. */
export function readOctetStringIndex(index: number[]): { value: Buffer; rest: number[] } | undefined {
  const [length, ...rest] = index;
  if (length === undefined || rest.length < length) return undefined;
  return { value: Buffer.from(rest.slice(0, length)), rest: rest.slice(length) };
}
