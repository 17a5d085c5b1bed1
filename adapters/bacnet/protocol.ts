/**
 * The BACnet (ASHRAE 135) numbers this adapter speaks, named once. The BACnet/SC properties of the
 * Network Port object (135-2020 Addendum cc) have no name in any npm library, so every identifier is
 * spelled out here rather than borrowed piecemeal from the client library's enums.
 */

export const defaultBacnetPort = 47808;

/** BACnetObjectType values. */
export const objectType = {
  device: 8,
  file: 10,
  networkPort: 56,
} as const;

/** BACnetPropertyIdentifier values. */
export const propertyId = {
  applicationSoftwareVersion: 12,
  apduTimeout: 11,
  description: 28,
  fileSize: 42,
  firmwareRevision: 44,
  location: 58,
  modelName: 70,
  numberOfApduRetries: 73,
  objectIdentifier: 75,
  objectList: 76,
  objectName: 77,
  objectType: 79,
  systemStatus: 112,
  utcOffset: 119,
  vendorIdentifier: 120,
  vendorName: 121,
  protocolRevision: 139,
  serialNumber: 372,
  changesPending: 416,
  networkType: 427,
  certificateSigningRequestFile: 509,
  issuerCertificateFiles: 511,
  operationalCertificateFile: 4194306,
  scFailoverHubUri: 4194317,
  scPrimaryHubUri: 4194325,
} as const;

/** BACnetDeviceStatus, as System_Status reports it. */
export const deviceStatus = { operational: 0, operationalReadOnly: 1, downloadRequired: 2, downloadInProgress: 3, nonOperational: 4, backupInProgress: 5 } as const;

/** BACnetNetworkType: the library's enum stops at serial (10); secure-connect came later. */
export const networkType = { ipv4: 5, secureConnect: 11 } as const;

/** BACnetApplicationTag values used to type written values. */
export const applicationTag = {
  null: 0,
  boolean: 1,
  unsignedInteger: 2,
  signedInteger: 3,
  octetString: 6,
  characterString: 7,
  enumerated: 9,
  objectIdentifier: 12,
  /** The client library's pseudo-tag for an error in a ReadPropertyMultiple result. */
  error: 105,
} as const;

/** BACnetReinitializedStateOfDevice. */
export const reinitializedState = { coldstart: 0, warmstart: 1, activateChanges: 7 } as const;

/** DeviceCommunicationControl enable-disable. */
export const communicationState = { enable: 0, disable: 1, disableInitiation: 2 } as const;

export const errorClass = {
  device: 0,
  object: 1,
  property: 2,
  resources: 3,
  security: 4,
  services: 5,
  vt: 6,
  communication: 7,
} as const;

export const errorCode = {
  other: 0,
  configurationInProgress: 2,
  deviceBusy: 3,
  fileAccessDenied: 5,
  invalidDataType: 9,
  invalidFileAccessMethod: 10,
  invalidFileStartPosition: 11,
  missingRequiredParameter: 16,
  noSpaceToWriteProperty: 20,
  passwordFailure: 26,
  serviceRequestDenied: 29,
  unknownObject: 31,
  unknownProperty: 32,
  valueOutOfRange: 37,
  writeAccessDenied: 40,
  characterSetNotSupported: 41,
  invalidArrayIndex: 42,
  invalidConfigurationData: 46,
  propertyIsNotAnArray: 50,
  duplicateName: 48,
  communicationDisabled: 83,
  inconsistentConfiguration: 129,
  valueTooLong: 134,
} as const;

/** Largest file chunk per AtomicRead/WriteFile, leaving room for headers in a 1476-octet APDU. */
export const fileChunkOctets = 1024;

export interface ObjectId {
  type: number;
  instance: number;
}

export const deviceObject = (instance: number): ObjectId => ({ type: objectType.device, instance });

/** BACnet object instances are 22-bit; 4194303 is the "unconfigured" wildcard, never a real device. */
export const maxDeviceInstance = 4194302;

export interface BacnetErrorDetail {
  errorClass: number;
  errorCode: number;
}

export function errorName(detail: BacnetErrorDetail): string {
  const className = Object.entries(errorClass).find(([, v]) => v === detail.errorClass)?.[0] ?? `class ${detail.errorClass}`;
  const codeName = Object.entries(errorCode).find(([, v]) => v === detail.errorCode)?.[0] ?? `code ${detail.errorCode}`;
  return `${className}/${codeName}`;
}
