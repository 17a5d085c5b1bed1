/**
 * A zero-touch registration waits for weeks of workflow time on the time-skipping test server and
 * ends cleanly when it expires with its device never seen.
 */
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { auditEvents } from '../../db/schema';
import { zeroTouchWorkflowId, type ZeroTouchStatus } from '../../contracts/zero-touch';
import { ZeroTouchRegistrationStore } from '../../zero-touch/registration-store';
import { registrationRequestSchema, ZeroTouchRegistrations } from '../../zero-touch/registrations';
import { startTestService, type TestService } from '../support/service';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ temporal: 'time-skipping' });
});
afterAll(async () => {
  await service?.stop();
});

it('ends a registration whose device never appears when it expires, and records that it expired', async () => {
  const registrations = new ZeroTouchRegistrations({
    store: new ZeroTouchRegistrationStore(service.parts.database.db),
    vault: service.parts.vault,
    client: service.env.client,
    taskQueue: service.config.temporal.taskQueue,
    adapters: service.parts.adapters,
    networks: service.parts.networks,
    templates: service.parts.templates,
    searchAttributes: false,
  });
  const request = registrationRequestSchema(['https']).parse({ devices: [{ serialNumber: 'ZT-NEVER', protocol: 'https', site: 'hq', expiresInDays: 14 }] });
  const [registered] = await registrations.register('acme', request, 'user:test');

  // Waiting on the server's clock: the result comes once the 14 days have been skipped.
  const status: ZeroTouchStatus = await service.env.client.workflow.getHandle(zeroTouchWorkflowId('acme', 'ZT-NEVER')).result();
  expect(status).toMatchObject({ registrationId: registered!.id, state: 'expired', sightings: [], mismatches: [] });
  expect(Date.parse(status.completedAt!)).toBeGreaterThanOrEqual(Date.parse(registered!.expiresAt));
  const audited = await service.parts.database.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.tenantId, 'acme'), eq(auditEvents.action, 'zero_touch.expired')));
  expect(audited.map((event) => event.targetId)).toEqual(['ZT-NEVER']);
});
