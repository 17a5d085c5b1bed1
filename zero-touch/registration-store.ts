/**
 * Where zero-touch registrations are kept, and the only code that reads or writes them: the
 * devices expected, what recognises each one (serial, MAC), how long it is awaited, and the
 * installer's enrolment token (its hash only).
 */
import { and, eq, gt, inArray, isNull, or, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { zeroTouchRegistrations, type ZeroTouchRegistrationRow } from '../db/schema';
import { NotFoundError } from '../foundation/errors';

export type StoredRegistration = ZeroTouchRegistrationRow;
export type NewRegistration = Omit<typeof zeroTouchRegistrations.$inferInsert, 'id' | 'createdAt' | 'updatedAt'>;

export class ZeroTouchRegistrationStore {
  constructor(private readonly db: Database) {}

  /** All or none of them are stored. */
  async insert(registrations: NewRegistration[]): Promise<StoredRegistration[]> {
    return this.db.insert(zeroTouchRegistrations).values(registrations).returning();
  }

  async byId(registrationId: string): Promise<StoredRegistration> {
    const [row] = await this.db.select().from(zeroTouchRegistrations).where(eq(zeroTouchRegistrations.id, registrationId));
    if (!row) throw new NotFoundError(`zero-touch registration ${registrationId} no longer exists`);
    return row;
  }

  async ofDevice(tenantId: string, deviceId: string): Promise<StoredRegistration> {
    const [row] = await this.db
      .select()
      .from(zeroTouchRegistrations)
      .where(and(eq(zeroTouchRegistrations.tenantId, tenantId), eq(zeroTouchRegistrations.deviceId, deviceId)));
    if (!row) throw new NotFoundError(`no zero-touch registration for device ${deviceId}`);
    return row;
  }

  /** Registrations not yet expired that a device with one of these serials or MACs may be. */
  async awaiting(tenantId: string, identities: { serialNumbers: string[]; macAddresses: string[] }): Promise<StoredRegistration[]> {
    const { serialNumbers, macAddresses } = identities;
    if (serialNumbers.length === 0 && macAddresses.length === 0) return [];
    return this.db
      .select()
      .from(zeroTouchRegistrations)
      .where(
        and(
          eq(zeroTouchRegistrations.tenantId, tenantId),
          gt(zeroTouchRegistrations.expiresAt, new Date()),
          or(
            serialNumbers.length > 0 ? inArray(zeroTouchRegistrations.serialNumber, serialNumbers) : undefined,
            macAddresses.length > 0 ? inArray(zeroTouchRegistrations.macAddress, macAddresses) : undefined,
          ),
        ),
      );
  }

  /** Registrations, expired or not, that already claim one of these device ids, serials or MACs. */
  async claiming(tenantId: string, claims: { deviceIds: string[]; serialNumbers: string[]; macAddresses: string[] }): Promise<StoredRegistration[]> {
    return this.db
      .select()
      .from(zeroTouchRegistrations)
      .where(
        and(
          eq(zeroTouchRegistrations.tenantId, tenantId),
          or(
            inArray(zeroTouchRegistrations.deviceId, claims.deviceIds),
            inArray(zeroTouchRegistrations.serialNumber, claims.serialNumbers),
            inArray(zeroTouchRegistrations.macAddress, claims.macAddresses),
          ),
        ),
      );
  }

  /** A new token replaces any earlier one. */
  async setEnrolmentToken(registrationId: string, tokenHash: string, expiresAt: Date): Promise<void> {
    await this.db
      .update(zeroTouchRegistrations)
      .set({ enrolmentTokenHash: tokenHash, enrolmentTokenExpiresAt: expiresAt, enrolmentTokenUsedAt: null, updatedAt: new Date() })
      .where(eq(zeroTouchRegistrations.id, registrationId));
  }

  /** Marks the token with this hash used, if it is unused and unexpired; its registration, else undefined. */
  async useEnrolmentToken(tokenHash: string): Promise<StoredRegistration | undefined> {
    const [row] = await this.db
      .update(zeroTouchRegistrations)
      .set({ enrolmentTokenUsedAt: new Date() })
      .where(
        and(
          eq(zeroTouchRegistrations.enrolmentTokenHash, tokenHash),
          isNull(zeroTouchRegistrations.enrolmentTokenUsedAt),
          gt(zeroTouchRegistrations.enrolmentTokenExpiresAt, sql`now()`),
        ),
      )
      .returning();
    return row;
  }

  /** Makes a used token usable again. */
  async releaseEnrolmentToken(registrationId: string): Promise<void> {
    await this.db.update(zeroTouchRegistrations).set({ enrolmentTokenUsedAt: null }).where(eq(zeroTouchRegistrations.id, registrationId));
  }
}
