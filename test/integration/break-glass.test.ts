/**
 * Emergency access through the real API, database and audit trail: a break-glass administrator key
 * works only with a stated reason, each use raises a critical alert and is audited with the reason,
 * and ordinary keys neither need nor notice the header.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { breakGlassReasonHeader, maximumBreakGlassReasonLength } from '../../access/api-keys';
import { alertKinds } from '../../alerts/alert-store';
import { startTestApi, type TestApi } from '../support/api';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
let breakGlassKey: string;
let breakGlassId: string;
const tenant = 'emergency';

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: tenant });
  const created = await service.parts.apiKeys.create({ tenantId: tenant, role: 'administrator', name: 'safe 1', breakGlass: true, createdBy: 'test' });
  breakGlassKey = created.key;
  breakGlassId = created.id;
});

afterAll(async () => {
  await api?.close();
  await service?.stop();
});

const breakGlassEvents = async () =>
  (await service.parts.audit.list(tenant, { action: 'access.break_glass_used', limit: 500 })).filter((event) => event.targetId === `api-key:${breakGlassId}`);

describe('break-glass access', () => {
  it('refuses a break-glass key without a reason with 403 naming the header, and audits the refusal', async () => {
    const attempts: Record<string, string>[] = [{}, { [breakGlassReasonHeader]: '   ' }, { [breakGlassReasonHeader]: 'x'.repeat(maximumBreakGlassReasonLength + 1) }];
    for (const headers of attempts) {
      const response = await api.call('GET', '/api/v1/access/me', { key: breakGlassKey, headers });
      expect(response.status).toBe(403);
      expect(response.type).toContain('application/problem+json');
      expect(response.body.errors).toEqual([expect.objectContaining({ field: `header:${breakGlassReasonHeader}` })]);
    }
    const refusals = (await breakGlassEvents()).filter((event) => event.outcome === 'failure');
    expect(refusals).toHaveLength(3);
    expect(refusals[0]!.details).toMatchObject({ method: 'GET', path: '/api/v1/access/me' });
    expect(await service.parts.alerts.list(tenant, { open: true })).not.toContainEqual(expect.objectContaining({ kind: alertKinds.breakGlassUsed }));
  });

  it('accepts a break-glass key with a reason, raises a critical alert and audits the reason', async () => {
    const reason = 'identity provider down, INC-4711';
    const me = await api.call('GET', '/api/v1/access/me', { key: breakGlassKey, headers: { [breakGlassReasonHeader]: reason } });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ tenantId: tenant, role: 'administrator' });

    const accepted = (await breakGlassEvents()).filter((event) => event.outcome === 'success');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.details).toMatchObject({ reason, method: 'GET', path: '/api/v1/access/me', keyName: 'safe 1' });

    const alerts = (await service.parts.alerts.list(tenant, { open: true })).filter((alert) => alert.kind === alertKinds.breakGlassUsed);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ severity: 'critical', details: expect.objectContaining({ reason }) });
  });

  it('puts the reason on the record of a change made with the break-glass key', async () => {
    const reason = 'all administrators locked out';
    const created = await api.call('POST', '/api/v1/access/api-keys', {
      key: breakGlassKey,
      headers: { [breakGlassReasonHeader]: reason },
      body: { name: 'new admin', role: 'administrator' },
    });
    expect(created.status).toBe(201);
    const recorded = await service.parts.audit.list(tenant, { action: 'api.create_api_key', limit: 500 });
    expect(recorded.at(-1)).toMatchObject({ actor: `api-key:${breakGlassId}`, outcome: 'success', details: expect.objectContaining({ breakGlassReason: reason }) });
    // A second reason is a second alert; every use is on the audit trail.
    const alerts = (await service.parts.alerts.list(tenant, { open: true })).filter((alert) => alert.kind === alertKinds.breakGlassUsed);
    expect(alerts.map((alert) => alert.details)).toContainEqual(expect.objectContaining({ reason }));
    expect((await breakGlassEvents()).filter((event) => event.outcome === 'success')).toHaveLength(2);
  });

  it('lets ordinary keys ignore the reason header, with no alert and no break-glass audit', async () => {
    const ordinary = await api.keyFor(tenant, 'viewer');
    const before = (await service.parts.alerts.list(tenant, { open: true })).length;
    expect((await api.call('GET', '/api/v1/access/me', { key: ordinary })).status).toBe(200);
    expect((await api.call('GET', '/api/v1/access/me', { key: ordinary, headers: { [breakGlassReasonHeader]: 'curious' } })).status).toBe(200);
    expect((await service.parts.alerts.list(tenant, { open: true })).length).toBe(before);
    const events = await service.parts.audit.list(tenant, { action: 'access.break_glass_used', limit: 500 });
    expect(events.filter((event) => event.targetId !== `api-key:${breakGlassId}`)).toEqual([]);
  });

  it('makes break-glass keys administrator keys only', async () => {
    await expect(
      service.parts.apiKeys.create({ tenantId: tenant, role: 'operator', name: 'wrong', breakGlass: true, createdBy: 'test' }),
    ).rejects.toThrow(/administrator/);
  });
});
