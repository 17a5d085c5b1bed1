/**
 * A tenant's firmware at a glance: how many devices run each vendor, model and version, with the
 * verdict each got against the catalogue, and, page by page, the devices on firmware that is not
 * approved (unknown, known bad, or never judged). Decommissioned devices are left out.
 */
import type { DeviceRegistry, FirmwareCount } from '../registry/device-registry';

export type FirmwareReportRow = FirmwareCount;

export interface DeviceOnUnapprovedFirmware {
  deviceId: string;
  name: string | null;
  site: string;
  protocol: string;
  lifecycleState: string;
  manufacturer: string | null;
  model: string | null;
  firmwareVersion: string | null;
  firmwareStatus: string;
  verdict: Record<string, unknown> | null;
}

export interface FirmwareReport {
  tenantId: string;
  totals: { devices: number; approved: number; unknown: number; knownBad: number; unchecked: number };
  firmware: FirmwareReportRow[];
  unapproved: DeviceOnUnapprovedFirmware[];
  /** Continues the list of devices on unapproved firmware. */
  next?: string;
}

const unapproved = ['unknown', 'known_bad', 'unchecked'] as const;

export class FirmwareReports {
  constructor(private readonly registry: DeviceRegistry) {}

  async report(tenantId: string, page: { after?: string; limit: number }): Promise<FirmwareReport> {
    const [firmware, devices] = await Promise.all([
      this.registry.countByFirmware(tenantId),
      this.registry.listByFirmwareStatus(tenantId, unapproved, { after: page.after, limit: page.limit + 1 }),
    ]);
    const total = (status: FirmwareCount['firmwareStatus']) =>
      firmware.filter((row) => row.firmwareStatus === status).reduce((sum, row) => sum + row.count, 0);
    const shown = devices.slice(0, page.limit);
    return {
      tenantId,
      totals: {
        devices: firmware.reduce((sum, row) => sum + row.count, 0),
        approved: total('approved'),
        unknown: total('unknown'),
        knownBad: total('known_bad'),
        unchecked: total('unchecked'),
      },
      firmware,
      unapproved: shown.map((device) => ({
        deviceId: device.deviceId,
        name: device.name,
        site: device.site,
        protocol: device.protocol,
        lifecycleState: device.lifecycleState,
        manufacturer: device.manufacturer,
        model: device.model,
        firmwareVersion: device.firmwareVersion,
        firmwareStatus: device.firmwareStatus,
        verdict: device.firmwareVerdict ?? null,
      })),
      ...(devices.length > page.limit ? { next: shown.at(-1)!.deviceId } : {}),
    };
  }
}
