/**
 * Pushing a configuration to a device a site's worker reaches: the configuration is rendered,
 * judged and signed centrally, where the CA's key custody is, and sealed in the vault; the site's
 * worker sends it and records the outcome. A worker away longer than a signature lasts finds it
 * expired: the configuration is prepared again, a bounded number of times. Runs on central workers
 * keep their single push step.
 */
import { CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { ConfigurationActivities } from '../activities/configuration';
import type { PreparedConfigurationRef } from '../activities/configuration-push';
// A plain module with no Node dependencies, so the workflow bundle may include it.
import { nonRetryableErrorTypes } from '../foundation/errors';
import { failureType } from './failures';

/** Marks runs whose pushes through a site's worker are prepared and signed centrally; before, the site's worker signed. */
const preparedCentrally = 'configuration-prepared-centrally';

/** Preparations of one push: each after the one before expired unsent. */
const maximumPreparations = 3;

/** Rendering, signing in custody and sealing: fast, and only transiently unavailable. */
const central = proxyActivities<ConfigurationActivities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes },
});

/** Whether a push to a device on `siteTaskQueue` is prepared centrally (never for a device reached centrally). */
export function preparesCentrally(siteTaskQueue: string | undefined): boolean {
  return siteTaskQueue !== undefined && patched(preparedCentrally);
}

export interface PreparationRequest {
  tenantId: string;
  deviceId: string;
  templateId: string;
  /** Absent in provisioning runs planned before versions were pinned: the current one. */
  version?: number;
  requestedBy?: string;
}

/**
 * Prepares the configuration centrally and hands its reference to `push`, the site's activity.
 * A package that will not be sent (a push failed for good, a cancelled run) is discarded.
 */
export async function pushPreparedCentrally<R>(request: PreparationRequest, push: (prepared: PreparedConfigurationRef) => Promise<R>): Promise<R> {
  for (let preparation = 1; ; preparation += 1) {
    const prepared = await central.prepareDeviceConfiguration(request);
    try {
      return await push(prepared);
    } catch (error) {
      if (preparation < maximumPreparations && failureType(error) === 'PreparedConfigurationExpiredError') continue;
      await CancellationScope.nonCancellable(() =>
        central.discardPreparedConfiguration({ tenantId: request.tenantId, deviceId: request.deviceId, reference: prepared.reference }),
      );
      throw error;
    }
  }
}
