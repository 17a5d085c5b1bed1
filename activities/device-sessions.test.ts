import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceAdapter, DeviceCredentials, DeviceSession } from '../adapters/device-adapter';
import { Sealer } from '../custody/sealing';
import { SecretVault } from '../custody/secret-vault';
import type { DatabaseHandle } from '../db/client';
import { DeviceRegistry } from '../registry/device-registry';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { deviceSessions } from './device-sessions';

describe.each(databaseKinds)('device sessions on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let vault: SecretVault;
  let sessions: ReturnType<typeof deviceSessions>;
  const factory = { username: 'admin', password: 'factory-default-1' };
  const corrected = { username: 'admin', password: 'corrected-by-operator-2' };

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    vault = new SecretVault({ db: handle.db, sealer: new Sealer(randomBytes(32)) });
    const registry = new DeviceRegistry(handle.db);
    // The devices here hold no certificate yet, so the sessions never ask the CA for anything.
    const ca = {} as Parameters<typeof deviceSessions>[0]['ca'];
    sessions = deviceSessions({ ca, vault, registry, adapterFor: () => ({}) as DeviceAdapter });
    for (const deviceId of ['cam-1', 'cam-2']) {
      await registry.register('acme', {
        deviceId,
        serialNumber: deviceId.toUpperCase(),
        macAddress: deviceId === 'cam-1' ? '00:11:22:33:44:01' : '00:11:22:33:44:02',
        address: deviceId === 'cam-1' ? '192.0.2.1' : '192.0.2.2',
        protocol: 'https',
        deviceType: 'camera',
        site: 'hq',
      });
      await vault.store('acme', deviceId, initialCredentialsPurpose, factory);
    }
  });
  afterAll(() => handle?.close());

  const credentialsOfNextStep = (deviceId: string) =>
    sessions.withDevice({ tenantId: 'acme', deviceId }, async (_device, _adapter, session: DeviceSession) => session.credentials as DeviceCredentials);

  it('hands the next steps of a run the credentials the first step read, without reading the vault again', async () => {
    expect(await credentialsOfNextStep('cam-1')).toEqual(factory);
    await vault.store('acme', 'cam-1', initialCredentialsPurpose, corrected);
    expect(await credentialsOfNextStep('cam-1')).toEqual(factory);
  });

  it('reads the credentials again after a step fails, so its retry uses what the operator corrected', async () => {
    expect(await credentialsOfNextStep('cam-2')).toEqual(factory);
    await vault.store('acme', 'cam-2', initialCredentialsPurpose, corrected);
    await expect(
      sessions.withDevice({ tenantId: 'acme', deviceId: 'cam-2' }, async () => {
        throw new Error('401 Unauthorized');
      }),
    ).rejects.toThrow('401');
    expect(await credentialsOfNextStep('cam-2')).toEqual(corrected);
  });
});
