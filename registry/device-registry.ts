/**
 * The device registry: what each device is and where it stands in its lifecycle. Serial numbers
 * and MAC addresses are unique per tenant, so one physical device is never two registry entries.
 */
import { and, asc, eq, gt, inArray, isNotNull, lte, ne, or, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client';
import { insertInBatches } from '../db/row-transfer';
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

export interface FirmwareCount {
  manufacturer: string | null;
  model: string | null;
  firmwareVersion: string | null;
  firmwareStatus: RegisteredDevice['firmwareStatus'];
  count: number;
}

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

/** What the inventory filters on; every filter narrows, none widens. */
export interface InventoryFilters {
  site?: string;
  protocol?: string;
  deviceType?: string;
  /** A lifecycle state, or `offline`: an active device the health sweeps find offline. */
  state?: LifecycleState | 'offline';
  health?: RegisteredDevice['health'];
  firmwareStatus?: RegisteredDevice['firmwareStatus'];
  vendor?: string;
  model?: string;
  /** Devices whose active certificate expires within this many days (already expired included). */
  certificateExpiringWithinDays?: number;
  /** Free text, case-insensitive, within the name, serial number, MAC address or address. */
  q?: string;
}

export type InventorySort = 'deviceId' | 'site';

/** Where a page of the inventory ends: the sort key and device id of its last device. */
export interface InventoryPosition {
  key: string;
  deviceId: string;
}

/** The expression the trigram index `devices_search_idx` is built on: the search must use it verbatim. */
const searchText = sql`lower(coalesce(${devices.name}, '') || ' ' || ${devices.serialNumber} || ' ' || ${devices.macAddress} || ' ' || ${devices.address})`;

function likePattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export class DeviceRegistry {
  /** Every step of every run reads its device: the query is built once, not per call. */
  readonly #findDevice;

  constructor(private readonly db: Database) {
    this.#findDevice = db
      .select()
      .from(devices)
      .where(and(eq(devices.tenantId, sql.placeholder('tenantId')), eq(devices.deviceId, sql.placeholder('deviceId'))))
      .prepare('registry_find_device');
  }

  async find(tenantId: string, deviceId: string): Promise<RegisteredDevice | undefined> {
    const [row] = await this.#findDevice.execute({ tenantId, deviceId });
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
    return this.pageOfIds(tenantId, [isNotNull(devices.configurationTemplate), isNotNull(devices.configurationVersion)], page);
  }

  /** A page of the tenant's devices that pass every filter, in `sort` order (device id breaking ties), after `after`. */
  async search(
    tenantId: string,
    filters: InventoryFilters,
    page: { limit: number; sort?: InventorySort; after?: InventoryPosition },
  ): Promise<{ items: RegisteredDevice[]; next?: InventoryPosition }> {
    const sortColumn = page.sort === 'site' ? devices.site : devices.deviceId;
    const conditions = [eq(devices.tenantId, tenantId), ...inventoryConditions(filters)];
    if (page.after) {
      const { key, deviceId } = page.after;
      // A row comparison, which the (tenant, site, device id) index serves as one range.
      conditions.push(page.sort === 'site' ? sql`(${devices.site}, ${devices.deviceId}) > (${key}, ${deviceId})` : gt(devices.deviceId, deviceId));
    }
    const rows = await this.db
      .select()
      .from(devices)
      .where(and(...conditions))
      .orderBy(asc(sortColumn), asc(devices.deviceId))
      .limit(page.limit + 1);
    const items = rows.slice(0, page.limit);
    const last = rows.length > page.limit ? items[items.length - 1] : undefined;
    return {
      items,
      ...(last ? { next: { key: page.sort === 'site' ? last.site : last.deviceId, deviceId: last.deviceId } } : {}),
    };
  }

  /** A page of the active devices at a site, by device id, after `after`: what a health sweep probes. */
  listActiveAtSite(tenantId: string, site: string, page: { after?: string; limit: number }): Promise<RegisteredDevice[]> {
    return this.db
      .select()
      .from(devices)
      .where(
        and(
          eq(devices.tenantId, tenantId),
          eq(devices.site, site),
          eq(devices.lifecycleState, 'active'),
          ...(page.after !== undefined ? [gt(devices.deviceId, page.after)] : []),
        ),
      )
      .orderBy(asc(devices.deviceId))
      .limit(page.limit);
  }

  /** The sites with active devices, per tenant (one tenant's when given): where health sweeps run. */
  async sitesWithActiveDevices(tenantId?: string): Promise<{ tenantId: string; site: string }[]> {
    return this.db
      .selectDistinct({ tenantId: devices.tenantId, site: devices.site })
      .from(devices)
      .where(and(eq(devices.lifecycleState, 'active'), ...(tenantId !== undefined ? [eq(devices.tenantId, tenantId)] : [])))
      .orderBy(asc(devices.tenantId), asc(devices.site));
  }

  /** What a health probe learnt about a device: its liveness, failures in a row, uptime and last reboot. */
  recordHealth(
    tenantId: string,
    deviceId: string,
    health: Pick<RegisteredDevice, 'health' | 'healthCheckedAt' | 'consecutiveProbeFailures'> &
      Partial<Pick<RegisteredDevice, 'healthChangedAt' | 'uptimeSeconds' | 'lastRebootAt'>>,
  ): Promise<RegisteredDevice> {
    return this.update(tenantId, deviceId, health);
  }

  /** How many active devices each tenant has in each health state (states without devices left out). */
  countActiveByHealth(): Promise<{ tenantId: string; health: RegisteredDevice['health']; count: number }[]> {
    return this.db
      .select({ tenantId: devices.tenantId, health: devices.health, count: sql<number>`count(*)::int` })
      .from(devices)
      .where(eq(devices.lifecycleState, 'active'))
      .groupBy(devices.tenantId, devices.health);
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

  /** Records the firmware the device reports and the verdict on it against the tenant's catalogue. */
  recordFirmwareVerdict(
    tenantId: string,
    deviceId: string,
    judged: { firmwareVersion: string; firmwareHash: string | null; status: RegisteredDevice['firmwareStatus']; verdict: Record<string, unknown> },
  ): Promise<void> {
    return this.change(tenantId, deviceId, {
      firmwareVersion: judged.firmwareVersion,
      firmwareHash: judged.firmwareHash,
      firmwareStatus: judged.status,
      firmwareVerdict: judged.verdict,
    });
  }

  /** How many of the tenant's devices run each vendor, model and firmware version, per verdict. */
  countByFirmware(tenantId: string): Promise<FirmwareCount[]> {
    return this.db
      .select({
        manufacturer: devices.manufacturer,
        model: devices.model,
        firmwareVersion: devices.firmwareVersion,
        firmwareStatus: devices.firmwareStatus,
        count: sql<number>`count(*)::int`,
      })
      .from(devices)
      .where(and(eq(devices.tenantId, tenantId), ne(devices.lifecycleState, 'decommissioned')))
      .groupBy(devices.manufacturer, devices.model, devices.firmwareVersion, devices.firmwareStatus)
      .orderBy(asc(devices.manufacturer), asc(devices.model), asc(devices.firmwareVersion), asc(devices.firmwareStatus));
  }

  /** A page, by device id after `after`, of the tenant's devices whose firmware verdict is one of `statuses`. */
  listByFirmwareStatus(
    tenantId: string,
    statuses: readonly RegisteredDevice['firmwareStatus'][],
    page: { after?: string; limit: number },
  ): Promise<RegisteredDevice[]> {
    return this.db
      .select()
      .from(devices)
      .where(
        and(
          eq(devices.tenantId, tenantId),
          inArray(devices.firmwareStatus, [...statuses]),
          ne(devices.lifecycleState, 'decommissioned'),
          ...(page.after !== undefined ? [gt(devices.deviceId, page.after)] : []),
        ),
      )
      .orderBy(asc(devices.deviceId))
      .limit(page.limit);
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
  async register(tenantId: string, device: DeviceDescriptor, metadata?: Record<string, unknown>): Promise<RegisteredDevice> {
    const kept = metadata ? { metadata: metadataOf(metadata) } : {};
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
        ...kept,
      });
    }
    const conflicts = await this.conflictsWith(tenantId, device);
    if (conflicts.length > 0) throw registryConflictError(conflicts);
    try {
      const [row] = await this.db
        .insert(devices)
        .values({ tenantId, ...device, name: device.name ?? null, ...kept })
        .returning();
      return row;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      // Another registration won the race: re-run the checks against what it wrote.
      return this.register(tenantId, device, metadata);
    }
  }

  /** Writes many devices at once, as they are (a fleet brought over from elsewhere, a benchmark's); no checks beyond the database's. */
  async insertMany(rows: (typeof devices.$inferInsert)[]): Promise<void> {
    await insertInBatches(this.db, devices, rows);
  }

  /** The device now uses this certificate (installed by provisioning or a renewal, or enrolled over EST). */
  useCertificate(tenantId: string, deviceId: string, certificate: { id: string; expiresAt: Date }): Promise<void> {
    return this.change(tenantId, deviceId, { activeCertificateId: certificate.id, certificateExpiresAt: certificate.expiresAt });
  }

  recordIdentity(tenantId: string, deviceId: string, identity: DeviceIdentity): Promise<void> {
    return this.change(tenantId, deviceId, {
      manufacturer: identity.manufacturer,
      model: identity.model,
      firmwareVersion: identity.firmwareVersion,
      firmwareHash: identity.firmwareHash ?? null,
      factoryCertificateFingerprint: identity.presentedCertificateFingerprint ?? null,
      lifecycleState: 'provisioning',
    });
  }

  /** Notes that the device's per-device management secrets were replaced at `at`. */
  markCredentialsRotated(tenantId: string, deviceId: string, at: Date): Promise<RegisteredDevice> {
    return this.update(tenantId, deviceId, { credentialsRotatedAt: at });
  }

  /**
   * A page of the ids of active devices speaking one of `protocols` whose management secrets were
   * last set (rotated, or else made at activation) before `dueBefore`, in order, after `after`.
   */
  async listDueForCredentialRotation(
    tenantId: string,
    page: { protocols: readonly string[]; dueBefore: Date; after?: string; limit: number },
  ): Promise<string[]> {
    if (page.protocols.length === 0) return [];
    const lastSet = sql`coalesce(${devices.credentialsRotatedAt}, ${devices.activatedAt}, ${devices.createdAt})`;
    return this.pageOfIds(
      tenantId,
      [
        eq(devices.lifecycleState, 'active'),
        inArray(devices.protocol, [...page.protocols]),
        sql`${lastSet} < ${page.dueBefore.toISOString()}::timestamptz`,
      ],
      page,
    );
  }

  /** Ids of the tenant's devices meeting `conditions`, in order, `limit` after `after`. */
  private async pageOfIds(tenantId: string, conditions: SQL[], page: { after?: string; limit: number }): Promise<string[]> {
    const rows = await this.db
      .select({ deviceId: devices.deviceId })
      .from(devices)
      .where(and(eq(devices.tenantId, tenantId), ...conditions, ...(page.after !== undefined ? [gt(devices.deviceId, page.after)] : [])))
      .orderBy(asc(devices.deviceId))
      .limit(page.limit);
    return rows.map((row) => row.deviceId);
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

  /**
   * As `update`, for callers that need nothing back (each step of a run): only the id is read back,
   * to know the device is there; reading the whole row back cost a third of the write.
   */
  async change(tenantId: string, deviceId: string, changes: Partial<typeof devices.$inferInsert>): Promise<void> {
    const [row] = await this.db
      .update(devices)
      .set({ ...changes, updatedAt: new Date() })
      .where(and(eq(devices.tenantId, tenantId), eq(devices.deviceId, deviceId)))
      .returning({ id: devices.id });
    if (!row) throw new NotFoundError(`device ${deviceId} is not registered`);
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

function inventoryConditions(filters: InventoryFilters) {
  const conditions = [];
  if (filters.site !== undefined) conditions.push(eq(devices.site, filters.site));
  if (filters.protocol !== undefined) conditions.push(eq(devices.protocol, filters.protocol));
  if (filters.deviceType !== undefined) conditions.push(eq(devices.deviceType, filters.deviceType));
  if (filters.state === 'offline') conditions.push(eq(devices.lifecycleState, 'active'), eq(devices.health, 'offline'));
  else if (filters.state !== undefined) conditions.push(eq(devices.lifecycleState, filters.state));
  if (filters.health !== undefined) conditions.push(eq(devices.health, filters.health));
  if (filters.firmwareStatus !== undefined) conditions.push(eq(devices.firmwareStatus, filters.firmwareStatus));
  if (filters.vendor !== undefined) conditions.push(sql`lower(${devices.manufacturer}) = ${filters.vendor.toLowerCase()}`);
  if (filters.model !== undefined) conditions.push(sql`lower(${devices.model}) = ${filters.model.toLowerCase()}`);
  if (filters.certificateExpiringWithinDays !== undefined) {
    conditions.push(lte(devices.certificateExpiresAt, new Date(Date.now() + filters.certificateExpiringWithinDays * 86_400_000)));
  }
  if (filters.q) conditions.push(sql`${searchText} like ${likePattern(filters.q)}`);
  return conditions;
}

/** What a request said about a device, as text: the API only ever takes string values. */
function metadataOf(metadata: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)]));
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
