/**
 * The single-device workflow provisions a device of each protocol, with no change to the
 * workflow: real Temporal dev server, real database, and each protocol's real or faithful peer on
 * loopback. What each adapter does step by step is proven next to the adapter; here the question is
 * whether the whole run, through the registry, key custody and the vault, does it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, randomBytes } from 'node:crypto';
import { connect } from 'node:tls';
import { SnmpDeviceAdapter } from '../../adapters/snmp';
import { testDeviceNetworks } from '../support/device-networks';
import { vaultDeviceSecrets } from '../../custody/device-secrets';
import { startBacnetDevice } from '../../scripts/simulators/bacnet-device';
import { startOnvifDevice } from '../../scripts/simulators/onvif-device';
import { startOsdpReader } from '../../scripts/simulators/osdp-reader';
import { certificates, deviceSecrets } from '../../db/schema';
import { startSnmpd, type RunningSnmpPeer } from '../../scripts/simulators/snmp-agent';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createConfigurationActivities, type DeviceDriftResult } from '../../activities/configuration';
import { startTestService, testLogger, type TestService } from '../support/service';

const snmpDeviceAdapter = new SnmpDeviceAdapter({ networks: testDeviceNetworks });

const run = promisify(execFile);
let service: TestService;
const peers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.stop();
});
afterEach(async () => {
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
});

async function provisioned(deviceId: string): Promise<DeviceProvisioningRecord> {
  return service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId)).result();
}

/** What the drift check makes of the device now: its running configuration read back and compared. */
async function driftOf(deviceId: string): Promise<DeviceDriftResult> {
  const activities = createConfigurationActivities({ ...service.parts, logger: testLogger });
  return new MockActivityEnvironment().run(activities.checkDeviceDrift, { tenantId: 'acme', deviceId, action: 'alert' as const });
}

const stepStatuses = (record: DeviceProvisioningRecord) => Object.fromEntries(record.provisioningSteps.map((s) => [s.step, s.status]));

describe('SNMP device (real snmpd)', () => {
  it('provisions an SNMP encoder: per-device SNMPv3 user sealed in the vault, community access off, no certificate steps', async () => {
    const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-Secret1', privPassphrase: 'factory-priv-Secret1' };
    const snmpd: RunningSnmpPeer = await startSnmpd({
      sysDescr: 'AXIS Q7424-R Mk II Video Encoder',
      sysObjectID: '1.3.6.1.4.1.368.1.1',
      admin,
      readOnlyCommunities: ['public'],
    });
    peers.push(snmpd);
    const credentials = { username: admin.userName, password: JSON.stringify({ auth: admin.authPassphrase, priv: admin.privPassphrase }) };
    // What the label would say: read it the way an installer's survey would.
    const label = await snmpDeviceAdapter.identify({ address: snmpd.address, credentials });

    const [started] = await service.provisioning.start('acme', {
      templateId: 'snmp-v3-baseline',
      devices: [
        {
          deviceId: 'enc-lobby-01',
          serialNumber: label.serialNumber,
          macAddress: label.macAddress ?? '02:00:00:00:5e:01',
          address: snmpd.address,
          protocol: 'snmp',
          deviceType: 'camera',
          site: 'hq',
          credentials,
        },
      ],
    });
    expect(started!.outcome).toBe('started');
    const record = await provisioned('enc-lobby-01');

    expect(record.status).toBe('completed');
    expect(stepStatuses(record)).toMatchObject({
      identify: 'completed',
      authenticate: 'completed',
      generateCsr: 'skipped',
      issueCertificate: 'skipped',
      installCertificate: 'skipped',
      pushConfiguration: 'completed',
      selfTest: 'completed',
      activate: 'completed',
    });
    expect(await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, 'enc-lobby-01'))).toEqual([]);

    // The per-device keys exist only sealed; the new user reads the agent with them, v2c no longer does.
    const sealed = await service.parts.database.db.select().from(deviceSecrets).where(eq(deviceSecrets.deviceId, 'enc-lobby-01'));
    expect(sealed.map((row) => row.purpose)).toEqual(expect.arrayContaining(['device-key:snmp-usm-auth', 'device-key:snmp-usm-priv']));
    const secrets = vaultDeviceSecrets(service.parts.vault, 'acme', 'enc-lobby-01');
    const auth = Buffer.from((await secrets.read('snmp-usm-auth'))!).toString('base64url');
    const priv = Buffer.from((await secrets.read('snmp-usm-priv'))!).toString('base64url');
    for (const row of sealed) expect(Buffer.from(row.sealedValue).includes(Buffer.from(auth))).toBe(false);
    const read = await run('snmpget', [
      '-v3', '-l', 'authPriv', '-u', 'provisioning', '-a', 'SHA-256', '-A', auth, '-x', 'AES', '-X', priv,
      '-t', '1', '-r', '0', '-Oqv', snmpd.address, '1.3.6.1.2.1.1.5.0',
    ], { env: { ...process.env, MIBS: '' } });
    expect(read.stdout.trim()).toBe('"enc-lobby-01"');
    await expect(
      run('snmpget', ['-v2c', '-c', 'public', '-t', '1', '-r', '0', '-Oqv', snmpd.address, '1.3.6.1.2.1.1.1.0'], { env: { ...process.env, MIBS: '' } }),
    ).rejects.toThrow(/Timeout/);
    // Read back over SNMPv3 as the per-device user, the agent runs what was pushed.
    expect(await driftOf('enc-lobby-01')).toMatchObject({ state: 'in-sync', desired: { templateId: 'snmp-v3-baseline' } });
  });
});

