/**
 * The single-device workflow against a real Temporal dev server, a real database and real
 * reference devices speaking HTTPS and mutual TLS on loopback.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import proto from '@temporalio/proto';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certificates } from '../../db/schema';
import { ConflictError, ValidationError } from '../../foundation/errors';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { TestDevices, waitFor, type TestDeviceOptions } from '../support/devices';
import { startTestService, type TestService } from '../support/service';
import { temporalCliPath } from '../support/temporal';

let service: TestService;
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.stop();
});
afterEach(async () => {
  await devices.stopAll();
});

const device = (options: TestDeviceOptions = {}) => devices.start(options);

function handleOf(tenantId: string, deviceId: string) {
  return service.env.client.workflow.getHandle(provisioningWorkflowId(tenantId, deviceId));
}

async function result(tenantId: string, deviceId: string): Promise<DeviceProvisioningRecord> {
  return handleOf(tenantId, deviceId).result();
}

async function certificatesOf(deviceId: string) {
  return service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, deviceId));
}

function stepsOf(record: DeviceProvisioningRecord) {
  return Object.fromEntries(record.provisioningSteps.map((s) => [s.step, s]));
}

function configurationUnderWay(provisioningId: string) {
  return waitFor(async () => {
    const record = await service.provisioning.status('acme', provisioningId);
    return stepsOf(record).pushConfiguration.status === 'in_progress' ? record : undefined;
  }, 'the configuration step to start');
}

describe('provisionDevice', () => {
  it('provisions a device end to end: its certificate chains to the tenant root and it then serves only mutual TLS', async () => {
    const { device: sim, request } = await device();
    const [started] = await service.provisioning.start('acme', { devices: [request] });
    expect(started.outcome).toBe('started');

    const record = await result('acme', request.serialNumber);
    expect(record.status).toBe('completed');
    expect(record.provisioningSteps.map((s) => s.status)).toEqual(['completed', 'skipped', ...Array(7).fill('completed')]);
    expect(record.certificateInfo?.fingerprint).toBe(sim.certificateFingerprint);
    expect(record.certificateInfo?.subjectDN).toContain(`CN=${request.serialNumber}`);
    expect(sim.state).toBe('active');
    expect(sim.configuration?.settings.hostname).toBe(request.serialNumber.toLowerCase());

    const chain = await service.parts.ca.getChainPem(record.certificateInfo!.certificateId);
    const dir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'chain-'));
    writeFileSync(path.join(dir, 'device.pem'), sim.certificatePem!);
    writeFileSync(path.join(dir, 'intermediate.pem'), chain[0]);
    writeFileSync(path.join(dir, 'root.pem'), chain.at(-1)!);
    const verdict = execFileSync('openssl', [
      'verify', '-x509_strict', '-purpose', 'sslserver',
      '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'intermediate.pem'), path.join(dir, 'device.pem'),
    ]).toString();
    expect(verdict).toContain('device.pem: OK');

    const registered = await service.parts.registry.get('acme', request.serialNumber);
    expect(registered.lifecycleState).toBe('active');
    expect(registered.activeCertificateId).toBe(record.certificateInfo!.certificateId);

    // The status query still answers once the run has completed.
    const status = await service.provisioning.status('acme', started.provisioningId);
    expect(status.status).toBe('completed');
  });

  it('a provisioned device accepts only the service: another provisioned device of the same tenant is hung up on', async () => {
    const camera = await device();
    const door = await device();
    for (const { request } of [camera, door]) await service.provisioning.start('acme', { devices: [request] });
    for (const { request } of [camera, door]) expect((await result('acme', request.serialNumber)).status).toBe('completed');

    // The camera's own certificate: clientAuth, from the site intermediate under the tenant's root.
    const cameraIdentity = camera.device.tlsIdentity!;
    const stolen = { address: door.request.address, pinnedCertificateFingerprint: door.device.certificateFingerprint! };
    const adapter = service.parts.adapterFor('https');
    await expect(adapter.selfTest({ ...stolen, clientIdentity: cameraIdentity })).rejects.toThrow(/may not trust our client certificate/);
    // Presenting its whole chain up to the root does not help either.
    const cameraCertificateId = (await service.parts.registry.get('acme', camera.request.serialNumber)).activeCertificateId!;
    const withRoot = { ...cameraIdentity, chainPem: await service.parts.ca.getChainPem(cameraCertificateId) };
    await expect(adapter.selfTest({ ...stolen, clientIdentity: withRoot })).rejects.toThrow(/may not trust our client certificate/);
    await expect(adapter.selfTest({ ...stolen, clientIdentity: await service.parts.ca.ensureServiceIdentity('acme') })).resolves.toMatchObject({ passed: true });
  });

  it('keeps the status search attribute current so operators can filter runs', async () => {
    const { request } = await device();
    await service.provisioning.start('acme', { devices: [request] });
    await result('acme', request.serialNumber);
    const found = await waitFor(async () => {
      const ids: string[] = [];
      for await (const run of service.env.client.workflow.list({
        query: `DeviceSerial = '${request.serialNumber}' AND ProvisioningStatus = 'completed' AND TenantId = 'acme'`,
      })) {
        ids.push(run.workflowId);
      }
      return ids.length > 0 ? ids : undefined;
    }, 'the run to be listed by its search attributes');
    expect(found).toEqual([provisioningWorkflowId('acme', request.serialNumber)]);
  });

  it('retries a device that answers 503 and records the retries on the step', async () => {
    const { request } = await device({
      faults: { failNext: { '/api/v1/configuration': { count: 2, status: 503 } } },
    });
    await service.provisioning.start('acme', { devices: [request] });
    const record = await result('acme', request.serialNumber);
    expect(record.status).toBe('completed');
    expect(stepsOf(record).pushConfiguration.retryCount).toBe(2);
    expect(stepsOf(record).identify.retryCount).toBe(0);
  });

  it('fails at once, without retrying or issuing, when the device reports another serial number', async () => {
    const { request } = await device({ faults: { reportedSerialNumber: 'SOMEONE-ELSE' } });
    await service.provisioning.start('acme', { devices: [request] });
    const failure = await result('acme', request.serialNumber).catch((error) => error);
    expect(failure).toBeInstanceOf(WorkflowFailedError);

    const record = await service.provisioning.status('acme', provisioningWorkflowId('acme', request.serialNumber));
    expect(record.status).toBe('failed');
    expect(record.error?.type).toBe('IdentityMismatchError');
    expect(record.error?.step).toBe('identify');
    expect(stepsOf(record).identify.retryCount).toBe(0);
    expect(stepsOf(record).generateCsr.status).toBe('pending');
    expect(await certificatesOf(request.serialNumber)).toEqual([]);
  });

  it('revokes the certificate it issued when the device refuses its configuration for good', async () => {
    const { request } = await device({ faults: { refuseConfiguration: true } });
    await service.provisioning.start('acme', { devices: [request] });
    await expect(result('acme', request.serialNumber)).rejects.toBeInstanceOf(WorkflowFailedError);

    const record = await service.provisioning.status('acme', provisioningWorkflowId('acme', request.serialNumber));
    expect(record.error?.step).toBe('pushConfiguration');
    expect(record.certificateInfo?.revokedAt).toBeDefined();
    const [issued] = await certificatesOf(request.serialNumber);
    expect(issued.revokedAt).not.toBeNull();
    expect(issued.revocationReason).toBe('cessationOfOperation');
    expect((await service.parts.registry.get('acme', request.serialNumber)).lifecycleState).toBe('failed');
  });

  it('starting the same device twice runs one provisioning and issues one certificate', async () => {
    const { request } = await device({ faults: { latencyMs: { '/api/v1/configuration': 500 } } });
    const [first, second] = await Promise.all([
      service.provisioning.start('acme', { devices: [request] }),
      service.provisioning.start('acme', { devices: [request] }),
    ]);
    expect([first[0].outcome, second[0].outcome].sort()).toEqual(['existing', 'started']);
    expect(first[0].runId).toBe(second[0].runId);
    await result('acme', request.serialNumber);
    expect(await certificatesOf(request.serialNumber)).toHaveLength(1);

    await expect(service.provisioning.start('acme', { devices: [request] })).rejects.toBeInstanceOf(ConflictError);
  });

  it('a cancel signal stops the run and revokes the certificate already issued', async () => {
    const { device: sim, request } = await device({ faults: { hang: ['/api/v1/configuration'] } });
    const [started] = await service.provisioning.start('acme', { devices: [request] });
    await configurationUnderWay(started.provisioningId);

    await service.provisioning.cancel('acme', started.provisioningId, 'wrong device on the work order');
    sim.release();
    const failure = await result('acme', request.serialNumber).catch((error) => error);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(failure.cause?.name).toBe('CancelledFailure');

    const record = await service.provisioning.status('acme', started.provisioningId);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ type: 'Cancelled', message: 'wrong device on the work order' });
    const [issued] = await certificatesOf(request.serialNumber);
    expect(issued.revokedAt).not.toBeNull();
  });

  it('a cancel signal whose reason the audit trail cannot store still revokes and ends the run at once, the refusal on record', async () => {
    const { device: sim, request } = await device({ faults: { hang: ['/api/v1/configuration'] } });
    const [started] = await service.provisioning.start('acme', { devices: [request] });
    await configurationUnderWay(started.provisioningId);

    // As `temporal workflow signal --name cancel` could send it; the API refuses such text itself.
    await service.provisioning.cancel('acme', started.provisioningId, 'wrong\u0000device');
    sim.release();
    await expect(result('acme', request.serialNumber)).rejects.toBeInstanceOf(WorkflowFailedError);
    const [issued] = await certificatesOf(request.serialNumber);
    expect(issued.revokedAt).not.toBeNull();
    const events = await service.parts.audit.list('acme', { targetId: request.serialNumber });
    expect(events.find((e) => e.action === 'audit.event_refused')?.details).toMatchObject({
      action: 'provisioning.cancelled',
      problems: [{ field: 'details.error.message' }],
    });
  });

  it('`temporal workflow cancel` from the CLI compensates like the cancel signal', async () => {
    const { device: sim, request } = await device({ faults: { hang: ['/api/v1/configuration'] } });
    const [started] = await service.provisioning.start('acme', { devices: [request] });
    await configurationUnderWay(started.provisioningId);

    execFileSync(temporalCliPath(), [
      'workflow', 'cancel', '--address', service.env.address, '--namespace', 'default',
      '--workflow-id', started.provisioningId,
    ]);
    sim.release();
    await expect(result('acme', request.serialNumber)).rejects.toBeInstanceOf(WorkflowFailedError);
    const [issued] = await certificatesOf(request.serialNumber);
    expect(issued.revokedAt).not.toBeNull();
    const description = await handleOf('acme', request.serialNumber).describe();
    expect(description.status.name).toBe('CANCELLED');
  });

  it('waits for an operator to activate when autoActivate is off', async () => {
    const { device: sim, request } = await device();
    const [started] = await service.provisioning.start('acme', {
      devices: [request],
      options: { autoActivate: false },
    });
    const waiting = await waitFor(async () => {
      const record = await service.provisioning.status('acme', started.provisioningId);
      return record.metadata.awaitingActivation ? record : undefined;
    }, 'the run to wait for activation');
    expect(waiting.status).toBe('in_progress');
    expect(stepsOf(waiting).selfTest.status).toBe('completed');
    expect(sim.state).toBe('provisioned');

    await service.provisioning.activate('acme', started.provisioningId);
    const record = await result('acme', request.serialNumber);
    expect(record.status).toBe('completed');
    expect(sim.state).toBe('active');
  });

  it('refuses to provision without certificates with a template that turns password login off', async () => {
    const { request } = await device();
    const refused = await service.provisioning
      .start('acme', { devices: [request], options: { skipCertificateGeneration: true } })
      .catch((error) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.fields.map((f: { field: string }) => f.field)).toEqual(['options.skipCertificateGeneration']);
  });

  it('provisions without certificates when asked to, over the channel pinned at identification', async () => {
    const { device: sim, request } = await device();
    const defaults = await service.parts.templates.get('acme', 'default');
    await service.parts.templates.create('acme', {
      id: 'password-managed',
      name: 'Password-managed devices',
      protocol: 'https',
      body: { ...defaults.body, management: { httpEnabled: false, passwordLogin: true } },
    });
    await service.provisioning.start('acme', {
      devices: [request],
      templateId: 'password-managed',
      options: { skipCertificateGeneration: true },
    });
    const record = await result('acme', request.serialNumber);
    expect(record.status).toBe('completed');
    expect(['generateCsr', 'issueCertificate', 'installCertificate'].map((s) => stepsOf(record)[s].status)).toEqual([
      'skipped',
      'skipped',
      'skipped',
    ]);
    expect(record.certificateInfo).toBeUndefined();
    expect(await certificatesOf(request.serialNumber)).toEqual([]);
    expect(sim.certificatePem).toBeUndefined();
    expect(sim.state).toBe('active');
  });

  it('keeps device passwords out of workflow history and encrypts every payload', async () => {
    const { request } = await device();
    await service.provisioning.start('acme', { devices: [request] });
    await result('acme', request.serialNumber);
    const history = await handleOf('acme', request.serialNumber).fetchHistory();
    // The history as the server stores it: every payload's bytes, in one protobuf encoding.
    const stored = Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
    expect(stored.length).toBeGreaterThan(1000);
    expect(stored.includes(request.serialNumber)).toBe(true);
    expect(stored.includes(request.credentials.password)).toBe(false);
    // Payloads themselves are encrypted: not even the device's address is readable in them.
    expect(stored.includes('binary/encrypted')).toBe(true);
    expect(stored.includes(request.address)).toBe(false);
  });
});
