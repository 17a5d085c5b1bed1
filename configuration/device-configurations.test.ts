import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceAdapters } from '../adapters';
import { Sealer } from '../custody/sealing';
import { SecretVault } from '../custody/secret-vault';
import type { DatabaseHandle } from '../db/client';
import { configurationTemplateVersions, deviceConfigurationParameters, deviceSecrets } from '../db/schema';
import { DeviceRegistry } from '../registry/device-registry';
import { ValidationError } from '../foundation/errors';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { testDeviceNetworks } from '../test/support/device-networks';
import { CompliancePolicies } from './compliance-policies';
import { DeviceConfigurations } from './device-configurations';
import { TemplateCatalog, type TemplateInput } from './templates';

const lobby: TemplateInput = {
  id: 'lobby',
  name: 'Lobby cameras',
  protocol: 'https',
  body: {
    hostname: '{{device.hostname}}',
    timezone: 'UTC',
    site: '{{device.site}}',
    ntp: { servers: ['{{params.ntpServer}}'] },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
    vlan: { id: '{{params.vlan}}' },
    users: [{ username: 'ops', password: '{{secret.opsPassword}}', role: 'operator' }],
  },
  parameters: {
    ntpServer: { type: 'string', default: 'ntp.hq.internal' },
    vlan: { type: 'integer', minimum: 1, maximum: 4094 },
    opsPassword: { type: 'secret' },
  },
};

const camera = { deviceId: 'CAM-1', serialNumber: 'SN-1', macAddress: '02:00:00:00:00:01', site: 'hq' };
const strongPassword = 'Lobby-Ops-7fQ2!';

