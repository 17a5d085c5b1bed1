/**
 * The HTTPS management API spoken by devices of this protocol: the adapter calls it and the
 * reference device serves it, so both name the resources from here.
 */
export const deviceApiPaths = {
  identity: '/api/v1/identity',
  verifySession: '/api/v1/session/verify',
  csr: '/api/v1/csr',
  certificate: '/api/v1/certificate',
  configuration: '/api/v1/configuration',
  /** GET: the settings the device runs now, including changes made on the device itself. */
  runningConfiguration: '/api/v1/configuration/running',
  selfTest: '/api/v1/self-test',
  activate: '/api/v1/activate',
  status: '/api/v1/status',
} as const;

export type DeviceApiPath = (typeof deviceApiPaths)[keyof typeof deviceApiPaths];

/** Capabilities a device of this protocol may announce in its identity. */
export const deviceCapabilities = ['csr:P-256', 'csr:P-384', 'csr:RSA-2048', 'mtls', 'configuration:v1', 'self-test'] as const;
