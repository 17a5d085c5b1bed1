/**
 * The activity of a health sweep: probe one page of a site's active devices, a bounded number at
 * once, and record what each answer (or silence) means. A retried page probes the same devices
 * again; only transitions are written, so a retry adds nothing twice.
 */
import { Context } from '@temporalio/activity';
import type { AlertStore } from '../alerts/alert-store';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { SecretVault } from '../custody/secret-vault';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import type { Logger } from '../foundation/logger';
import { judgeProbe, recordProbe, type ProbeOutcome } from '../fleet/device-health';
import type { DeviceHealthEvents } from '../fleet/health-events';
import type { FleetPolicies } from '../fleet/fleet-policies';
import { noHealthSweepCounts, type HealthSweepCounts } from '../contracts/fleet-health';
import { deviceSessions } from './device-sessions';

export interface FleetHealthActivityDependencies {
  registry: DeviceRegistry;
  alerts: AlertStore;
  events: DeviceHealthEvents;
  policies: Pick<FleetPolicies, 'get'>;
  ca: Pick<CertificateAuthorityService, 'getCertificate'> & Pick<ServiceIdentities, 'ensureServiceIdentity'>;
  vault: SecretVault;
  adapterFor: (protocol: string) => DeviceAdapter;
  logger: Logger;
}

export interface HealthSweepPage {
  counts: HealthSweepCounts;
  /** The last device of the page, where the next page starts; absent when the site is done. */
  next?: string;
}

export function createFleetHealthActivities(deps: FleetHealthActivityDependencies) {
  const { registry, logger } = deps;
  const { sessionFor } = deviceSessions(deps);

  async function probe(device: RegisteredDevice, adapter: DeviceAdapter): Promise<{ outcome: ProbeOutcome; expected?: string }> {
    try {
      const session = await sessionFor(device);
      // Only a certificate we issued is compared; a device without one pins its factory certificate.
      const expected = device.activeCertificateId ? session.pinnedCertificateFingerprint : undefined;
      return { outcome: { answered: true, report: await adapter.probe!(session) }, ...(expected ? { expected } : {}) };
    } catch (error) {
      return { outcome: { answered: false, error: error instanceof Error ? error.message.slice(0, 500) : String(error) } };
    }
  }

  return {
    /** Probes the page of the site's active devices after `after`, `pageSize` at most. */
    async probeSiteDevices(input: { tenantId: string; site: string; after?: string; pageSize: number }): Promise<HealthSweepPage> {
      const context = Context.current();
      const raisedBy = context.info.workflowExecution?.workflowId ?? 'health-sweep';
      const policy = await deps.policies.get(input.tenantId);
      const devices = await registry.listActiveAtSite(input.tenantId, input.site, { after: input.after, limit: input.pageSize });
      const counts = noHealthSweepCounts();
      let next = 0;
      const worker = async () => {
        while (next < devices.length) {
          const device = devices[next++]!;
          context.heartbeat({ deviceId: device.deviceId });
          const adapter = deps.adapterFor(device.protocol);
          if (!adapter.probe) {
            counts.unsupported += 1;
            continue;
          }
          const { outcome, expected } = await probe(device, adapter);
          const at = new Date();
          const judgement = judgeProbe(device, outcome, { offlineAfterFailures: policy.offlineAfterFailures, expectedCertificateFingerprint: expected, now: at });
          await recordProbe(deps, device, judgement, {
            at,
            raisedBy,
            offlineAfterFailures: policy.offlineAfterFailures,
            ...(outcome.answered ? {} : { error: outcome.error }),
          });
          counts.probed += 1;
          if (outcome.answered) counts.online += 1;
          else counts.unanswered += 1;
          if (judgement.healthChanged && judgement.health === 'offline') counts.wentOffline += 1;
          if (judgement.healthChanged && judgement.health === 'online' && device.health === 'offline') counts.cameBack += 1;
          if (judgement.rebooted) counts.rebooted += 1;
          if (judgement.certificateMismatch) counts.certificateMismatches += 1;
        }
      };
      await Promise.all(Array.from({ length: Math.min(policy.healthProbeConcurrency, devices.length) }, worker));
      if (counts.wentOffline + counts.cameBack + counts.certificateMismatches > 0) {
        logger.info({ tenantId: input.tenantId, site: input.site, ...counts }, 'health sweep page found changes');
      }
      const last = devices.at(-1);
      return { counts, ...(devices.length === input.pageSize && last ? { next: last.deviceId } : {}) };
    },
  };
}

export type FleetHealthActivities = ReturnType<typeof createFleetHealthActivities>;
