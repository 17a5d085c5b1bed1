/**
 * Provisions one device: identify → approval → authenticate → CSR → issue → install → configure →
 * self-test → activate, the README's step table. Each step is an activity retried durably; a
 * certificate issued along the way is revoked if the run later fails for good or is cancelled.
 * What the run keeps on record about itself (status, metrics, audit, its bulk job) is kept by
 * `ProvisioningRun`.
 */
import { patched, proxyActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import { activityRoute } from './local-first';
import type { ProvisioningActivities } from '../activities/provisioning';
import { deviceCapabilities } from '../adapters/device-adapter';
// A plain module with no Node dependencies, so the workflow bundle may include it.
import { nonRetryableErrorTypes } from '../foundation/errors';
import type { DeviceProvisioningRecord, ProvisionDeviceInput } from '../contracts/provisioning';
import { ProvisioningRun, type StepRoute } from './provisioning-run';
import { onSiteQueue } from './site-routing';
import { preparesCentrally, pushPreparedCentrally } from './prepared-configuration';

/** Marks runs that skip the certificate steps for devices that do not enrol X.509 certificates. */
const certificateEnrolmentByCapability = 'certificate-enrolment-by-capability';
/** Marks runs whose firmware verdict may make them wait for an approver. */
const firmwareApproval = 'firmware-approval';

/**
 * Talking to a device: it may be rebooting or briefly off the network, so keep trying for a while.
 * A site served by an edge worker has these steps on its own queue, waiting there for its worker.
 */
function deviceStepOptions(retryWindowSeconds: number, siteTaskQueue?: string): ActivityOptions {
  return onSiteQueue(
    {
      startToCloseTimeout: '45s',
      heartbeatTimeout: '10s',
      scheduleToCloseTimeout: `${retryWindowSeconds}s`,
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', nonRetryableErrorTypes },
    },
    siteTaskQueue,
  );
}

/** Signing in the HSM and writing to the registry: fast, and only transiently unavailable. */
const certificateAuthorityOptions: ActivityOptions = {
  startToCloseTimeout: '30s',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes },
};

/**
 * How long a step's local attempt may take (see `ProvisionDeviceInput.stepsLocalFirst`): a device
 * answers within a second or two when all is well, and each request to it gives up after ten; a
 * step slower than this is better served by a regular activity's heartbeats. An attempt cut short
 * may still be talking to the device, so the regular one must not start while it plausibly is.
 */
const localDeviceAttempt = '30s';

/** Compensation must eventually happen, so it retries far longer than any forward step. */
const compensation = proxyActivities<ProvisioningActivities>({
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', nonRetryableErrorTypes: ['NotFoundError'] },
});

const defaultDeviceRetryWindowSeconds = 600;

export async function provisionDevice(input: ProvisionDeviceInput): Promise<DeviceProvisioningRecord> {
  const { tenantId, device } = input;
  const { deviceId } = device;
  const info = workflowInfo();
  const deviceRetryWindow = input.options.deviceRetryWindowSeconds ?? defaultDeviceRetryWindowSeconds;
  // A device behind an edge worker is reached from its site's queue only, never from here.
  const localFirst = input.stepsLocalFirst === true && !input.deviceTaskQueue;
  const onDevice = activityRoute<ProvisioningActivities>(deviceStepOptions(deviceRetryWindow, input.deviceTaskQueue), localFirst, localDeviceAttempt);
  const selfTest = activityRoute<ProvisioningActivities>(
    {
      ...deviceStepOptions(deviceRetryWindow, input.deviceTaskQueue),
      // A device applying new settings may fail its first self-tests; a handful of tries is enough.
      retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
    },
    localFirst,
    localDeviceAttempt,
  );
  // Issuing is always a regular activity, even in a run whose other steps run locally: scheduling it
  // puts the steps before it (the CSR above all) on record. A worker that dies after a local CSR
  // but before that record would otherwise have the device make a new key on replay, while the
  // issuance key hands back the certificate of the old one.
  const certificateAuthority: StepRoute = { remote: proxyActivities<ProvisioningActivities>(certificateAuthorityOptions) };

  const run = new ProvisioningRun(input);
  // Undo actions, pushed as each step succeeds and run newest first if the run fails for good.
  const compensations: Array<() => Promise<void>> = [];
  await run.begin();

  try {
    await run.scope.run(async () => {
      const identified = await run.step('identify', onDevice, { tenantId, device, ...(input.metadata ? { metadata: input.metadata } : {}) });

      // Firmware the tenant's policy wants an approver for waits as an approval policy does (one
      // decision covers both); runs recorded before firmware was judged knew only approval policies.
      const approval = patched(firmwareApproval) ? run.firmwareJudged(identified.firmware) : input.approval;
      if (approval) await run.awaitApproval(approval);
      else run.skip('approval');

      await run.step('authenticate', onDevice, { tenantId, deviceId });

      // Card readers and SNMP agents hold keys of their own kind (installed with the configuration),
      // not X.509 certificates; runs recorded before this rule always enrolled one.
      const enrolsCertificate = patched(certificateEnrolmentByCapability)
        ? (identified.capabilities ?? []).includes(deviceCapabilities.certificateEnrolment)
        : true;
      if (input.options.skipCertificateGeneration || !enrolsCertificate) {
        run.skip('generateCsr', 'issueCertificate', 'installCertificate');
      } else {
        const { csrPem } = await run.step('generateCsr', onDevice, { tenantId, deviceId });
        const { certificate } = await run.step('issueCertificate', certificateAuthority, {
          tenantId,
          deviceId,
          csrPem,
          validityDays: input.options.certificateValidityDays,
          // One issuance per run: a retried or replayed activity returns the same certificate.
          issuanceKey: `${info.workflowId}/${info.firstExecutionRunId}`,
        });
        run.certificateIssued(certificate);
        compensations.unshift(async () => {
          await compensation.revokeDeviceCertificate({ certificateId: certificate.certificateId, reason: 'cessationOfOperation' });
          run.certificateRevoked();
        });
        await run.step('installCertificate', onDevice, { tenantId, deviceId, certificateId: certificate.certificateId });
      }

      const requestedBy = input.requestedBy ? { requestedBy: input.requestedBy } : {};
      const configuration = await run.step(
        'pushConfiguration',
        onDevice,
        // Absent in runs planned before versions were pinned: the activity then pushes the current one.
        { tenantId, deviceId, templateId: input.templateId, templateVersion: input.templateVersion, ...requestedBy },
        // A site's worker only sends what was rendered and signed here, centrally; key custody stays central.
        preparesCentrally(input.deviceTaskQueue)
          ? () =>
              pushPreparedCentrally({ tenantId, deviceId, templateId: input.templateId, version: input.templateVersion, ...requestedBy }, ({ reference }) =>
                onDevice.remote.pushPreparedDeviceConfiguration({ tenantId, deviceId, reference, ...requestedBy }),
              )
          : undefined,
      );
      run.configurationPushed(configuration);

      await run.step('selfTest', selfTest, { tenantId, deviceId });

      await run.activationAllowed();
      await run.step('activate', onDevice, { tenantId, deviceId });
    });
  } catch (error) {
    throw await run.fail(error, async (reason) => {
      for (const undo of compensations) await undo();
      await compensation.markDeviceFailed({ tenantId, deviceId, reason });
    });
  }

  return run.complete();
}
