/**
 * The device registry: what each device is and where it stands in its lifecycle. Serial numbers
 * and MAC addresses are unique per tenant, so one physical device is never two registry entries.
 */
import { and, asc, eq, gt, inArray, isNotNull, or, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { devices, type DeviceRow } from '../db/schema';
import type { DeviceIdentity } from '../adapters/device-adapter';
import type { DeviceDescriptor } from '../contracts/provisioning';
import { ConflictError, NotFoundError } from '../foundation/errors';

/** A device as the registry records it. */
export type RegisteredDevice = DeviceRow;
export type LifecycleState = RegisteredDevice['lifecycleState'];
export const lifecycleStates: readonly LifecycleState[] = ['registered', 'provisioning', 'provisioned', 'active', 'failed', 'decommissioned'];
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

  async find(tenantId: string, deviceId: string): Promise<RegisteredDevice | undefined> {
    const [row] = await this.db
      .select()
      .from(devices)
      .where(and(eq(devices.tenantId, tenantId), eq(devices.deviceId, deviceId)));
    return row;
  }

  async get(tenantId: string, deviceId: string): Promise<RegisteredDevice> {
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

  /** The registered devices among `deviceIds`, in no particular order; ids nobody registered are left out. */
  async findMany(tenantId: string, deviceIds: readonly string[]): Promise<RegisteredDevice[]> {
    const rows: RegisteredDevice[] = [];
    // In chunks, so a long list stays within the database's limit on query parameters.
    for (let start = 0; start < deviceIds.length; start += 500) {
      const chunk = deviceIds.slice(start, start + 500);
      rows.push(...(await this.db.select().from(devices).where(and(eq(devices.tenantId, tenantId), inArray(devices.deviceId, chunk)))));
    }
    return rows;
  }

  /** The devices at a site that speak `protocol`, by device id, at most `limit`. */
  listAtSite(tenantId: string, site: string, protocol: string, limit: number): Promise<RegisteredDevice[]> {
    return this.db
      .select()
      .from(devices)
      .where(and(eq(devices.tenantId, tenantId), eq(devices.site, site), eq(devices.protocol, protocol)))
      .orderBy(asc(devices.deviceId))
      .limit(limit);
  }

  /** A page of the ids of devices running a configuration of ours, in order, after `after`. */
  async listConfigured(tenantId: string, page: { after?: string; limit: number }): Promise<string[]> {
    const rows = await this.db
      .select({ deviceId: devices.deviceId })
      .from(devices)
      .where(
        and(
          eq(devices.tenantId, tenantId),
          isNotNull(devices.configurationTemplate),
          isNotNull(devices.configurationVersion),
          ...(page.after !== undefined ? [gt(devices.deviceId, page.after)] : []),
        ),
      )
      .orderBy(asc(devices.deviceId))
      .limit(page.limit);
    return rows.map((row) => row.deviceId);
  }

  /** Every tenant with a registered device. */
  async tenants(): Promise<string[]> {
    const rows = await this.db.selectDistinct({ tenantId: devices.tenantId }).from(devices);
    return rows.map((row) => row.tenantId);
  }

  /** How many devices each tenant has in each lifecycle state (states without devices left out). */
  countByLifecycleState(): Promise<{ tenantId: string; lifecycleState: LifecycleState; count: number }[]> {
    return this.db
      .select({ tenantId: devices.tenantId, lifecycleState: devices.lifecycleState, count: sql<number>`count(*)::int` })
      .from(devices)
      .groupBy(devices.tenantId, devices.lifecycleState);
  }

  /** How many devices of each tenant run each template version; null for devices configured by nothing of ours. */
  countByConfiguration(): Promise<{ tenantId: string; templateId: string | null; version: number | null; count: number }[]> {
    return this.db
      .select({
        tenantId: devices.tenantId,
        templateId: devices.configurationTemplate,
        version: devices.configurationVersion,
        count: sql<number>`count(*)::int`,
      })
      .from(devices)
      .groupBy(devices.tenantId, devices.configurationTemplate, devices.configurationVersion);
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
  async register(tenantId: string, device: DeviceDescriptor): Promise<RegisteredDevice> {
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

  async recordIdentity(tenantId: string, deviceId: string, identity: DeviceIdentity): Promise<RegisteredDevice> {
    return this.update(tenantId, deviceId, {
      manufacturer: identity.manufacturer,
      model: identity.model,
      firmwareVersion: identity.firmwareVersion,
      firmwareHash: identity.firmwareHash ?? null,
      factoryCertificateFingerprint: identity.presentedCertificateFingerprint ?? null,
      lifecycleState: 'provisioning',
    });
  }

  /**
   * Marks the device decommissioned, kept for the record; marking it again keeps the first time and
   * reason, so a repeated or resumed decommissioning changes nothing.
   */
  async markDecommissioned(tenantId: string, deviceId: string, reason: string): Promise<RegisteredDevice> {
    const device = await this.get(tenantId, deviceId);
    if (device.lifecycleState === 'decommissioned' && device.decommissionedAt) return device;
    return this.update(tenantId, deviceId, { lifecycleState: 'decommissioned', decommissionedAt: new Date(), decommissionReason: reason });
  }

  /** Records that `newDeviceId` took the place of `oldDeviceId` (RMA), on both devices. */
  async recordReplacement(tenantId: string, oldDeviceId: string, newDeviceId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      for (const [deviceId, changes] of [
        [oldDeviceId, { replacedBy: newDeviceId }],
        [newDeviceId, { replacementOf: oldDeviceId }],
      ] as const) {
        const [row] = await tx
          .update(devices)
          .set({ ...changes, updatedAt: new Date() })
          .where(and(eq(devices.tenantId, tenantId), eq(devices.deviceId, deviceId)))
          .returning({ deviceId: devices.deviceId });
        if (!row) throw new NotFoundError(`device ${deviceId} is not registered`);
      }
    });
  }

  update(tenantId: string, deviceId: string, changes: Partial<typeof devices.$inferInsert>): Promise<RegisteredDevice> {
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
