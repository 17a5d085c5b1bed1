/**
 * The same provisioning with the CA keys in a real PKCS#11 token (SoftHSM2) and the registry on a
 * PostgreSQL server: the other key custody and database code paths.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { startTestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ database: 'server', keyCustody: 'pkcs11' });
});
afterAll(async () => {
  await service?.stop();
});

it('provisions a device with its certificate signed by an intermediate whose key lives in the HSM', async () => {
  const { device, request } = await startTestDevice({ site: 'plant-7' });
  try {
    await service.provisioning.start('acme', { devices: [request] });
    const handle = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', request.serialNumber));
    const record: DeviceProvisioningRecord = await handle.result();
    expect(record.status).toBe('completed');
    expect(device.certificateFingerprint).toBe(record.certificateInfo?.fingerprint);

    const certificate = await service.parts.ca.getCertificate(record.certificateInfo!.certificateId);
    const intermediate = await service.parts.ca.getCertificate(certificate.issuerCertificateId!);
    const root = await service.parts.ca.getCertificate(intermediate.issuerCertificateId!);
    expect(intermediate).toMatchObject({ certificateType: 'intermediate', site: 'plant-7' });
    expect(intermediate.privateKeyLocation).toMatch(/^pkcs11:/);
    expect(root.privateKeyLocation).toMatch(/^pkcs11:/);
    expect(service.parts.database.kind).toBe('server');
  } finally {
    await device.stop();
  }
});