const localMac = () => ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
const loopbackHost = () => {
  const [a, b, c] = randomBytes(3);
  return `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`;
};

async function certificateOf(deviceId: string) {
  const rows = await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, deviceId));
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

describe('OSDP card reader (simulated PD on a socat pty pair)', () => {
  it('provisions a reader: a fresh SCBK sealed in the vault replaces SCBK-D and install mode ends, with no certificate', async () => {
    const reader = await startOsdpReader({ serialNumber: 0xc0ffee01 });
    peers.push(reader);
    await service.provisioning.start('acme', {
      templateId: 'osdp-reader',
      devices: [
        {
          deviceId: 'reader-door-7',
          serialNumber: 'C0FFEE01',
          macAddress: localMac(),
          address: reader.address,
          protocol: 'osdp',
          deviceType: 'card_reader',
          site: 'hq',
        },
      ],
    });
    const record = await provisioned('reader-door-7');

    expect(record.status).toBe('completed');
    expect(stepStatuses(record)).toMatchObject({ generateCsr: 'skipped', issueCertificate: 'skipped', pushConfiguration: 'completed', selfTest: 'completed' });
    const stored = await vaultDeviceSecrets(service.parts.vault, 'acme', 'reader-door-7').read('osdp-scbk');
    expect(stored).toHaveLength(16);
    expect(Buffer.from(reader.state().scbk!)).toEqual(Buffer.from(stored!));
    expect(Buffer.from(stored!)).not.toEqual(Buffer.from(Array.from({ length: 16 }, (_, i) => 0x30 + i)));
    expect(reader.state().installMode).toBe(false);
    // OSDP has no command that reports a reader's configuration: drift cannot be judged.
    expect(await driftOf('reader-door-7')).toMatchObject({ state: 'unsupported', reason: expect.stringContaining('osdp') });
  });

  it('fails identification of a reader reporting another serial and gives it no key', async () => {
    const reader = await startOsdpReader({ serialNumber: 0x0badf00d });
    peers.push(reader);
    await service.provisioning.start('acme', {
      templateId: 'osdp-reader',
      devices: [{ deviceId: 'reader-door-8', serialNumber: 'C0FFEE02', macAddress: localMac(), address: reader.address, protocol: 'osdp', deviceType: 'card_reader', site: 'hq' }],
    });
    const record = await provisioned('reader-door-8').catch((error: Error) => error);
    const status = await service.provisioning.status('acme', provisioningWorkflowId('acme', 'reader-door-8'));
    expect(status.status).toBe('failed');
    expect(status.error?.step).toBe('identify');
    expect(status.error?.type).toBe('IdentityMismatchError');
    expect(record).toBeInstanceOf(Error);
    expect(reader.state().scbk).toBeUndefined();
  });
});

