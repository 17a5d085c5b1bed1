/**
 * Configuration management end to end, over the API and against reference devices: template
 * versions that never change once saved, per-device parameters and sealed secrets rendered into
 * what the device receives (and nowhere else), the compliance gate before anything is pushed, an
 * approver's exception, and the history and compliance reports that follow.
 */
import { randomBytes } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { dataEncryptionKeys, deviceSecrets } from '../../db/schema';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../custody/payload-codec';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor, type TestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices = new TestDevices();
/** The default key's identity: the requester of every provisioning this file starts. */
let administrator: string;

const templatesPath = '/api/v1/provisioning/templates';
const lobbyBody = {
  hostname: '{{device.hostname}}',
  timezone: 'Europe/Berlin',
  site: '{{device.site}}',
  ntp: { servers: '{{params.ntpServers}}' },
  syslog: { host: '{{params.syslogHost}}', port: 6514, protocol: 'tls' },
  tls: { minVersion: 'TLSv1.2' },
  management: { httpEnabled: false, passwordLogin: false },
  vlan: { id: '{{params.vlan}}' },
  users: [{ username: 'ops', password: '{{secret.opsPassword}}', role: 'operator' }],
};
const lobbyParameters = {
  ntpServers: { type: 'list', description: 'NTP servers of the site' },
  syslogHost: { type: 'string', default: 'syslog.hq.internal' },
  vlan: { type: 'integer', minimum: 1, maximum: 4094 },
  opsPassword: { type: 'secret', description: 'The local operator account' },
};
/** A template as PUT takes it (the id comes from the path); POST adds one. */
const lobbyInput = { name: 'Lobby cameras', protocol: 'https', deviceType: 'camera', body: lobbyBody, parameters: lobbyParameters };
const lobby = { id: 'lobby', ...lobbyInput };

const parametersPath = (deviceId: string) => `/api/v1/provisioning/devices/${deviceId}/configuration/parameters`;
const configurationPath = (deviceId: string) => `/api/v1/provisioning/devices/${deviceId}/configuration`;
const compliancePath = (deviceId: string) => `/api/v1/provisioning/devices/${deviceId}/compliance`;
const overridesPath = '/api/v1/provisioning/compliance/overrides';

/** A password no rule objects to, different every run so finding it anywhere means it leaked. */
const strongSecret = () => `Ops-${randomBytes(12).toString('base64url')}-9!`;

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  administrator = (await api.call('GET', '/api/v1/access/me')).body.subject;
  const created = await api.call('POST', templatesPath, { body: lobby });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

async function setParameters(device: TestDevice, secret: string, values: Record<string, unknown> = {}) {
  const response = await api.call('PUT', parametersPath(device.request.serialNumber), {
    body: { values: { ntpServers: ['10.20.0.1', '10.20.0.2'], vlan: 120, ...values }, secrets: { opsPassword: secret } },
    key: await api.keyFor('acme', 'operator'),
  });
  expect(response.status).toBe(200);
  return response;
}

async function provision(device: TestDevice, templateId: string) {
  return api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [device.request], templateId } });
}

async function finished(deviceId: string) {
  const handle = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId));
  await handle.result().catch(() => undefined);
  return (await api.call('GET', `/api/v1/provisioning/devices/${provisioningWorkflowId('acme', deviceId)}/status`)).body;
}

/** Every row of every table, as the database would print it. */
async function databaseText(): Promise<string> {
  const db = service.parts.database.db;
  const rowsOf = (result: unknown) => (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Record<string, string>[];
  const tables = rowsOf(await db.execute(sql`select table_name from information_schema.tables where table_schema = 'public'`));
  const texts: string[] = [];
  for (const { table_name: table } of tables) {
    texts.push(...rowsOf(await db.execute(sql.raw(`select t::text as row from "${table}" t`))).map((r) => r.row));
  }
  return texts.join('\n');
}

/** The run's history with every payload decrypted, as an operator with the codec would read it. */
async function decodedHistory(deviceId: string): Promise<string> {
  const history = await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId)).fetchHistory();
  const payloads: Payload[] = [];
  const collect = (node: unknown) => {
    if (!node || typeof node !== 'object') return;
    if ((node as Payload).data instanceof Uint8Array && (node as Payload).metadata) {
      payloads.push(node as Payload);
      return;
    }
    for (const value of Object.values(node)) collect(value);
  };
  collect(history);
  const decoded = await new EncryptionCodec(service.parts.payloadKeyring).decode(payloads);
  return [JSON.stringify(history), ...decoded.map((p) => Buffer.from(p.data ?? []).toString('utf8'))].join('\n');
}

