/**
 * Looks after one device's certificate for as long as the device has one: sleeps durably until
 * the renewal time, has the device make a new key and CSR, issues, installs, checks that the
 * device now presents the new certificate in a real handshake, and only then revokes the old one.
 * A device that is offline is retried with growing pauses for as long as it takes; when the old
 * certificate's validity runs out first, the alert turns critical. Each renewal continues as new,
 * so the history stays short however many years the device lives.
 */
import {
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { CertificateLifecycleActivities } from '../activities/certificate-lifecycle';
import type { ProvisioningActivities } from '../activities/provisioning';
import { nonRetryableErrorTypes } from '../foundation/errors';
import {
  certificateReplacedSignal,
  renewNowSignal,
  renewalStatusQuery,
  type CertificateRenewalInput,
  type RenewableCertificate,
  type RenewalStatus,
} from '../contracts/certificates';
import { describeFailure, failureType } from './failures';
import { deviceSiteTaskQueue, onSiteQueue } from './site-routing';

/**
 * A device call (the CSR, the install, the handshake that shows the new certificate): a short burst
 * of retries; the workflow's own backoff covers long outages. On a site served by an edge worker,
 * the device is reached from the site, by that worker.
 */
const onDevice = (siteTaskQueue: string | undefined) =>
  proxyActivities<ProvisioningActivities & CertificateLifecycleActivities>(
    onSiteQueue(
      {
        startToCloseTimeout: '45s',
        heartbeatTimeout: '10s',
        retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 4, nonRetryableErrorTypes },
      },
      siteTaskQueue,
    ),
  );

/** Signing and bookkeeping: only transiently unavailable. */
const certificateAuthority = proxyActivities<ProvisioningActivities & CertificateLifecycleActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 20, nonRetryableErrorTypes },
});

const firstRetryPauseMs = 15 * 60 * 1000;
const longestRetryPauseMs = 24 * 60 * 60 * 1000;

/** Errors after which a certificate issued for the attempt cannot be used: the next attempt starts with a new CSR. */
const pendingCertificateUnusable = new Set(['ConfigurationRejectedError', 'BadCsrError', 'IdentityMismatchError', 'NotImplementedError']);

