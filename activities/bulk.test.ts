import { eq } from 'drizzle-orm';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { bulkJobDevices, bulkJobs } from '../db/schema';
import { openTestDatabase } from '../test/support/database';
import { BulkJobStore } from '../bulk/bulk-job-store';
import type { ProvisioningPlanner } from '../provisioning/planner';
import { createBulkActivities } from './bulk';

let database: DatabaseHandle;
beforeAll(async () => {
  database = await openTestDatabase('server');
});
afterAll(async () => {
  await database?.close();
});

describe('bulk job bookkeeping', () => {
  it('stores the outcome of a device whose error text PostgreSQL cannot hold, escaped, instead of retrying for ever', async () => {
    const [job] = await database.db
      .insert(bulkJobs)
      .values({ tenantId: 'acme', templateId: 'https-camera', fileName: 'devices.csv', fileSha256: '00', rowCount: 1, options: {}, requestedBy: 'api-key:test' })
      .returning();
    await database.db.insert(bulkJobDevices).values({ jobId: job!.id, rowNumber: 2, deviceId: 'CAM-1', request: {}, hasCredentials: false, status: 'in_progress' });
    // A hostile device's answer quoted in the run's error, as a self-test summary would be.
    const activities = createBulkActivities({
      store: new BulkJobStore(database.db),
      planner: undefined as unknown as ProvisioningPlanner,
      client: undefined as unknown as Client,
    });

    await new MockActivityEnvironment().run(activities.recordBulkOutcomes, {
      jobId: job!.id,
      outcomes: [
        {
          rowNumber: 2,
          deviceId: 'CAM-1',
          outcome: 'failed' as const,
          failedStep: 'selfTest' as const,
          error: 'device failed its self-test: tamper\u0000switch \ud800open',
          startedAt: new Date().toISOString(),
          finishedAt: new Date().toISOString(),
        },
      ],
    });

    const [row] = await database.db.select().from(bulkJobDevices).where(eq(bulkJobDevices.jobId, job!.id));
    expect(row).toMatchObject({ status: 'failed', failedStep: 'selfTest', error: 'device failed its self-test: tamper\\u0000switch \\ud800open' });
  });
});