describe.each(databaseKinds)('configuration management on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let templates: TemplateCatalog;
  let policies: CompliancePolicies;
  let configurations: DeviceConfigurations;

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    templates = new TemplateCatalog({ db: handle.db, adapters: deviceAdapters(testDeviceNetworks) });
    await templates.ensureBuiltIns();
    policies = new CompliancePolicies(handle.db);
    const vault = new SecretVault({ db: handle.db, sealer: new Sealer(randomBytes(32)) });
    configurations = new DeviceConfigurations({ db: handle.db, vault, templates, compliance: policies, registry: new DeviceRegistry(handle.db) });
  });
  afterAll(() => handle?.close());

  describe('template versions', () => {
    it('keeps every version as it was saved, the old one still readable after an update', async () => {
      const created = await templates.create('acme', lobby, 'api-key:author');
      expect(created.version).toBe(1);
      const updated = await templates.update('acme', 'lobby', { ...lobby, body: { ...lobby.body, timezone: 'Europe/Berlin' } }, 'api-key:editor');
      expect(updated.version).toBe(2);

      const first = await templates.getVersion('acme', 'lobby', 1);
      expect(first).toMatchObject({ version: 1, createdBy: 'api-key:author', body: { timezone: 'UTC' } });
      expect((await templates.getVersion('acme', 'lobby', 2)).body).toMatchObject({ timezone: 'Europe/Berlin' });
      expect((await templates.listVersions('acme', 'lobby')).map((v) => v.version)).toEqual([2, 1]);
      expect(first.contentHash).not.toBe((await templates.getVersion('acme', 'lobby', 2)).contentHash);
    });

    it('refuses to change or delete a saved version in the database itself', async () => {
      const change = handle.db
        .update(configurationTemplateVersions)
        .set({ body: { hostname: 'tampered' } })
        .where(eq(configurationTemplateVersions.templateId, 'lobby'));
      await expect(change).rejects.toThrow();
      await expect(handle.db.delete(configurationTemplateVersions).where(eq(configurationTemplateVersions.templateId, 'lobby'))).rejects.toThrow();
      expect((await templates.getVersion('acme', 'lobby', 1)).body).toMatchObject({ timezone: 'UTC' });
    });

    it("hides another tenant's versions", async () => {
      await expect(templates.getVersion('globex', 'lobby', 1)).rejects.toThrow(/no version/);
      await expect(templates.listVersions('globex', 'lobby')).rejects.toThrow(/not found/);
    });

    it('records built-in templates as versions once, and again only when they change', async () => {
      const before = await templates.listVersions('acme', 'default');
      expect(before).toHaveLength(1);
      await templates.ensureBuiltIns();
      expect(await templates.listVersions('acme', 'default')).toHaveLength(1);
    });

    it('keeps the versions of a deleted template readable, and a new template of that name continues after them', async () => {
      await templates.create('acme', { ...lobby, id: 'short-lived' });
      await templates.remove('acme', 'short-lived');
      expect((await templates.getVersion('acme', 'short-lived', 1)).templateId).toBe('short-lived');
      expect((await templates.create('acme', { ...lobby, id: 'short-lived' })).version).toBe(2);
    });

    it('refuses a template that uses an undeclared parameter, naming the field', async () => {
      const body = { ...lobby.body, vlan: { id: '{{params.vlanId}}' } };
      await expect(templates.create('acme', { ...lobby, id: 'undeclared', body })).rejects.toMatchObject({
        fields: [{ field: 'body.vlan.id', reason: 'parameter {{params.vlanId}} is not declared by the template' }],
      });
    });
  });

  describe('device parameters', () => {
    it('keeps secrets out of the parameters row and sealed in the vault, showing only their names and strength', async () => {
      const written = await configurations.writeParameters(
        'acme',
        camera.deviceId,
        { values: { vlan: 42 }, secrets: { opsPassword: strongPassword } },
        'api-key:operator',
      );
      expect(written.secrets).toEqual([
        { name: 'opsPassword', setAt: expect.any(String), setBy: 'api-key:operator', strength: { acceptable: true, reasons: [] } },
      ]);
      expect(JSON.stringify(written)).not.toContain(strongPassword);
      const rows = await handle.db.select().from(deviceConfigurationParameters);
      expect(JSON.stringify(rows)).not.toContain(strongPassword);
      const sealed = await handle.db.select().from(deviceSecrets).where(eq(deviceSecrets.deviceId, camera.deviceId));
      expect(sealed).toHaveLength(1);
      expect(Buffer.from(sealed[0].sealedValue).includes(Buffer.from(strongPassword))).toBe(false);
      const raw = await handle.db.execute(sql`select values::text || sealed_values::text as text from device_configuration_parameters`);
      expect(JSON.stringify(raw)).not.toContain(strongPassword);
    });

    it('renders previews with the secret sealed, and the push with the plaintext', async () => {
      const version = await templates.currentVersion('acme', 'lobby');
      const [preview] = await configurations.previewMany('acme', version, [camera]);
      expect(preview.problems).toEqual([]);
      expect(preview.prepared?.settings).toMatchObject({
        ntp: { servers: ['ntp.hq.internal'] },
        vlan: { id: 42 },
        users: [{ password: '[sealed:opsPassword]' }],
      });
      expect(preview.prepared?.blocking).toEqual([]);

      const push = await configurations.prepareForPush('acme', camera, { templateId: 'lobby', version: version.version });
      expect((push.settings.users as { password: string }[])[0].password).toBe(strongPassword);
      expect(JSON.stringify(push.sealedSettings)).not.toContain(strongPassword);
      expect(push.settingsHash).toBe(preview.prepared?.settingsHash);
      expect(push.scrub(`device said: bad password ${strongPassword}`)).toBe('device said: bad password [sealed:opsPassword]');
    });

    it('judges a weak secret when it is written and blocks the configuration that uses it', async () => {
      const weak = await configurations.writeParameters('acme', 'CAM-2', { values: { vlan: 7 }, secrets: { opsPassword: 'admin' } }, 'api-key:operator');
      expect(weak.secrets[0].strength.acceptable).toBe(false);
      const version = await templates.currentVersion('acme', 'lobby');
      const [preview] = await configurations.previewMany('acme', version, [{ ...camera, deviceId: 'CAM-2' }]);
      expect(preview.prepared?.blocking).toEqual([
        expect.objectContaining({ ruleId: 'no-default-or-weak-passwords', field: 'users[0].password', severity: 'critical' }),
      ]);
      const push = await configurations.prepareForPush('acme', { ...camera, deviceId: 'CAM-2' }, { templateId: 'lobby', version: version.version });
      expect(push.blocking.map((f) => f.ruleId)).toEqual(['no-default-or-weak-passwords']);
    });

    it('names the parameter or secret a device lacks', async () => {
      const version = await templates.currentVersion('acme', 'lobby');
      const [preview] = await configurations.previewMany('acme', version, [{ ...camera, deviceId: 'CAM-NONE' }]);
      expect(preview.problems).toEqual([
        { field: 'params.vlan', reason: 'no value for this device and no default in the template' },
        { field: 'secret.opsPassword', reason: 'not set for this device' },
      ]);
    });

    it('removes a secret given as null and keeps the ones not named', async () => {
      await configurations.writeParameters('acme', 'CAM-3', { values: {}, secrets: { a: 'Aaaa-1111-bbbb', b: 'Bbbb-2222-cccc' } }, 'x');
      const after = await configurations.writeParameters('acme', 'CAM-3', { values: {}, secrets: { a: null } }, 'x');
      expect(after.secrets.map((s) => s.name)).toEqual(['b']);
    });
  });

  describe('policy and exceptions', () => {
    it('refuses rule parameters the rule does not take, naming the field', async () => {
      const attempt = policies.replacePolicy('acme', { rules: { 'tls-required': { enabled: true, parameters: { minimumVersion: 'SSLv3' } } } }, 'x');
      await expect(attempt).rejects.toBeInstanceOf(ValidationError);
      await expect(attempt).rejects.toMatchObject({ fields: [expect.objectContaining({ field: 'rules.tls-required.parameters.minimumVersion' })] });
    });

    it('lets an exception through until it is revoked, for that device only', async () => {
      const version = await templates.currentVersion('acme', 'lobby');
      const override = await policies.createOverride(
        'acme',
        { ruleId: 'no-default-or-weak-passwords', deviceId: 'CAM-2', reason: 'legacy VMS needs this account', expiresAt: new Date(Date.now() + 3_600_000).toISOString() },
        'api-key:approver',
        'api-key:operator',
      );
      const [excused, other] = await configurations.previewMany('acme', version, [
        { ...camera, deviceId: 'CAM-2' },
        { ...camera, deviceId: 'CAM-1' },
      ]);
      expect(excused.prepared?.blocking).toEqual([]);
      expect(excused.prepared?.findings[0].override).toMatchObject({ id: override.id, approvedBy: 'api-key:approver' });
      expect(other.prepared?.findings).toEqual([]);

      await policies.revokeOverride('acme', override.id, 'api-key:approver');
      const [again] = await configurations.previewMany('acme', version, [{ ...camera, deviceId: 'CAM-2' }]);
      expect(again.prepared?.blocking).toHaveLength(1);
      await expect(policies.getOverride('globex', override.id)).rejects.toThrow(/not found/);
    });

    it('turns a rule down to a warning for one tenant only', async () => {
      await policies.replacePolicy('acme', { rules: { 'no-default-or-weak-passwords': { enabled: true, severity: 'warning' } } }, 'x');
      const version = await templates.currentVersion('acme', 'lobby');
      const [preview] = await configurations.previewMany('acme', version, [{ ...camera, deviceId: 'CAM-2' }]);
      expect(preview.prepared?.findings.map((f) => f.severity)).toEqual(['warning']);
      expect(preview.prepared?.blocking).toEqual([]);
      expect((await policies.policyFor('globex'))['no-default-or-weak-passwords']).toMatchObject({ severity: 'critical', source: 'default' });
      await policies.replacePolicy('acme', { rules: {} }, 'x');
    });
  });

  describe('history', () => {
    it('is append-only', async () => {
      await configurations.recordPush({
        tenantId: 'acme',
        deviceId: 'CAM-1',
        templateId: 'lobby',
        templateVersion: 2,
        outcome: 'applied',
        findings: [],
        actor: 'provision:acme:CAM-1',
      });
      expect((await configurations.history('acme', 'CAM-1')).map((h) => h.outcome)).toEqual(['applied']);
      await expect(handle.db.execute(sql`update device_configuration_history set outcome = 'failed'`)).rejects.toThrow();
      await expect(handle.db.execute(sql`delete from device_configuration_history`)).rejects.toThrow();
      await expect(configurations.history('globex', 'CAM-1')).rejects.toThrow(/not found/);
    });
  });
});