export async function renewDeviceCertificate(input: CertificateRenewalInput): Promise<RenewalStatus> {
  const { tenantId, deviceId } = input;
  const certificate = input.certificate;
  const renewAtMs = renewalTime(certificate, input.renewAtFraction);
  let replacement: RenewableCertificate | undefined;
  let renewNowReason: string | undefined;

  const status: RenewalStatus = {
    tenantId,
    deviceId,
    state: 'waiting',
    certificate,
    renewAt: new Date(renewAtMs).toISOString(),
    failedAttempts: 0,
    completedRenewals: input.completedRenewals ?? 0,
  };
  setHandler(renewalStatusQuery, () => status);
  setHandler(certificateReplacedSignal, (newer) => {
    // Only a newer certificate replaces the one looked after; a late or repeated signal is ignored.
    if (newer.certificateId !== certificate.certificateId && Date.parse(newer.issuedAt) >= Date.parse(certificate.issuedAt)) {
      replacement = newer;
    }
  });
  setHandler(renewNowSignal, ({ reason }) => {
    renewNowReason = reason;
  });

  const continueWith = (next: RenewableCertificate, completedRenewals = status.completedRenewals) =>
    continueAsNew<typeof renewDeviceCertificate>({ ...input, certificate: next, completedRenewals });

  const waitMs = renewAtMs - Date.now();
  if (waitMs > 0) await condition(() => replacement !== undefined || renewNowReason !== undefined, waitMs);
  if (replacement) return continueWith(replacement);

  /** Issued in an earlier attempt and not yet in use: installing it again beats asking for a new key. */
  let pending: RenewableCertificate | undefined;
  for (let attempt = 1; ; attempt++) {
    status.state = 'renewing';
    status.nextAttemptAt = undefined;
    const check = await certificateAuthority.certificateForRenewal({ tenantId, deviceId, certificateId: certificate.certificateId });
    if (check.state === 'replaced' && check.current) return continueWith(check.current);
    if (check.state !== 'current') {
      status.state = 'stopped';
      status.stoppedBecause = check.reason;
      if (pending) await discard(pending);
      await certificateAuthority.resolveRenewalAlert({ tenantId, deviceId, certificateId: certificate.certificateId });
      return status;
    }

    try {
      // Asked at each attempt: over a device's years the site may gain or lose its edge worker.
      const device = onDevice(await deviceSiteTaskQueue(tenantId, deviceId));
      if (!pending) {
        const { csrPem } = await device.requestCertificateSigning({ tenantId, deviceId });
        const issued = await certificateAuthority.issueDeviceCertificate({
          tenantId,
          deviceId,
          csrPem,
          // One certificate per attempt: a retried activity returns it, a new attempt has a new CSR.
          issuanceKey: `${workflowInfo().workflowId}/${certificate.certificateId}/${attempt}`,
          renewalOf: certificate.certificateId,
        });
        pending = renewable(issued.certificate);
      }
      const renewed = pending;
      await device.installDeviceCertificate({ tenantId, deviceId, certificateId: renewed.certificateId, checkInstalledFirst: true });
      await device.verifyPresentedCertificate({ tenantId, deviceId, certificateId: renewed.certificateId });
      await certificateAuthority.revokeDeviceCertificate({ certificateId: certificate.certificateId, reason: 'superseded' });
      await certificateAuthority.resolveRenewalAlert({ tenantId, deviceId, certificateId: certificate.certificateId });
      return continueWith(renewed, status.completedRenewals + 1);
    } catch (error) {
      if (isCancellation(error)) throw error;
      status.failedAttempts = attempt;
      status.lastError = describeFailure(error);
      if (pending && pendingCertificateUnusable.has(failureType(error))) {
        await discard(pending);
        pending = undefined;
      }
      const now = Date.now();
      const expiresAtMs = Date.parse(certificate.expiresAt);
      await certificateAuthority.raiseRenewalAlert({
        tenantId,
        deviceId,
        certificateId: certificate.certificateId,
        expiresAt: certificate.expiresAt,
        windowClosed: now >= expiresAtMs,
        failedAttempts: attempt,
        lastError: status.lastError,
      });
      // Wake at the certificate's expiry if that comes first, so the alert turns critical on time.
      let pauseMs = Math.min(firstRetryPauseMs * 2 ** Math.min(attempt - 1, 10), longestRetryPauseMs);
      if (expiresAtMs > now) pauseMs = Math.min(pauseMs, expiresAtMs - now);
      status.state = 'retrying';
      status.nextAttemptAt = new Date(now + pauseMs).toISOString();
      renewNowReason = undefined;
      await condition(() => replacement !== undefined || renewNowReason !== undefined, pauseMs);
      // Set by the signal handler while waiting (the compiler cannot see that).
      const newer = replacement as RenewableCertificate | undefined;
      if (newer) {
        if (pending && pending.certificateId !== newer.certificateId) await discard(pending);
        return continueWith(newer);
      }
    }
  }

  /** A certificate issued for an attempt that will not be used must not stay valid. */
  async function discard(unused: RenewableCertificate) {
    await CancellationScope.nonCancellable(() =>
      certificateAuthority.revokeUnusedRenewal({ tenantId, deviceId, certificateId: unused.certificateId }),
    );
  }
}

function renewalTime(certificate: RenewableCertificate, fraction: number): number {
  const issued = Date.parse(certificate.issuedAt);
  const expires = Date.parse(certificate.expiresAt);
  return issued + (expires - issued) * fraction;
}

function renewable(info: { certificateId: string; serialNumber: string; issuedAt: string; expiresAt: string }): RenewableCertificate {
  return { certificateId: info.certificateId, serialNumber: info.serialNumber, issuedAt: info.issuedAt, expiresAt: info.expiresAt };
}
