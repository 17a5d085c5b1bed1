/**
 * Who may do what. Every API operation names one permission; a role is a set of permissions.
 * Tenancy is separate: a principal only ever sees its own tenant's objects.
 */
export const roles = ['viewer', 'operator', 'approver', 'administrator', 'reporter'] as const;
export type Role = (typeof roles)[number];

export const permissions = [
  'provisioning:read',
  'provisioning:write',
  'provisioning:approve',
  'certificates:read',
  'certificates:issue',
  'certificates:revoke',
  'ca:manage',
  'templates:read',
  'templates:write',
  'policies:manage',
  'audit:read',
  'access:manage',
  'history:decode',
  'discovery:read',
  'discovery:sweep',
  'discovery:manage',
  /** Reporting DHCP lease events (the site's DHCP server hook). */
  'discovery:report',
  /** Devices' configuration parameters (never secret values) and push history. */
  'configuration:read',
  /** Setting devices' configuration parameters, secret ones included. */
  'configuration:write',
  /** Rolling configurations out and back, steering rollouts, running drift checks. */
  'configuration:deploy',
  'compliance:read',
  /** Changing the tenant's compliance policy. */
  'compliance:manage',
  /** Granting and revoking exceptions to the compliance policy: an approver's decision. */
  'compliance:override',
  /** Decommissioning, replacing (RMA) and re-provisioning devices. */
  'devices:lifecycle',
] as const;
export type Permission = (typeof permissions)[number];

const read: Permission[] = [
  'provisioning:read',
  'certificates:read',
  'templates:read',
  'discovery:read',
  'configuration:read',
  'compliance:read',
];

export const rolePermissions: Record<Role, ReadonlySet<Permission>> = {
  viewer: new Set(read),
  operator: new Set([
    ...read,
    'provisioning:write',
    'certificates:issue',
    'certificates:revoke',
    'history:decode',
    'discovery:sweep',
    'discovery:report',
    'configuration:write',
    'configuration:deploy',
    'devices:lifecycle',
  ]),
  approver: new Set([...read, 'provisioning:approve', 'history:decode', 'compliance:override']),
  administrator: new Set(permissions),
  // A DHCP server's hook: its key, kept on that server, must be worth nothing else if it leaks.
  reporter: new Set(['discovery:report']),
};

export function roleAllows(role: Role, permission: Permission): boolean {
  return rolePermissions[role].has(permission);
}

/** The authenticated caller of an API request. */
export interface Principal {
  /**
   * Who is acting: the person or system the credential belongs to (`user:<sub>` of a token; the
   * principal an API key was issued to). Four-eyes checks compare this, never the credential, so
   * a second key of the same person is still the same person.
   */
  subject: string;
  /** The credential presented: `api-key:<id>`, or `user:<sub>` for a token. */
  credential: string;
  kind: 'api-key' | 'user';
  tenantId: string;
  role: Role;
  /** A human-readable name (key name or token name claim). */
  name: string;
  /** A break-glass credential: accepted only with a stated reason, every use alerted and audited. */
  breakGlass?: boolean;
  /** The reason the holder of a break-glass credential stated for this request. */
  breakGlassReason?: string;
}