describe('BACnet/SC building controller (simulated device on loopback UDP)', () => {
  it('provisions an SC controller: its operational certificate file holds a certificate chaining to the site CA and the hubs are set', async () => {
    const controller = await startBacnetDevice({ serialNumber: 'BC-4471', password: 'factory-Secret9', scCapable: true });
    peers.push(controller);
    await service.provisioning.start('acme', {
      templateId: 'bacnet-sc-controller',
      devices: [
        {
          deviceId: 'ahu-roof-2',
          serialNumber: 'BC-4471',
          macAddress: localMac(),
          address: controller.address,
          protocol: 'bacnet',
          deviceType: 'building_controller',
          site: 'hq',
          credentials: { username: 'bacnet', password: 'factory-Secret9' },
        },
      ],
    });
    const record = await provisioned('ahu-roof-2');

    expect(record.status).toBe('completed');
    expect(stepStatuses(record)).toMatchObject({ generateCsr: 'completed', issueCertificate: 'completed', installCertificate: 'completed' });
    const issued = await certificateOf('ahu-roof-2');
    const onDevice = new X509Certificate(controller.state().activeCertificate!);
    expect(onDevice.fingerprint256.replace(/:/g, '').toLowerCase()).toBe(issued.fingerprint);
    const [intermediate] = await service.parts.ca.getChainPem(issued.id);
    expect(onDevice.verify(new X509Certificate(intermediate!).publicKey)).toBe(true);
    expect(controller.state().primaryHubUri).toBe('wss://bacnet-hub-1.hq.internal/hub');
    expect(await driftOf('ahu-roof-2')).toMatchObject({ state: 'unsupported', reason: expect.stringContaining('bacnet') });
  });
});

describe('ONVIF camera (simulated device with Advanced Security)', () => {
  it('provisions a camera: it generates its key, serves HTTPS with the issued certificate, and HTTP is off', async () => {
    const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const macAddress = localMac();
    const camera = await startOnvifDevice({ host: loopbackHost(), serialNumber: 'CAM-77A1', macAddress, credentials });
    peers.push(camera);
    await service.provisioning.start('acme', {
      templateId: 'onvif-camera',
      devices: [
        { deviceId: 'cam-gate-1', serialNumber: 'CAM-77A1', macAddress, address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials },
      ],
    });
    const record = await provisioned('cam-gate-1');

    expect(record.status).toBe('completed');
    const issued = await certificateOf('cam-gate-1');
    expect(record.certificateInfo?.pins?.certificateSha256).toBe(issued.fingerprint);
    const state = camera.state();
    expect(state.protocols.http.enabled).toBe(false);
    expect(state.servingCertificateFingerprint).toBe(issued.fingerprint);
    // A real handshake on the camera's HTTPS port shows the certificate we issued.
    const presented = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: camera.host, port: camera.httpsPort!, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerX509Certificate()!.fingerprint256.replace(/:/g, '').toLowerCase());
        socket.end();
      });
      socket.on('error', reject);
    });
    expect(presented).toBe(issued.fingerprint);
    // The factory password was replaced by a per-device one, kept only sealed.
    const managementPassword = await vaultDeviceSecrets(service.parts.vault, 'acme', 'cam-gate-1').read('onvif-admin-password');
    expect(managementPassword).toBeDefined();
    // Read back over HTTPS as the per-device user, the camera runs what was pushed.
    expect(await driftOf('cam-gate-1')).toMatchObject({ state: 'in-sync', desired: { templateId: 'onvif-camera' } });
  });
});
