/** Where a site's device-facing work runs, asked by the sweeps before they reach the site's devices. */
import type { SiteWorkers } from '../discovery/site-workers';

export function createSiteRoutingActivities(deps: { sites: Pick<SiteWorkers, 'deviceTaskQueue'> }) {
  return {
    /** The site's own task queue when an edge worker serves it; null when its work runs centrally. */
    async siteDeviceTaskQueue(input: { tenantId: string; site: string }): Promise<string | null> {
      return (await deps.sites.deviceTaskQueue(input.tenantId, input.site)) ?? null;
    },
  };
}

export type SiteRoutingActivities = ReturnType<typeof createSiteRoutingActivities>;
