import { z } from 'zod';
import type { ApiKey, ApiKeyStore } from '../../access/api-keys';
import { rolePermissions, roles } from '../../access/roles';
import { operation, type AnyOperation } from '../operation';
import { apiKeySchema, whoAmISchema } from '../schemas';

const base = '/api/v1/access';

function apiKeyOf(row: ApiKey) {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    role: row.role,
    principal: row.principal,
    createdBy: row.createdBy,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    breakGlass: row.breakGlass,
  };
}

const createBody = z
  .object({
    name: z.string().trim().min(1).max(120),
    role: z.enum(roles),
    expiresInDays: z.number().int().min(1).max(3650).optional(),
  })
  .strict();

export function accessOperations(apiKeys: ApiKeyStore): AnyOperation[] {
  return [
    operation({
      operationId: 'whoAmI',
      method: 'get',
      path: `${base}/me`,
      summary: 'Describe the authenticated caller',
      tag: 'access',
      permission: 'provisioning:read',
      responses: { 200: { description: 'The caller, its tenant, role and permissions', schema: whoAmISchema } },
      handle({ res, principal }) {
        res.json({ ...principal, permissions: [...rolePermissions[principal.role]] });
      },
    }),
    operation({
      operationId: 'listApiKeys',
      method: 'get',
      path: `${base}/api-keys`,
      summary: "List the tenant's API keys",
      tag: 'access',
      permission: 'access:manage',
      responses: { 200: { description: 'Keys, without their secrets', schema: z.object({ apiKeys: z.array(apiKeySchema) }) } },
      async handle({ res, tenantId }) {
        res.json({ apiKeys: (await apiKeys.list(tenantId)).map(apiKeyOf) });
      },
    }),
    operation({
      operationId: 'createApiKey',
      method: 'post',
      path: `${base}/api-keys`,
      summary: 'Create an API key, acting for the caller',
      tag: 'access',
      permission: 'access:manage',
      body: createBody,
      responses: {
        201: {
          description: 'The key; `key` is shown this once and cannot be recovered',
          schema: z.object({ apiKey: apiKeySchema, key: z.string() }),
        },
      },
      async handle({ res, tenantId, principal, body }) {
        const created = await apiKeys.create({
          tenantId,
          name: body.name,
          role: body.role,
          // The caller's own: a key made here never counts as someone else in a four-eyes check.
          principal: principal.subject,
          createdBy: principal.credential,
          ...(body.expiresInDays ? { expiresAt: new Date(Date.now() + body.expiresInDays * 86_400_000) } : {}),
        });
        res.status(201).json({ apiKey: apiKeyOf(created.row), key: created.key });
      },
    }),
    operation({
      operationId: 'revokeApiKey',
      method: 'delete',
      path: `${base}/api-keys/{apiKeyId}`,
      summary: 'Revoke an API key',
      tag: 'access',
      permission: 'access:manage',
      params: z.object({ apiKeyId: z.uuid() }),
      responses: { 200: { description: 'The revoked key', schema: apiKeySchema } },
      async handle({ res, tenantId, params }) {
        res.json(apiKeyOf(await apiKeys.revoke(tenantId, params.apiKeyId)));
      },
    }),
  ];
}
