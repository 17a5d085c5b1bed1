/**
 * Zero-touch provisioning of one pre-registered device: waits, durably and for as long as the
 * registration lasts, for discovery, a DHCP lease or an enrolment token to report a device that
 * may be it; checks what was seen against the registration; and provisions it with no human
 * step (unless the registration asks for an approver). A device that shows the right MAC with
 * another serial, or the reverse, is not provisioned: the mismatch is recorded, an alert raised,
 * and the wait goes on for the right device until the registration expires.
 */
import {
  ApplicationFailure,
  ChildWorkflowFailure,
  ParentClosePolicy,
  condition,
  executeChild,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import type { ZeroTouchActivities } from '../activities/zero-touch';
import { nonRetryableErrorTypes } from '../foundation/errors';
import { provisioningWorkflowId, startProvisioning } from '../contracts/provisioning';
import { describeFailure, failureType } from './failures';
import type { provisionDevice } from './provision-device';
import {
  cancelRegistrationSignal,
  deviceSeenSignal,
  zeroTouchStatusQuery,
  type DeviceSighting,
  type ZeroTouchInput,
  type ZeroTouchStatus,
} from '../contracts/zero-touch';

const zeroTouch = proxyActivities<ZeroTouchActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 8, nonRetryableErrorTypes },
});

/** Sightings kept for operators, and waiting to be checked: a flood of DHCP renewals must not grow history. */
const sightingsKept = 20;

export async function zeroTouchProvisioning(input: ZeroTouchInput): Promise<ZeroTouchStatus> {
  const { tenantId, deviceId, registrationId } = input;
  const status: ZeroTouchStatus = { registrationId, deviceId, state: 'waiting', expiresAt: input.expiresAt, sightings: [], mismatches: [] };
  const pending: DeviceSighting[] = [];
  let cancelledBecause: string | undefined;

  setHandler(zeroTouchStatusQuery, () => status);
  setHandler(deviceSeenSignal, (sighting) => {
    status.sightings = [...status.sightings, sighting].slice(-sightingsKept);
    if (status.state === 'waiting' && pending.length < sightingsKept) pending.push(sighting);
  });
  setHandler(cancelRegistrationSignal, ({ reason }) => {
    cancelledBecause = reason;
  });

  const mismatch = async (sighting: DeviceSighting, reason: string) => {
    status.mismatches = [...status.mismatches, { at: sighting.observedAt, via: sighting.via, reason }].slice(-sightingsKept);
    await zeroTouch.reportZeroTouchMismatch({ tenantId, registrationId, deviceId, sighting, reason });
  };

  const expiresAtMs = Date.parse(input.expiresAt);
  for (;;) {
    const remainingMs = expiresAtMs - Date.now();
    if (remainingMs <= 0) {
      status.state = 'expired';
      break;
    }
    await condition(() => pending.length > 0 || cancelledBecause !== undefined, remainingMs);
    if (cancelledBecause !== undefined) {
      status.state = 'cancelled';
      status.error = cancelledBecause;
      break;
    }
    const sighting = pending.shift();
    if (!sighting) continue;

    const seenOtherwise = identityConflict(input.expected, sighting);
    if (seenOtherwise) {
      await mismatch(sighting, seenOtherwise);
      continue;
    }

    let prepared: Awaited<ReturnType<ZeroTouchActivities['prepareZeroTouchProvisioning']>>;
    try {
      prepared = await zeroTouch.prepareZeroTouchProvisioning({ tenantId, registrationId, sighting });
    } catch (error) {
      // The device itself reports another identity, or cannot be reached where it was seen.
      await mismatch(sighting, describeFailure(error));
      continue;
    }

    status.state = 'provisioning';
    status.provisioningId = provisioningWorkflowId(tenantId, deviceId);
    try {
      await executeChild<typeof provisionDevice>('provisionDevice', {
        ...startProvisioning(prepared.input),
        // The device's provisioning stands on its own: cancelling the registration does not undo it.
        parentClosePolicy: ParentClosePolicy.ABANDON,
      });
      status.state = 'provisioned';
      break;
    } catch (error) {
      const cause = provisioningFailureOf(error);
      if (cause.type === 'IdentityMismatchError') {
        status.state = 'waiting';
        await mismatch(sighting, cause.message);
        continue;
      }
      status.state = 'failed';
      status.error = cause.message;
      break;
    }
  }

  status.completedAt = new Date().toISOString();
  await zeroTouch.recordZeroTouchOutcome({ tenantId, registrationId, deviceId, state: status.state, error: status.error });
  return status;
}

/** What the sighting itself shows that contradicts the registration, before anyone talks to the device. */
function identityConflict(expected: ZeroTouchInput['expected'], sighting: DeviceSighting): string | undefined {
  const problems: string[] = [];
  if (expected.macAddress && sighting.macAddress && expected.macAddress !== sighting.macAddress) {
    problems.push(`MAC address ${sighting.macAddress} (registered ${expected.macAddress})`);
  }
  if (expected.serialNumber && sighting.serialNumber && expected.serialNumber !== sighting.serialNumber) {
    problems.push(`serial number ${sighting.serialNumber} (registered ${expected.serialNumber})`);
  }
  return problems.length > 0 ? `seen with ${problems.join(' and ')}` : undefined;
}

/** The step failure a provisioning run reported (it fails with `ProvisioningFailed` carrying it). */
function provisioningFailureOf(error: unknown): { type: string; message: string } {
  const cause = error instanceof ChildWorkflowFailure ? error.cause : error;
  if (cause instanceof ApplicationFailure) {
    const detail = cause.details?.[0] as { type?: string; message?: string } | undefined;
    if (detail?.type) return { type: detail.type, message: detail.message ?? cause.message };
  }
  return { type: failureType(error), message: describeFailure(error) };
}
