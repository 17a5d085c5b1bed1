/**
 * One CRL publication round, started by the CRL schedule: every CA that is not revoked (or was
 * revoked recently enough that relying parties may still ask) signs a fresh CRL, so none passes
 * its nextUpdate even when nothing was revoked. Revocations publish at once besides.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { CertificateLifecycleActivities } from '../activities/certificate-lifecycle';

const publication = proxyActivities<CertificateLifecycleActivities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '2m', maximumAttempts: 5 },
});

export async function publishCrls(): Promise<{ published: number }> {
  return publication.publishAllCrls();
}
