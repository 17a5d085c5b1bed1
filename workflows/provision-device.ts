/**
 * Provisions one device: identify → authenticate → CSR → issue → install → configure → self-test
 * → activate. Each step is an activity retried durably; a certificate issued along the way is
 * revoked if the run later fails for good or is cancelled.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { ProvisioningActivities } from '../activities/provisioning';
import { deviceCapabilities } from '../adapters/device-adapter';
// A plain module with no Node dependencies, so the workflow bundle may include it.
import { nonRetryableErrorTypes } from '../foundation/errors';
import {
  activateSignal,
  cancelSignal,
  provisioningSearchAttributes as attributes,
  provisioningStepNames,
  statusQuery,
  type DeviceProvisioningRecord,
  type ProvisionDeviceInput,
  type ProvisioningStatus,
  type ProvisioningStepName,
} from './definitions';
import { awaitApproval } from './approval';
import { attemptsOf, describeFailure, failureType, isFailureForGood } from './failures';
import { bulkDeviceFinishedSignal, type BulkDeviceOutcome } from './bulk-definitions';
import { recordProvisioningRun, recordStepAttempts, type ProvisioningOutcome } from './metrics';


/** Marks runs that skip the certificate steps for devices that do not enrol X.509 certificates. */
const certificateEnrolmentByCapability = 'certificate-enrolment-by-capability';
/** Marks runs that go on when an audit event is refused for good (the activity put the refusal on record). */
const refusedAuditEventDoesNotStopRun = 'refused-audit-event-does-not-stop-run';

/** Talking to a device: it may be rebooting or briefly off the network, so keep trying for a while. */
function deviceStepOptions(retryWindowSeconds: number): ActivityOptions {
  return {
    startToCloseTimeout: '45s',
    heartbeatTimeout: '10s',
    scheduleToCloseTimeout: `${retryWindowSeconds}s`,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', nonRetryableErrorTypes },
  };
}

/** Signing in the HSM and writing to the registry: fast, and only transiently unavailable. */
const certificateAuthority = proxyActivities<ProvisioningActivities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes },
});

