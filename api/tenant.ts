/**
 * Which tenant a request acts for. Until API authentication binds a tenant to each caller, it is
 * named by the `X-Tenant-Id` header (default `default`), validated like any other identifier.
 */
import type { Request } from 'express';
import { identifierPattern } from '../provisioning/requests';
import { ValidationError } from '../service/errors';

export const defaultTenantId = 'default';

export function tenantOf(req: Request): string {
  const header = req.get('x-tenant-id');
  if (header === undefined || header === '') return defaultTenantId;
  if (!identifierPattern.test(header)) {
    throw new ValidationError('X-Tenant-Id is not a valid tenant id', {
      fields: [{ field: 'header:X-Tenant-Id', reason: 'must be 1-64 characters of letters, digits, ".", "_" or "-"' }],
    });
  }
  return header;
}
