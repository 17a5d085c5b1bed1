/**
 * API keys: `dps_<prefix>_<secret>`. The prefix finds the row; only the SHA-256 of the secret is
 * stored (the secret has 256 bits of entropy, so a slow hash would add nothing) and compared in
 * constant time. The whole key is shown once, when created.
 *
 * Every key belongs to a principal, the one who acts when the key is used. A key made through the
 * API belongs to whoever made it: an administrator cannot mint itself a second identity there.
 * Only whoever runs the installation (`npm run api-key`) names another principal; without one, a
 * key is a principal of its own (`api-key:<id>`).
 *
 * A break-glass key is an administrator key made offline for emergencies (the identity provider
 * down, every administrator locked out): the API takes it only with a stated reason, and every use
 * is alerted and audited.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import type { Database } from '../db/client';
import { apiKeys, type ApiKeyRow } from '../db/schema';
import { NotFoundError, ValidationError } from '../foundation/errors';
import { roles, type Principal, type Role } from './roles';

/** An API key as kept: never its secret, only the hash. */
export type ApiKey = Omit<ApiKeyRow, 'role'> & { role: Role };

/** The database keeps the role as text; an unknown one (written by a later version) grants nothing. */
function apiKeyOf(row: ApiKeyRow): ApiKey {
  if (!(roles as readonly string[]).includes(row.role)) throw new Error(`API key ${row.id} has an unknown role "${row.role}"`);
  return { ...row, role: row.role as Role };
}

const keyPattern = /^dps_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** How a key names itself as credential, and as principal when it was issued to no one else. */
export function apiKeyCredential(id: string): string {
  return `api-key:${id}`;
}

/** A principal named by whoever runs the installation, such as the identity provider's `user:alice`. */
export const principalPattern = /^[a-z][a-z-]{0,31}:[^\s]{1,200}$/;

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith('dps_');
}

/** The header a break-glass key's holder states the reason for a request in. */
export const breakGlassReasonHeader = 'X-Break-Glass-Reason';
export const maximumBreakGlassReasonLength = 500;

/** One presentation of a break-glass key: accepted with its reason, or refused and why. */
export interface BreakGlassUse {
  principal: Principal;
  outcome: 'accepted' | 'refused';
  /** The reason the caller stated (accepted), or why the request was refused. */
  reason: string;
  method: string;
  path: string;
  address?: string;
}

export interface CreatedApiKey {
  id: string;
  /** The full key; it cannot be recovered later. */
  key: string;
  row: ApiKey;
}

export class ApiKeyStore {
  constructor(private readonly db: Database) {}

  async create(input: {
    tenantId: string;
    name: string;
    role: Role;
    createdBy: string;
    /** Whom the key acts for; a principal of its own (`api-key:<id>`) when absent. */
    principal?: string;
    expiresAt?: Date;
    /** An emergency administrator credential; see the module comment. */
    breakGlass?: boolean;
  }): Promise<CreatedApiKey> {
    if (input.breakGlass && input.role !== 'administrator') {
      throw new ValidationError('a break-glass key is an administrator key', { fields: [{ field: 'role', reason: 'must be administrator for a break-glass key' }] });
    }
    const id = randomUUID();
    const prefix = randomBytes(9).toString('base64url').toLowerCase().replace(/[^a-z0-9]/g, '0').slice(0, 12);
    const secret = randomBytes(32).toString('base64url');
    const [row] = await this.db
      .insert(apiKeys)
      .values({
        ...input,
        id,
        principal: input.principal ?? apiKeyCredential(id),
        prefix,
        secretHash: hashSecret(secret),
        expiresAt: input.expiresAt ?? null,
        breakGlass: input.breakGlass ?? false,
      })
      .returning();
    return { id: row.id, key: `dps_${prefix}_${secret}`, row: apiKeyOf(row) };
  }

  /** The principal a key stands for, or undefined for a malformed, unknown, revoked or expired key. */
  async authenticate(key: string, now = new Date()): Promise<Principal | undefined> {
    const match = keyPattern.exec(key);
    if (!match) return undefined;
    const [, prefix, secret] = match;
    const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.prefix, prefix));
    if (!row || row.revokedAt || (row.expiresAt && row.expiresAt <= now)) return undefined;
    const expected = Buffer.from(row.secretHash, 'hex');
    const presented = Buffer.from(hashSecret(secret), 'hex');
    if (!timingSafeEqual(expected, presented)) return undefined;
    const { role } = apiKeyOf(row);
    await this.db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, row.id));
    return {
      subject: row.principal,
      credential: apiKeyCredential(row.id),
      kind: 'api-key',
      tenantId: row.tenantId,
      role,
      name: row.name,
      ...(row.breakGlass ? { breakGlass: true } : {}),
    };
  }

  async list(tenantId: string): Promise<ApiKey[]> {
    const rows = await this.db.select().from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(apiKeys.createdAt);
    return rows.map(apiKeyOf);
  }

  async revoke(tenantId: string, id: string): Promise<ApiKey> {
    const [row] = await this.db
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.tenantId, tenantId), eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
      .returning();
    if (row) return apiKeyOf(row);
    const [existing] = await this.db.select().from(apiKeys).where(and(eq(apiKeys.tenantId, tenantId), eq(apiKeys.id, id)));
    if (!existing) throw new NotFoundError(`API key ${id} not found`);
    return apiKeyOf(existing);
  }

  async any(): Promise<boolean> {
    const rows = await this.db.select({ id: apiKeys.id }).from(apiKeys).limit(1);
    return rows.length > 0;
  }
}
