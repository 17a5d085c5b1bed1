/**
 * The fleet as operators see it: every device of a tenant with where it stands (lifecycle, health,
 * firmware verdict, certificate, configuration and drift, its runs and open alerts), searchable,
 * paged and exported. Read from the registry and the records beside it, never from Temporal, so the
 * inventory is whole however long ago a device was provisioned.
 */
import type { AlertRow } from '../db/schema';
import type { AlertStore } from '../alerts/alert-store';
import { alertKinds } from '../alerts/alert-store';
import { sheetXlsx, toCsv } from '../bulk/spreadsheet-output';
import { NotFoundError } from '../foundation/errors';
import type { CertificateAuthorityService } from '../pki/certificate-authority';
import type { CertificateInventory, CertificatePins } from '../pki/certificate-inventory';
import type { DeviceRegistry, InventoryFilters, InventoryPosition, InventorySort, RegisteredDevice } from '../registry/device-registry';
import type { ArchivedRun, RunArchive, RunPosition } from '../registry/run-archive';

/** A device as the inventory lists it. */
export interface InventoryDevice {
  deviceId: string;
  name: string | null;
  serialNumber: string;
  macAddress: string;
  address: string;
  protocol: string;
  deviceType: string;
  site: string;
  vendor: string | null;
  model: string | null;
  firmwareVersion: string | null;
  state: RegisteredDevice['lifecycleState'];
  health: RegisteredDevice['health'];
  healthCheckedAt: string | null;
  firmwareStatus: RegisteredDevice['firmwareStatus'];
  certificateExpiresAt: string | null;
  configurationTemplate: string | null;
  configurationVersion: number | null;
  activatedAt: string | null;
  decommissionedAt: string | null;
  metadata: Record<string, string>;
  updatedAt: string;
}

/** One device in full: the inventory's entry and what hangs off it. */
export interface DeviceView extends InventoryDevice {
  firmware: { status: RegisteredDevice['firmwareStatus']; hash: string | null; verdict: Record<string, unknown> | null };
  healthDetail: {
    status: RegisteredDevice['health'];
    checkedAt: string | null;
    changedAt: string | null;
    consecutiveFailures: number;
    uptimeSeconds: number | null;
    lastRebootAt: string | null;
  };
  certificate: {
    id: string;
    serialNumber: string;
    fingerprint: string;
    issuedAt: string;
    expiresAt: string;
    revokedAt: string | null;
    pins: CertificatePins;
  } | null;
  configuration: {
    templateId: string | null;
    version: number | null;
    hash: string | null;
    /** `drifted` while a drift alert about the device is open; `unchecked` for devices we did not configure. */
    drift: 'in-sync' | 'drifted' | 'unchecked';
  };
  lifecycle: {
    decommissionReason: string | null;
    replacedBy: string | null;
    replacementOf: string | null;
    credentialsRotatedAt: string | null;
  };
  lastRun: ArchivedRun | null;
  openAlerts: AlertRow[];
}

/** Columns of the export, in order; each is a field of `InventoryDevice`. */
export const inventoryExportColumns = [
  'deviceId',
  'name',
  'serialNumber',
  'macAddress',
  'address',
  'protocol',
  'deviceType',
  'site',
  'vendor',
  'model',
  'firmwareVersion',
  'state',
  'health',
  'firmwareStatus',
  'certificateExpiresAt',
  'configurationTemplate',
  'configurationVersion',
  'activatedAt',
  'decommissionedAt',
] as const satisfies readonly (keyof InventoryDevice)[];

/** At most this many devices in one export: a larger fleet is exported site by site. */
export const maximumExportRows = 100_000;
const exportPage = 1_000;

const iso = (date: Date | null) => date?.toISOString() ?? null;

export function inventoryDeviceOf(row: RegisteredDevice): InventoryDevice {
  return {
    deviceId: row.deviceId,
    name: row.name,
    serialNumber: row.serialNumber,
    macAddress: row.macAddress,
    address: row.address,
    protocol: row.protocol,
    deviceType: row.deviceType,
    site: row.site,
    vendor: row.manufacturer,
    model: row.model,
    firmwareVersion: row.firmwareVersion,
    state: row.lifecycleState,
    health: row.health,
    healthCheckedAt: iso(row.healthCheckedAt),
    firmwareStatus: row.firmwareStatus,
    certificateExpiresAt: iso(row.certificateExpiresAt),
    configurationTemplate: row.configurationTemplate,
    configurationVersion: row.configurationVersion,
    activatedAt: iso(row.activatedAt),
    decommissionedAt: iso(row.decommissionedAt),
    metadata: row.metadata,
    updatedAt: row.updatedAt.toISOString(),
  };
}

