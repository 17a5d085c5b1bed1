/** Where a site's device-facing work runs, asked by the workflows that are not told when they start. */
import type { SiteWorkers } from '../discovery/site-workers';
import type { DeviceRegistry } from '../registry/device-registry';

export function createSiteRoutingActivities(deps: { sites: Pick<SiteWorkers, 'deviceTaskQueue'>; registry: Pick<DeviceRegistry, 'find'> }) {
  return {
    /** The site's own task queue when an edge worker serves it; null when its work runs centrally. */
    async siteDeviceTaskQueue(input: { tenantId: string; site: string }): Promise<string | null> {
      return (await deps.sites.deviceTaskQueue(input.tenantId, input.site)) ?? null;
    },

    /** As `siteDeviceTaskQueue`, for the site the registry places the device at; null for a device it does not know. */
    async deviceSiteTaskQueue(input: { tenantId: string; deviceId: string }): Promise<string | null> {
      const device = await deps.registry.find(input.tenantId, input.deviceId);
      return device ? ((await deps.sites.deviceTaskQueue(input.tenantId, device.site)) ?? null) : null;
    },
  };
}

export type SiteRoutingActivities = ReturnType<typeof createSiteRoutingActivities>;
