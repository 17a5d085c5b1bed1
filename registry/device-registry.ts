/**
 * The device registry: what each device is and where it stands in its lifecycle. Serial numbers
 * and MAC addresses are unique per tenant, so one physical device is never two registry entries.
 */
import { and, eq, or } from 'drizzle-orm';
import type { Database } from '../db/client';
import { devices, type DeviceRow } from '../db/schema';
import type { DeviceIdentity } from '../adapters/device-adapter';
import type { DeviceDescriptor } from '../workflows/definitions';
import { ConflictError, NotFoundError } from '../foundation/errors';

export type LifecycleState = DeviceRow['lifecycleState'];
/** A device as the registry holds it. */
export type RegisteredDevice = DeviceRow;
/** What identifies a registered device and where it is reached: what new devices are checked against. */
export type DeviceClaims = Pick<DeviceRow, 'deviceId' | 'serialNumber' | 'macAddress' | 'address' | 'protocol' | 'lifecycleState'>;

export interface RegistryConflict {
  deviceId: string;
  field: 'serialNumber' | 'macAddress';
  value: string;
}

function isUniqueViolation(error: unknown): boolean {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: string }).code === '23505') return true;
  }
  return false;
}

export class DeviceRegistry {
  constructor(private readonly db: Database) {}

  async find(tenantId: string, deviceId: string): Promise<DeviceRow | undefined> {
    const [row] = await this.db
      .select()
      .from(devices)
      .where(and(eq(devices.tenantId, tenantId), eq(devices.deviceId, deviceId)));
    return row;
  }

  async get(tenantId: string, deviceId: string): Promise<DeviceRow> {
    const row = await this.find(tenantId, deviceId);
    if (!row) throw new NotFoundError(`device ${deviceId} is not registered`);
    return row;
  }

  /** Every device of the tenant, by what it claims: a file of thousands of devices is checked against one read. */
  async claimsOf(tenantId: string): Promise<DeviceClaims[]> {
    return this.db
      .select({
        deviceId: devices.deviceId,
        serialNumber: devices.serialNumber,
        macAddress: devices.macAddress,
        address: devices.address,
        protocol: devices.protocol,
        lifecycleState: devices.lifecycleState,
      })
      .from(devices)
      .where(eq(devices.tenantId, tenantId));
  }

  /** Every device of the tenant, by device id. */
  async list(tenantId: string): Promise<DeviceRow[]> {
    return this.db.select().from(devices).where(eq(devices.tenantId, tenantId)).orderBy(devices.deviceId);
  }

  /** Other devices of the tenant that already claim this serial number or MAC address. */
  async conflictsWith(tenantId: string, device: Pick<DeviceDescriptor, 'deviceId' | 'serialNumber' | 'macAddress'>) {
    const rows = await this.db
      .select({ deviceId: devices.deviceId, serialNumber: devices.serialNumber, macAddress: devices.macAddress })
      .from(devices)
      .where(
        and(
          eq(devices.tenantId, tenantId),
          or(eq(devices.serialNumber, device.serialNumber), eq(devices.macAddress, device.macAddress)),
        ),
      );
    const conflicts: RegistryConflict[] = [];
    for (const row of rows) {
      if (row.deviceId === device.deviceId) continue;
      if (row.serialNumber === device.serialNumber) {
        conflicts.push({ deviceId: row.deviceId, field: 'serialNumber', value: row.serialNumber });
      }
      if (row.macAddress === device.macAddress) {
        conflicts.push({ deviceId: row.deviceId, field: 'macAddress', value: row.macAddress });
      }
    }
    return conflicts;
  }

  /**
   * Registers the device, or refreshes its address and site if it is already registered under the
   * same id with the same serial and MAC. Anything else is a conflict, never a silent merge.
   */
  async register(tenantId: string, device: DeviceDescriptor): Promise<DeviceRow> {
    const existing = await this.find(tenantId, device.deviceId);
    if (existing) {
      if (existing.serialNumber !== device.serialNumber || existing.macAddress !== device.macAddress) {
        throw new ConflictError(
          `device ${device.deviceId} is registered with serial ${existing.serialNumber} and MAC ${existing.macAddress}`,
        );
      }
      return this.update(tenantId, device.deviceId, {
        address: device.address,
        protocol: device.protocol,
        deviceType: device.deviceType,
        site: device.site,
        name: device.name ?? existing.name,
      });
    }
    const conflicts = await this.conflictsWith(tenantId, device);
    if (conflicts.length > 0) throw registryConflictError(conflicts);
    try {
      const [row] = await this.db
        .insert(devices)
        .values({ tenantId, ...device, name: device.name ?? null })
        .returning();
      return row;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      // Another registration won the race: re-run the checks against what it wrote.
      return this.register(tenantId, device);
    }
  }

  async recordIdentity(tenantId: string, deviceId: string, identity: DeviceIdentity): Promise<DeviceRow> {
    return this.update(tenantId, deviceId, {
      manufacturer: identity.manufacturer,
      model: identity.model,
      firmwareVersion: identity.firmwareVersion,
      firmwareHash: identity.firmwareHash ?? null,
      factoryCertificateFingerprint: identity.presentedCertificateFingerprint ?? null,
      lifecycleState: 'provisioning',
    });
  }

  update(tenantId: string, deviceId: string, changes: Partial<typeof devices.$inferInsert>): Promise<DeviceRow> {
    return this.db
      .update(devices)
      .set({ ...changes, updatedAt: new Date() })
      .where(and(eq(devices.tenantId, tenantId), eq(devices.deviceId, deviceId)))
      .returning()
      .then(([row]) => {
        if (!row) throw new NotFoundError(`device ${deviceId} is not registered`);
        return row;
      });
  }
}

export function registryConflictError(conflicts: RegistryConflict[], fieldPrefix = ''): ConflictError {
  return new ConflictError(
    conflicts.map((c) => `${c.field} ${c.value} already belongs to device ${c.deviceId}`).join('; '),
    {
      fields: conflicts.map((c) => ({
        field: `${fieldPrefix}${c.field}`,
        reason: `already belongs to device ${c.deviceId}`,
      })),
    },
  );
}