describe('template versions', () => {
  it('are created by every update and never change, so the old version stays readable', async () => {
    await api.call('POST', templatesPath, { body: { ...lobby, id: 'versioned' } });
    const updated = await api.call('PUT', `${templatesPath}/versioned`, {
      body: { ...lobbyInput, body: { ...lobbyBody, timezone: 'UTC' } },
    });
    expect(updated.body.version).toBe(2);

    const versions = await api.call('GET', `${templatesPath}/versioned/versions`);
    expect(versions.body.versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const first = await api.call('GET', `${templatesPath}/versioned/versions/1`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ templateId: 'versioned', version: 1, body: { timezone: 'Europe/Berlin' }, createdBy: administrator });
    expect((await api.call('GET', `${templatesPath}/versioned/versions/2`)).body.body.timezone).toBe('UTC');
    expect((await api.call('GET', `${templatesPath}/versioned/versions/3`)).status).toBe(404);
    expect((await api.call('GET', `${templatesPath}/versioned/versions/first`)).body.errors).toEqual([
      expect.objectContaining({ field: 'path:version' }),
    ]);
    expect((await api.call('GET', `${templatesPath}/default/versions`)).body.versions).toHaveLength(1);
  });
});

describe('a device provisioned with its own parameters', () => {
  let device: TestDevice;
  let secret: string;

  beforeAll(async () => {
    device = await devices.start();
    secret = strongSecret();
    const written = await setParameters(device, secret, { syslogHost: 'syslog-7.hq.internal' });
    expect(JSON.stringify(written.body)).not.toContain(secret);
    expect(written.body.secrets).toEqual([expect.objectContaining({ name: 'opsPassword', strength: { acceptable: true, reasons: [] } })]);
    expect((await provision(device, 'lobby')).status).toBe(202);
    expect((await finished(device.request.serialNumber)).status).toBe('completed');
  });

  it('receives the template rendered with those parameters and the secret in the clear, and nothing else does', () => {
    const received = device.device.configuration!;
    expect(received).toMatchObject({ templateId: 'lobby', version: 1 });
    expect(received.settings).toMatchObject({
      hostname: device.request.serialNumber.toLowerCase(),
      ntp: { servers: ['10.20.0.1', '10.20.0.2'] },
      syslog: { host: 'syslog-7.hq.internal', port: 6514, protocol: 'tls' },
      vlan: { id: 120 },
      users: [{ username: 'ops', password: secret, role: 'operator' }],
    });
  });

  it('records the version it runs and the push in its history', async () => {
    const configuration = await api.call('GET', configurationPath(device.request.serialNumber), { key: await api.keyFor('acme', 'viewer') });
    expect(configuration.status).toBe(200);
    expect(configuration.body.current).toEqual({ templateId: 'lobby', version: 1, hash: device.device.configuration!.hash });
    expect(configuration.body.history).toEqual([
      expect.objectContaining({
        templateId: 'lobby',
        version: 1,
        outcome: 'applied',
        deviceHash: device.device.configuration!.hash,
        settingsHash: expect.stringMatching(/^[0-9a-f]{64}$/),
        workflowId: provisioningWorkflowId('acme', device.request.serialNumber),
        requestedBy: administrator,
        findings: [],
      }),
    ]);
    const status = await finished(device.request.serialNumber);
    expect(status.configurationVersion).toBe(1);
  });

  it('never shows the secret in API answers, database rows or workflow history', async () => {
    const answers = await Promise.all([
      api.call('GET', parametersPath(device.request.serialNumber)),
      api.call('GET', configurationPath(device.request.serialNumber)),
      api.call('GET', compliancePath(device.request.serialNumber)),
      api.call('GET', `/api/v1/provisioning/devices/${provisioningWorkflowId('acme', device.request.serialNumber)}/status`),
      api.call('GET', `/api/v1/audit/events?targetId=${device.request.serialNumber}`),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(answers[0].body.secrets.map((s: { name: string }) => s.name)).toEqual(['opsPassword']);
    for (const answer of answers) expect(JSON.stringify(answer.body)).not.toContain(secret);

    const stored = await databaseText();
    expect(stored).toContain(device.request.serialNumber);
    expect(stored).not.toContain(secret);
    // Sealed under acme's data key, which only key custody can unwrap, not under the key-encryption key.
    const [sealedUnder] = await service.parts.database.db
      .select({ keyId: deviceSecrets.keyEncryptionKeyId })
      .from(deviceSecrets)
      .where(and(eq(deviceSecrets.deviceId, device.request.serialNumber), eq(deviceSecrets.purpose, 'configuration-secret:opsPassword')));
    const [dataKey] = await service.parts.database.db.select().from(dataEncryptionKeys).where(eq(dataEncryptionKeys.tenantId, 'acme'));
    expect(sealedUnder!.keyId).toBe(dataKey!.id);

    const history = await decodedHistory(device.request.serialNumber);
    expect(history).toContain(device.request.serialNumber);
    expect(history).toContain('pushDeviceConfiguration');
    expect(history).not.toContain(secret);
  });

  it('is reported compliant, and a stricter policy reports without blocking what only warns', async () => {
    const report = await api.call('GET', compliancePath(device.request.serialNumber), { key: await api.keyFor('acme', 'viewer') });
    expect(report.body).toMatchObject({ templateId: 'lobby', version: 1, runningVersion: 1, status: 'compliant', deployable: true, findings: [] });
    expect(report.body.rulesEvaluated).toEqual(expect.arrayContaining(['tls-required', 'http-disabled', 'no-default-or-weak-passwords']));

    const policy = await api.call('PUT', '/api/v1/provisioning/compliance/policy', {
      body: { rules: { 'tls-required': { enabled: true, severity: 'warning', parameters: { minimumVersion: 'TLSv1.3' } } } },
    });
    expect(policy.status).toBe(200);
    expect(policy.body.rules.find((r: { id: string }) => r.id === 'tls-required')).toMatchObject({ source: 'tenant', blocking: false });
    try {
      const stricter = await api.call('GET', compliancePath(device.request.serialNumber));
      expect(stricter.body).toMatchObject({ status: 'non-compliant', deployable: true });
      expect(stricter.body.findings).toEqual([
        expect.objectContaining({ ruleId: 'tls-required', field: 'tls.minVersion', severity: 'warning' }),
      ]);
    } finally {
      await api.call('PUT', '/api/v1/provisioning/compliance/policy', { body: { rules: {} } });
    }
  });
});

describe('a non-compliant configuration', () => {
  it('is refused with the rule named before any device is contacted', async () => {
    const device = await devices.start();
    await setParameters(device, strongSecret());
    await api.call('POST', templatesPath, {
      body: { ...lobby, id: 'lobby-http', body: { ...lobbyBody, management: { httpEnabled: true, passwordLogin: false } } },
    });
    const refused = await provision(device, 'lobby-http');
    expect(refused.status).toBe(422);
    expect(refused.type).toContain('application/problem+json');
    expect(refused.body.errors).toEqual([
      { field: 'devices[0]', reason: 'compliance rule http-disabled at management.httpEnabled: plain HTTP management must be off (false)' },
    ]);
    expect(device.device.receivedRequests).toEqual([]);

    const history = await api.call('GET', configurationPath(device.request.serialNumber));
    expect(history.body.history).toEqual([
      expect.objectContaining({ templateId: 'lobby-http', outcome: 'blocked', requestedBy: administrator, workflowId: null }),
    ]);
  });

  it('is refused for a weak or default secret, judged when it was written', async () => {
    const device = await devices.start();
    const written = await setParameters(device, 'admin');
    expect(written.body.secrets[0].strength).toMatchObject({ acceptable: false, reasons: expect.arrayContaining(['a well-known default password']) });
    const refused = await provision(device, 'lobby');
    expect(refused.status).toBe(422);
    expect(refused.body.errors[0].reason).toMatch(/^compliance rule no-default-or-weak-passwords at users\[0\]\.password/);
    expect(device.device.receivedRequests).toEqual([]);
  });

  it('answers bad input with the field and the reason', async () => {
    const device = await devices.start();
    const asValue = await api.call('PUT', parametersPath(device.request.serialNumber), { body: { values: { adminPassword: 'x' } } });
    expect(asValue.status).toBe(400);
    expect(asValue.body.errors).toEqual([{ field: 'values.adminPassword', reason: expect.stringContaining('give it under secrets') }]);
    const both = await api.call('POST', overridesPath, {
      key: await api.keyFor('acme', 'approver'),
      body: { ruleId: 'http-disabled', deviceId: 'x', templateId: 'lobby', reason: 'both at once please', expiresAt: new Date(Date.now() + 60_000).toISOString() },
    });
    expect(both.status).toBe(400);
    expect(both.body.errors).toEqual([expect.objectContaining({ field: 'deviceId' })]);
    const unknownRule = await api.call('PUT', '/api/v1/provisioning/compliance/policy', { body: { rules: { 'no-telnet': { enabled: true } } } });
    expect(unknownRule.status).toBe(400);
    expect(unknownRule.body.errors[0].field).toMatch(/^rules/);
  });
});

describe('a configuration that a stricter policy made non-compliant while its provisioning waited', () => {
  let device: TestDevice;
  let secret: string;
  let provisioningId: string;

  async function startAndWaitForApproval() {
    const started = await provision(device, 'guarded');
    expect(started.status).toBe(202);
    provisioningId = started.body.provisionings[0].provisioningId;
    await waitFor(async () => {
      const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
      return status.body.metadata.awaitingApproval ? status.body : undefined;
    }, 'the run to wait for approval');
  }

  const approve = async () =>
    api.call('POST', `/api/v1/provisioning/devices/${provisioningId}/approval`, {
      key: await api.keyFor('acme', 'approver'),
      body: { decision: 'approve' },
    });

  beforeAll(async () => {
    await api.call('POST', '/api/v1/provisioning/approval-policies', { body: { scope: 'site', scopeValue: 'guarded', timeoutSeconds: 600 } });
    // Plain HTTP only warns under the tenant's policy when the request is checked...
    const lenient = await api.call('PUT', '/api/v1/provisioning/compliance/policy', {
      body: { rules: { 'http-disabled': { enabled: true, severity: 'warning' } } },
    });
    expect(lenient.status).toBe(200);
    await api.call('POST', templatesPath, { body: { ...lobby, id: 'guarded', body: { ...lobbyBody, management: { httpEnabled: true, passwordLogin: false } } } });
    device = await devices.start({ site: 'guarded' });
    secret = strongSecret();
    await setParameters(device, secret);
    await startAndWaitForApproval();
    // ...and blocks again (the default) by the time the approved run pushes it.
    expect((await api.call('PUT', '/api/v1/provisioning/compliance/policy', { body: { rules: {} } })).status).toBe(200);
    expect((await approve()).status).toBe(200);
  });

  it('is stopped by the push step, for good, before the configuration reaches the device', async () => {
    const status = await finished(device.request.serialNumber);
    expect(status.status).toBe('failed');
    expect(status.error).toMatchObject({ type: 'ComplianceViolationError', step: 'pushConfiguration' });
    expect(status.error.message).toContain('http-disabled');
    expect(status.provisioningSteps.find((s: { step: string }) => s.step === 'pushConfiguration').retryCount).toBe(0);
    expect(device.device.receivedRequests).not.toContain('PUT /api/v1/configuration');
    expect(device.device.configuration).toBeUndefined();

    const history = await api.call('GET', configurationPath(device.request.serialNumber));
    expect(history.body.history[0]).toMatchObject({
      templateId: 'guarded',
      version: 1,
      outcome: 'blocked',
      requestedBy: administrator,
      workflowId: provisioningId,
      findings: [expect.objectContaining({ ruleId: 'http-disabled', field: 'management.httpEnabled' })],
    });
  });

  it('raises a compliance alert and puts the refusal on record', async () => {
    const alerts = await api.call('GET', '/api/v1/alerts?state=firing');
    expect(alerts.body.alerts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'configuration.compliance_violation', severity: 'critical', summary: expect.stringContaining(device.request.serialNumber) }),
      ]),
    );
    const events = await api.call('GET', `/api/v1/audit/events?action=configuration.blocked&targetId=${device.request.serialNumber}`);
    expect(events.body.events).toEqual([expect.objectContaining({ outcome: 'failure', actor: provisioningId })]);
  });

  it('lists the finding in the device and tenant compliance reports', async () => {
    const report = await api.call('GET', compliancePath(device.request.serialNumber));
    expect(report.body).toMatchObject({ templateId: 'guarded', version: 1, runningVersion: null, status: 'non-compliant', deployable: false });
    expect(report.body.findings).toEqual([expect.objectContaining({ ruleId: 'http-disabled', severity: 'critical' })]);

    const summary = await api.call('GET', '/api/v1/provisioning/compliance/report', { key: await api.keyFor('acme', 'viewer') });
    expect(summary.status).toBe(200);
    expect(summary.body.byRule).toEqual(expect.arrayContaining([{ ruleId: 'http-disabled', devices: 1 }]));
    expect(summary.body.attention).toEqual(
      expect.arrayContaining([expect.objectContaining({ deviceId: device.request.serialNumber, status: 'non-compliant' })]),
    );
    expect(summary.body.compliant).toBeGreaterThanOrEqual(1);
  });

  it('cannot be excused by a viewer, an operator or the requester', async () => {
    const body = { ruleId: 'http-disabled', deviceId: device.request.serialNumber, reason: 'vendor firmware needs HTTP for the web player', expiresAt: new Date(Date.now() + 86_400_000).toISOString() };
    for (const role of ['viewer', 'operator'] as const) {
      expect((await api.call('POST', overridesPath, { key: await api.keyFor('acme', role), body })).status).toBe(403);
    }
    const own = await api.call('POST', overridesPath, { body });
    expect(own.status).toBe(403);
    expect(own.body.detail).toContain('requester');
    expect((await api.call('GET', `${overridesPath}?deviceId=${device.request.serialNumber}`)).body.overrides).toEqual([]);
  });

  it('takes the requester from the record, never from the caller: naming someone else as requester is refused', async () => {
    const body = { ruleId: 'http-disabled', deviceId: device.request.serialNumber, reason: 'vendor firmware needs HTTP for the web player', expiresAt: new Date(Date.now() + 86_400_000).toISOString() };
    const disguised = await api.call('POST', overridesPath, { body: { ...body, requestedBy: 'user:someone-else' } });
    expect(disguised.status).toBe(400);
    expect(JSON.stringify(disguised.body.errors)).toContain('requestedBy');
    expect((await api.call('GET', `${overridesPath}?deviceId=${device.request.serialNumber}`)).body.overrides).toEqual([]);
  });

  it("refuses an exception for the template from whoever's deployment on it was blocked, as for the device", async () => {
    const body = { ruleId: 'http-disabled', templateId: 'guarded', reason: 'vendor firmware needs HTTP for the web player', expiresAt: new Date(Date.now() + 86_400_000).toISOString() };
    const own = await api.call('POST', overridesPath, { body });
    expect(own.status).toBe(403);
    expect(own.body.detail).toContain('requester');
    expect((await api.call('GET', `${overridesPath}?templateId=guarded`)).body.overrides).toEqual([]);
  });

  it("goes through once an approver grants an exception, which the device's history shows", async () => {
    const granted = await api.call('POST', overridesPath, {
      key: await api.keyFor('acme', 'approver'),
      body: { ruleId: 'http-disabled', deviceId: device.request.serialNumber, reason: 'vendor firmware needs HTTP for the web player', expiresAt: new Date(Date.now() + 86_400_000).toISOString() },
    });
    expect(granted.status).toBe(201);
    expect(granted.body).toMatchObject({ requestedBy: administrator, active: true, scope: 'device' });

    await startAndWaitForApproval();
    expect((await approve()).status).toBe(200);
    const status = await finished(device.request.serialNumber);
    expect(status.status).toBe('completed');
    expect(device.device.configuration).toMatchObject({ version: 1, settings: { management: { httpEnabled: true } } });

    const history = await api.call('GET', configurationPath(device.request.serialNumber));
    expect(history.body.history.map((h: { outcome: string }) => h.outcome)).toEqual(['applied', 'blocked']);
    expect(history.body.history[0].findings).toEqual([
      expect.objectContaining({ ruleId: 'http-disabled', override: expect.objectContaining({ id: granted.body.id }) }),
    ]);
    const report = await api.call('GET', compliancePath(device.request.serialNumber));
    expect(report.body).toMatchObject({ status: 'compliant', deployable: true, runningVersion: 1 });
    const alerts = await api.call('GET', '/api/v1/alerts?state=firing');
    // Its compliance alert has resolved (the device's firmware, unknown to the catalogue, still alerts on its own).
    expect(
      alerts.body.alerts.filter((a: { kind: string; summary: string }) => a.kind === 'configuration.compliance_violation' && a.summary.includes(device.request.serialNumber)),
    ).toEqual([]);

    // Revoked, it no longer excuses anything, and stays on record.
    expect((await api.call('DELETE', `${overridesPath}/${granted.body.id}`, { key: await api.keyFor('acme', 'approver') })).status).toBe(204);
    expect((await api.call('GET', `${overridesPath}/${granted.body.id}`)).body).toMatchObject({ active: false, revokedBy: expect.any(String) });
    expect((await api.call('GET', compliancePath(device.request.serialNumber))).body.deployable).toBe(false);
    expect(JSON.stringify(history.body)).not.toContain(secret);
  });
});
