/**
 * Sites whose device-facing work runs on an edge worker at the site: the task queue each such site
 * has, and the activities that run there. Everything else (the CA and key custody, the registry's
 * and the audit trail's bookkeeping, alerts) stays on the central queue.
 *
 * Site names are unique per tenant, not per installation, so the queue names both:
 * `<task queue>/sites/<tenant>/<site>`. Neither a tenant nor a site id may hold a `/`, so every
 * queue name says exactly which site it serves.
 */

/** The task queue an edge worker of `site` polls, beside the installation's central queue. */
export function siteTaskQueue(taskQueue: string, tenantId: string, site: string): string {
  return `${taskQueue}/sites/${tenantId}/${site}`;
}

/** A site an edge worker serves, as `WORKER_SITES` names it. */
export interface WorkerSite {
  tenantId: string;
  site: string;
}

/** The tenant of a `WORKER_SITES` entry that names only a site: the installation's first tenant. */
export const defaultWorkerSiteTenant = 'default';

/**
 * The activities an edge worker runs: each talks to devices on the site's network. Identification
 * reads the registry and the firmware catalogue too, which an edge worker reaches like any worker.
 */
export const siteWorkerActivities = [
  // provisionDevice's device steps
  'identifyDevice',
  'authenticateDevice',
  'requestCertificateSigning',
  'installDeviceCertificate',
  'pushDeviceConfiguration',
  // ...and its push of a configuration prepared and signed centrally
  'pushPreparedDeviceConfiguration',
  'runDeviceSelfTest',
  'activateDevice',
  // health sweeps and discovery sweeps
  'probeSiteDevices',
  'runDiscoveryScanner',
  // credential rotation's device step
  'rotateManagementSecrets',
  // decommissioning's device step
  'removeDeviceManagementAccess',
  // certificate renewal's device steps (besides the CSR and the install above): the handshake check
  'verifyPresentedCertificate',
  // configuration rollouts and drift checks
  'applyDeviceConfiguration',
  'applyPreparedDeviceConfiguration',
  'checkDeviceDrift',
] as const;
export type SiteWorkerActivity = (typeof siteWorkerActivities)[number];
