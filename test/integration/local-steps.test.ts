/**
 * Steps tried locally (bulk and zero-touch runs) may run again after a worker dies before their
 * markers are recorded, with nothing in the attempt count to say so. Each must be safe to repeat.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createProvisioningActivities } from '../../activities/provisioning';
import { createFirmwareVerdicts } from '../../service/parts';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, testLogger, type TestService } from '../support/service';

let service: TestService;
let enrolled: TestDevice;

beforeAll(async () => {
  service = await startTestService();
  enrolled = await startTestDevice();
});
afterAll(async () => {
  await enrolled?.device.stop();
  await service?.stop();
});

it('a local install attempt after one a dead worker never recorded finds the certificate in place and goes on', async () => {
  // A run that installed its certificate and waits to be activated: the device now talks mutual TLS only.
  const [started] = await service.provisioning.start('acme', { devices: [enrolled.request], options: { autoActivate: false } });
  const record: DeviceProvisioningRecord = await waitFor(async () => {
    const current = await service.provisioning.status('acme', started!.provisioningId);
    return current.metadata.awaitingActivation ? current : undefined;
  }, 'the run to wait for activation');
  const certificateId = record.certificateInfo!.certificateId;
  const activities = createProvisioningActivities({ ...service.parts, firmware: createFirmwareVerdicts(service.parts), logger: testLogger });
  const input = { tenantId: 'acme', deviceId: enrolled.request.serialNumber, certificateId };

  // The worker died after the device took the certificate and before the registry heard of it.
  await service.parts.registry.update('acme', input.deviceId, { activeCertificateId: null, certificateExpiresAt: null });
  // A first attempt would send the certificate again over the factory session, which the device now refuses.
  await expect(new MockActivityEnvironment({ attempt: 1, isLocal: false }).run(activities.installDeviceCertificate, input)).rejects.toThrow(/client certificate required/);
  // A local attempt looks first, as a retry does.
  await expect(new MockActivityEnvironment({ attempt: 1, isLocal: true }).run(activities.installDeviceCertificate, input)).resolves.toMatchObject({
    fingerprint: enrolled.device.certificateFingerprint,
  });
  expect(await service.parts.registry.get('acme', input.deviceId)).toMatchObject({ activeCertificateId: certificateId });

  await service.provisioning.activate('acme', started!.provisioningId);
  await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', enrolled.request.serialNumber)).result();
  expect(enrolled.device.state).toBe('active');
});