/** Record keeping (audit, escalation): must not be lost, but never worth failing a run over quickly. */
const bookkeeping = proxyActivities<ProvisioningActivities>({
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '1h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});

/** Compensation must eventually happen, so it retries far longer than any forward step. */
const compensation = proxyActivities<ProvisioningActivities>({
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', nonRetryableErrorTypes: ['NotFoundError'] },
});

const defaultDeviceRetryWindowSeconds = 600;

export async function provisionDevice(input: ProvisionDeviceInput): Promise<DeviceProvisioningRecord> {
  const { tenantId, device } = input;
  const info = workflowInfo();
  const deviceRetryWindow = input.options.deviceRetryWindowSeconds ?? defaultDeviceRetryWindowSeconds;
  const onDevice = proxyActivities<ProvisioningActivities>(deviceStepOptions(deviceRetryWindow));
  const selfTest = proxyActivities<ProvisioningActivities>({
    ...deviceStepOptions(deviceRetryWindow),
    // A device applying new settings may fail its first self-tests; a handful of tries is enough.
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
  });

  const record: DeviceProvisioningRecord = {
    id: info.workflowId,
    tenantId,
    deviceId: device.deviceId,
    provisioningMethod: input.provisioningMethod,
    status: 'pending',
    configurationTemplate: input.templateId,
    provisioningSteps: provisioningStepNames.map((step) => ({ step, status: 'pending', retryCount: 0 })),
    metadata: {
      ...input.metadata,
      serialNumber: device.serialNumber,
      macAddress: device.macAddress,
      address: device.address,
      protocol: device.protocol,
      site: device.site,
      ...(input.bulkJobId ? { bulkJobId: input.bulkJobId } : {}),
      ...(input.requestedBy ? { requestedBy: input.requestedBy } : {}),
    },
    createdAt: info.startTime.toISOString(),
  };

  let activationRequested = input.options.autoActivate;
  const run = new CancellationScope();
  setHandler(statusQuery, () => record);
  setHandler(activateSignal, () => {
    activationRequested = true;
  });
  setHandler(cancelSignal, (reason) => {
    record.metadata.cancellationReason = reason ?? 'cancelled by operator';
    run.cancel();
  });

  const stepOf = (name: ProvisioningStepName) => record.provisioningSteps.find((s) => s.step === name)!;
  const setStatus = (status: ProvisioningStatus) => {
    record.status = status;
    upsertSearchAttributes([{ key: attributes.status, value: status }]);
  };

  const metricLabels = { tenant: tenantId, method: input.provisioningMethod, protocol: device.protocol };
  const recordRun = (outcome: ProvisioningOutcome) =>
    recordProvisioningRun(metricLabels, outcome, (Date.now() - info.startTime.getTime()) / 1000);

  async function step<T extends { attempt: number }>(name: ProvisioningStepName, action: () => Promise<T>): Promise<T> {
    const entry = stepOf(name);
    entry.status = 'in_progress';
    entry.startedAt = new Date().toISOString();
    try {
      const result = await action();
      entry.status = 'completed';
      entry.retryCount = result.attempt - 1;
      recordStepAttempts(metricLabels, name, 'completed', entry.retryCount);
      return result;
    } catch (error) {
      entry.status = 'failed';
      entry.error = describeFailure(error);
      entry.retryCount = Math.max(0, attemptsOf(error) - 1);
      recordStepAttempts(metricLabels, name, isCancellation(error) ? 'cancelled' : 'failed', entry.retryCount);
      throw error;
    } finally {
      entry.completedAt = new Date().toISOString();
    }
  }
  const skip = (name: ProvisioningStepName) => {
    stepOf(name).status = 'skipped';
  };

  const audit = async (
    action: string,
    outcome: 'success' | 'failure',
    actor: string,
    details: Record<string, unknown> = {},
  ) => {
    try {
      await bookkeeping.recordAuditEvent({
        tenantId,
        actor: actor === 'workflow' ? info.workflowId : actor,
        actorType: actor === 'workflow' ? 'workflow' : 'user',
        action,
        outcome,
        targetType: 'device',
        targetId: device.deviceId,
        details: { provisioningId: info.workflowId, runId: info.runId, ...details },
      });
    } catch (error) {
      // An event that can never be stored (text from a CLI signal, say) must not hold the run up for
      // an hour or fail it: the activity has put the refusal on record. Runs before this rule failed.
      if (!isFailureForGood(error) || !patched(refusedAuditEventDoesNotStopRun)) throw error;
      log.warn('audit event refused; the run goes on', { action, error: describeFailure(error) });
    }
  };

  async function reportToBulkJob(outcome: BulkDeviceOutcome['outcome']) {
    if (!input.bulkParent) return;
    const report: BulkDeviceOutcome = {
      rowNumber: input.bulkParent.rowNumber,
      deviceId: device.deviceId,
      outcome,
      ...(record.certificateInfo && !record.certificateInfo.revokedAt ? { certificateSerial: record.certificateInfo.serialNumber } : {}),
      ...(record.error ? { error: record.error.message, failedStep: record.error.step } : {}),
      startedAt: record.createdAt,
      finishedAt: new Date().toISOString(),
    };
    // A job that has ended no longer listens; the device's own record still stands.
    await getExternalWorkflowHandle(input.bulkParent.workflowId)
      .signal(bulkDeviceFinishedSignal, report)
      .catch(() => undefined);
  }

  // Undo actions, pushed as each step succeeds and run newest first if the run fails for good.
  const compensations: Array<() => Promise<void>> = [];
  setStatus('in_progress');
  await audit('provisioning.started', 'success', input.requestedBy ?? 'workflow', {
    method: input.provisioningMethod,
    templateId: input.templateId,
  });

  try {
    await run.run(async () => {
      const identified = await step('identify', () => onDevice.identifyDevice({ tenantId, device }));

      if (input.approval) {
        await awaitApproval(input.approval, {
          tenantId,
          requestedBy: input.requestedBy,
          record,
          audit,
          escalate: async (waitingSince) => {
            await bookkeeping.escalateApproval({ tenantId, deviceId: device.deviceId, provisioningId: info.workflowId, waitingSince });
          },
          closeEscalation: async () => {
            await bookkeeping.closeApprovalEscalation({ tenantId, provisioningId: info.workflowId });
          },
        });
      } else {
        skip('approval');
      }
      await step('authenticate', () => onDevice.authenticateDevice({ tenantId, deviceId: device.deviceId }));

      // Card readers and SNMP agents hold keys of their own kind (installed with the configuration),
      // not X.509 certificates; runs recorded before this rule always enrolled one.
      const enrolsCertificate = patched(certificateEnrolmentByCapability)
        ? (identified.capabilities ?? []).includes(deviceCapabilities.certificateEnrolment)
        : true;
      if (input.options.skipCertificateGeneration || !enrolsCertificate) {
        (['generateCsr', 'issueCertificate', 'installCertificate'] as const).forEach(skip);
      } else {
        const { csrPem } = await step('generateCsr', () =>
          onDevice.requestCertificateSigning({ tenantId, deviceId: device.deviceId }),
        );
        const issued = await step('issueCertificate', () =>
          certificateAuthority.issueDeviceCertificate({
            tenantId,
            deviceId: device.deviceId,
            csrPem,
            validityDays: input.options.certificateValidityDays,
            // One issuance per run: a retried or replayed activity returns the same certificate.
            issuanceKey: `${info.workflowId}/${info.firstExecutionRunId}`,
          }),
        );
        record.certificateInfo = issued.certificate;
        compensations.unshift(async () => {
          await compensation.revokeDeviceCertificate({
            certificateId: issued.certificate.certificateId,
            reason: 'cessationOfOperation',
          });
          record.certificateInfo = { ...issued.certificate, revokedAt: new Date().toISOString() };
        });
        await step('installCertificate', () =>
          onDevice.installDeviceCertificate({
            tenantId,
            deviceId: device.deviceId,
            certificateId: issued.certificate.certificateId,
          }),
        );
      }

      const configuration = await step('pushConfiguration', () =>
        onDevice.pushDeviceConfiguration({
          tenantId,
          deviceId: device.deviceId,
          templateId: input.templateId,
          // Absent in runs planned before versions were pinned: the activity then pushes the current one.
          ...(input.templateVersion !== undefined ? { templateVersion: input.templateVersion } : {}),
          ...(input.requestedBy ? { requestedBy: input.requestedBy } : {}),
        }),
      );
      record.configurationVersion = configuration.version;
      record.metadata.configurationHash = configuration.hash;

      await step('selfTest', () => selfTest.runDeviceSelfTest({ tenantId, deviceId: device.deviceId }));

      if (!activationRequested) {
        record.metadata.awaitingActivation = true;
        await condition(() => activationRequested);
        delete record.metadata.awaitingActivation;
      }
      await step('activate', () => onDevice.activateDevice({ tenantId, deviceId: device.deviceId }));
    });
  } catch (error) {
    const failedStep = record.provisioningSteps.find((s) => s.status === 'failed')?.step;
    const cancelled = isCancellation(error);
    record.error = {
      type: cancelled ? 'Cancelled' : failureType(error),
      message: cancelled ? String(record.metadata.cancellationReason ?? 'cancelled') : describeFailure(error),
      step: failedStep,
    };
    // Compensation must run even though the run itself was cancelled.
    await CancellationScope.nonCancellable(async () => {
      for (const undo of compensations) await undo();
      await compensation.markDeviceFailed({ tenantId, deviceId: device.deviceId, reason: record.error!.message });
      await audit(cancelled ? 'provisioning.cancelled' : 'provisioning.failed', 'failure', 'workflow', { error: record.error });
      await reportToBulkJob(cancelled ? 'cancelled' : 'failed');
    });
    record.completedAt = new Date().toISOString();
    setStatus('failed');
    recordRun(cancelled ? 'cancelled' : 'failed');
    // Ends as Cancelled when Temporal cancelled the run, as a failure caused by cancellation when
    // the `cancel` signal did; either way the cause says who and why.
    if (cancelled) throw new CancelledFailure(record.error.message);
    throw ApplicationFailure.nonRetryable(
      `provisioning of ${device.deviceId} failed${failedStep ? ` at ${failedStep}` : ''}: ${record.error.message}`,
      'ProvisioningFailed',
      record.error,
    );
  }

  record.completedAt = new Date().toISOString();
  setStatus('completed');
  await audit('provisioning.completed', 'success', 'workflow', { certificateSerial: record.certificateInfo?.serialNumber });
  await reportToBulkJob('completed');
  recordRun('completed');
  return record;
}