export interface FleetInventoryDependencies {
  registry: Pick<DeviceRegistry, 'search' | 'find'>;
  runArchive: Pick<RunArchive, 'runsOf' | 'lastRunOf'>;
  ca: Pick<CertificateAuthorityService, 'getCertificate'>;
  certificates: Pick<CertificateInventory, 'pinsOf'>;
  alerts: Pick<AlertStore, 'openAbout'>;
}

export class FleetInventory {
  constructor(private readonly deps: FleetInventoryDependencies) {}

  async list(
    tenantId: string,
    filters: InventoryFilters,
    page: { limit: number; sort?: InventorySort; after?: InventoryPosition },
  ): Promise<{ devices: InventoryDevice[]; next?: InventoryPosition }> {
    const { items, next } = await this.deps.registry.search(tenantId, filters, page);
    return { devices: items.map(inventoryDeviceOf), ...(next ? { next } : {}) };
  }

  /** Ids of other tenants are indistinguishable from ids that do not exist. */
  async device(tenantId: string, deviceId: string): Promise<DeviceView> {
    const row = await this.deps.registry.find(tenantId, deviceId);
    if (!row) throw new NotFoundError(`device ${deviceId} not found`);
    const [certificate, lastRun, openAlerts] = await Promise.all([
      row.activeCertificateId ? this.deps.ca.getCertificate(row.activeCertificateId) : undefined,
      this.deps.runArchive.lastRunOf(tenantId, deviceId),
      this.deps.alerts.openAbout(tenantId, deviceId),
    ]);
    const configured = row.configurationTemplate !== null && row.configurationVersion !== null;
    const drifted = openAlerts.some((alert) => alert.kind === alertKinds.configurationDrift);
    return {
      ...inventoryDeviceOf(row),
      firmware: { status: row.firmwareStatus, hash: row.firmwareHash, verdict: row.firmwareVerdict ?? null },
      healthDetail: {
        status: row.health,
        checkedAt: iso(row.healthCheckedAt),
        changedAt: iso(row.healthChangedAt),
        consecutiveFailures: row.consecutiveProbeFailures,
        uptimeSeconds: row.uptimeSeconds,
        lastRebootAt: iso(row.lastRebootAt),
      },
      certificate: certificate
        ? {
            id: certificate.id,
            serialNumber: certificate.serialNumber,
            fingerprint: certificate.fingerprint,
            issuedAt: certificate.issuedAt.toISOString(),
            expiresAt: certificate.expiresAt.toISOString(),
            revokedAt: iso(certificate.revokedAt),
            pins: await this.deps.certificates.pinsOf(certificate),
          }
        : null,
      configuration: {
        templateId: row.configurationTemplate,
        version: row.configurationVersion,
        hash: row.configurationHash,
        drift: drifted ? 'drifted' : configured ? 'in-sync' : 'unchecked',
      },
      lifecycle: {
        decommissionReason: row.decommissionReason,
        replacedBy: row.replacedBy,
        replacementOf: row.replacementOf,
        credentialsRotatedAt: iso(row.credentialsRotatedAt),
      },
      lastRun: lastRun ?? null,
      openAlerts,
    };
  }

  /** The device's runs, newest first, from the archive: every run that has closed, however long ago. */
  async runs(tenantId: string, deviceId: string, page: { limit: number; after?: RunPosition }): Promise<{ runs: ArchivedRun[]; next?: RunPosition }> {
    if (!(await this.deps.registry.find(tenantId, deviceId))) throw new NotFoundError(`device ${deviceId} not found`);
    const { items, next } = await this.deps.runArchive.runsOf(tenantId, deviceId, page);
    return { runs: items, ...(next ? { next } : {}) };
  }

  /** Every device passing the filters (at most `maximumExportRows`), as CSV or an Excel workbook with formula-safe cells. */
  async export(tenantId: string, filters: InventoryFilters, format: 'csv' | 'xlsx'): Promise<Buffer | string> {
    const rows: (string | number | null)[][] = [];
    let after: InventoryPosition | undefined;
    do {
      const page = await this.deps.registry.search(tenantId, filters, { limit: exportPage, ...(after ? { after } : {}) });
      for (const row of page.items) {
        const device = inventoryDeviceOf(row);
        rows.push(inventoryExportColumns.map((column) => device[column]));
      }
      after = page.next;
    } while (after && rows.length < maximumExportRows);
    return format === 'csv' ? toCsv(inventoryExportColumns, rows, { bom: true }) : sheetXlsx('Devices', inventoryExportColumns, rows);
  }
}
