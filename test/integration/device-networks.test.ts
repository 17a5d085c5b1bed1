/**
 * A production installation reaches devices only inside its device networks (DEVICE_NETWORKS):
 * not the service host's own ports on loopback, not a metadata address. The API refuses such an
 * address naming the field, and a run that gets past the API is refused where the connection
 * would be made, at once and before anything is sent.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioningWorkflowId, type DeviceProvisioningRecord, type ProvisionDeviceInput } from '../../contracts/provisioning';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService({ environment: { SERVICE_ENVIRONMENT: 'production', DEVICE_NETWORKS: '10.20.0.0/24' } });
  api = await startTestApi(service, { defaultTenant: 'acme' });
});
afterAll(async () => {
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

describe('a production installation', () => {
  it("refuses to provision an address on the service's own host or a metadata address, naming the field, and starts nothing", async () => {
    const { device, request } = await devices.start();
    const ownApi = new URL(api.baseUrl).host;
    const operator = await api.keyFor('acme', 'operator');
    for (const address of [request.address, ownApi, '169.254.169.254:80', 'localhost:7233']) {
      const refused = await api.call('POST', '/api/v1/provisioning/devices', { key: operator, body: { devices: [{ ...request, address }] } });
      expect(refused.status, address).toBe(400);
      expect(refused.body.errors).toEqual([{ field: 'devices[0].address', reason: expect.stringContaining('outside the device networks') }]);
    }
    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningWorkflowId('acme', request.serialNumber)}/status`);
    expect(status.status).toBe(404);
    expect(device.receivedRequests).toEqual([]);
  });

  it('fails a run that got past the API at once where it would connect, sending the device nothing', async () => {
    const { device, request } = await devices.start();
    const input: ProvisionDeviceInput = {
      tenantId: 'acme',
      device: { deviceId: request.serialNumber, ...request },
      provisioningMethod: 'api',
      templateId: 'default',
      options: { skipCertificateGeneration: false, autoActivate: true },
      hasInitialCredentials: false,
    };
    const handle = await service.env.client.workflow.start('provisionDevice', {
      workflowId: provisioningWorkflowId('acme', request.serialNumber),
      taskQueue: service.config.temporal.taskQueue,
      args: [input],
    });
    await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    const record: DeviceProvisioningRecord = await handle.query('status');
    const identify = record.provisioningSteps.find((step) => step.step === 'identify')!;
    expect(identify).toMatchObject({ status: 'failed', retryCount: 0 });
    expect(record.error).toMatchObject({ type: 'PolicyViolationError', step: 'identify' });
    expect(record.error!.message).toContain('outside the device networks');
    expect(device.receivedRequests).toEqual([]);
  });

  it('refuses a discovery site reaching outside the device networks or onto loopback, naming the field', async () => {
    const administrator = await api.keyFor('acme', 'administrator');
    const site = (scope: Record<string, unknown>) =>
      api.call('PUT', '/api/v1/discovery/sites/hq', { key: administrator, body: { scope, scanners: ['snmp'], intervalMinutes: 60, enabled: false } });

    const metadata = await site({ interfaces: ['eth0'], ranges: ['10.20.0.0/24', '169.254.169.254/32'] });
    expect(metadata.status).toBe(400);
    expect(metadata.body.errors).toEqual([{ field: 'scope.ranges.1', reason: expect.stringContaining('outside the device networks') }]);

    const loopback = await site({ interfaces: ['lo'], ranges: ['127.0.0.0/24'], allowLoopback: true });
    expect(loopback.status).toBe(400);
    expect(loopback.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['scope.allowLoopback', 'scope.ranges.0']);

    expect((await site({ interfaces: ['eth0'], ranges: ['10.20.0.0/25'] })).status).toBe(201);
  });
});
