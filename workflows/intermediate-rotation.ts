/**
 * Rotates a site's intermediate CA as one tracked job: a new intermediate (new key) takes over
 * issuing, the old one is retired but stays valid, every device still on it is asked to renew
 * (through its own renewal workflow, so each re-issue is the same durable renew-install-verify-
 * revoke), and once none is left (or the overlap window ends) the old intermediate is revoked.
 */
import { proxyActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { CertificateLifecycleActivities } from '../activities/certificate-lifecycle';
import { nonRetryableErrorTypes } from '../foundation/errors';
import { rotationProgressQuery, type IntermediateRotationInput, type IntermediateRotationProgress } from '../contracts/certificates';

const certificateAuthority = proxyActivities<CertificateLifecycleActivities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes },
});

/** Devices asked to renew per activity: bounded so one activity's input and result stay small. */
const pageSize = 200;
const defaultProgressCheckSeconds = 300;

export async function rotateSiteIntermediate(
  input: IntermediateRotationInput & { progressCheckSeconds?: number },
): Promise<IntermediateRotationProgress> {
  const { tenantId, site } = input;
  const progress: IntermediateRotationProgress = {
    tenantId,
    site,
    state: 'rotating',
    devicesTotal: 0,
    devicesRemaining: 0,
    startedAt: new Date().toISOString(),
    notRenewable: [],
  };
  setHandler(rotationProgressQuery, () => progress);

  const rotated = await certificateAuthority.rotateSiteIntermediate({
    tenantId,
    site,
    rotationKey: workflowInfo().workflowId,
    requestedBy: input.requestedBy,
  });
  progress.previousCertificateId = rotated.previousCertificateId;
  progress.currentCertificateId = rotated.currentCertificateId;
  const overlapEndsMs = Date.now() + input.overlapDays * 24 * 60 * 60 * 1000;
  progress.overlapEndsAt = new Date(overlapEndsMs).toISOString();
  progress.state = 'reissuing';

  const { remaining } = await certificateAuthority.countDevicesOnCa({ caCertificateId: rotated.previousCertificateId });
  progress.devicesTotal = remaining;
  progress.devicesRemaining = remaining;

  let after: string | undefined;
  for (;;) {
    const { devices } = await certificateAuthority.devicesOnCa({ caCertificateId: rotated.previousCertificateId, limit: pageSize, after });
    if (devices.length === 0) break;
    const { failed } = await certificateAuthority.requestRenewals({
      tenantId,
      devices,
      reason: `the intermediate CA of site ${site} was rotated`,
    });
    progress.notRenewable.push(...failed);
    after = devices.at(-1)!.certificateId;
  }

  const checkEveryMs = (input.progressCheckSeconds ?? defaultProgressCheckSeconds) * 1000;
  while (progress.devicesRemaining > 0 && Date.now() < overlapEndsMs) {
    await sleep(Math.min(checkEveryMs, overlapEndsMs - Date.now()));
    progress.devicesRemaining = (await certificateAuthority.countDevicesOnCa({ caCertificateId: rotated.previousCertificateId })).remaining;
  }

  await certificateAuthority.revokeRetiredCa({ tenantId, certificateId: rotated.previousCertificateId, requestedBy: input.requestedBy });
  progress.state = progress.devicesRemaining === 0 ? 'completed' : 'overlap-ended';
  progress.completedAt = new Date().toISOString();
  return progress;
}
