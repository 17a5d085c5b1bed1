/**
 * Alerts end to end against a real Temporal dev server: the schedule starts `evaluateAlerts` on a
 * worker running the real activities over the real database, and a loopback webhook receiver checks
 * every signature. Provisioning runs for the failure-rate rule are real runs against reference devices.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ScheduleOverlapPolicy, WorkflowFailedError, type ScheduleHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAlertActivities, type AlertActivities } from '../../activities/alerts';
import { AlertStore, type AlertAuditEvent } from '../../alerts/alert-store';
import { ensureAlertSchedule } from '../../alerts/schedule';
import { closedProvisioningRunsQuery, scheduledAlertRules, visibilityCounter } from '../../alerts/rules';
import { idempotencyHeader, signatureHeader, verifyWebhookSignature, type AlertNotification } from '../../alerts/webhook';
import { payloadDataConverter } from '../../custody/payload-codec';
import { alerts, certificates, type NewCertificateRow } from '../../db/schema';
import { workflowsPath } from '../../service/worker';
import type { AlertEvaluationSummary } from '../../workflows/alert-evaluation';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { TestDevices, waitFor, type TestDevice } from '../support/devices';
import { startTestService, testLogger, type TestService } from '../support/service';
import { certificateRowFixture } from '../support/certificates';

const dayMs = 86_400_000;
const secret = randomBytes(32).toString('hex');
const alertTaskQueue = `alerts-test-${randomUUID()}`;
const scheduleId = `alert-evaluation-${randomUUID()}`;

interface Delivery {
  notification: AlertNotification;
  signatureValid: boolean;
  idempotencyKey: string;
  answeredWith: number;
}

/** The operator's webhook: verifies each signature and answers 500 while told to fail. */
class WebhookReceiver {
  readonly deliveries: Delivery[] = [];
  failuresToAnswer = 0;
  #server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const answeredWith = this.failuresToAnswer > 0 ? 500 : 204;
      if (answeredWith === 500) this.failuresToAnswer--;
      this.deliveries.push({
        notification: JSON.parse(body) as AlertNotification,
        signatureValid: verifyWebhookSignature(body, req.headers[signatureHeader.toLowerCase()] as string | undefined, secret),
        idempotencyKey: String(req.headers[idempotencyHeader.toLowerCase()]),
        answeredWith,
      });
      res.writeHead(answeredWith).end();
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/alerts`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  of(tenantId: string): Delivery[] {
    return this.deliveries.filter((delivery) => delivery.notification.tenantId === tenantId);
  }
}

let service: TestService;
let receiver: WebhookReceiver;
let worker: Worker;
let workerRunning: Promise<void>;
let schedule: ScheduleHandle;
const audited: AlertAuditEvent[] = [];
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService();
  receiver = new WebhookReceiver();
  const url = await receiver.start();
  const alertStore = new AlertStore({
    db: service.parts.database.db,
    recordAudit: async (event) => {
      audited.push(event);
      return service.parts.audit.append(event);
    },
  });
  worker = await Worker.create({
    connection: service.env.nativeConnection,
    namespace: service.config.temporal.namespace,
    taskQueue: alertTaskQueue,
    dataConverter: payloadDataConverter(service.parts.payloadKeyring),
    workflowsPath,
    activities: createAlertActivities({
      alerts: alertStore,
      rules: scheduledAlertRules({
        db: service.parts.database.db,
        devices: service.parts.registry,
        alerts: alertStore,
        count: visibilityCounter(service.env.client),
        settings: {
          certificateExpiry: { warningDays: 30, criticalDays: 7 },
          provisioningFailureRate: { windowMinutes: 60, threshold: 0.5, minimumRuns: 4 },
        },
      }),
      // Retries are due at once here, so that the next evaluation retries; backoff is the store's test.
      webhook: { url, secret, timeoutMs: 5_000, retry: { initialIntervalMs: 0, maximumIntervalMs: 0 } },
      logger: testLogger,
    }),
  });
  workerRunning = worker.run();
  // Daily, so the schedule itself stays out of the way; the tests trigger each evaluation.
  schedule = await ensureAlertSchedule(service.env.client, { taskQueue: alertTaskQueue, every: '24h', scheduleId });
});
afterAll(async () => {
  await schedule?.delete().catch(() => undefined);
  worker?.shutdown();
  await workerRunning;
  await receiver?.stop();
  await service?.stop();
});
afterEach(async () => {
  await devices.stopAll();
});

let lastTriggeredAt = 0;

/** Triggers the schedule, as its interval would, and waits for the evaluation it started to finish. */
async function runScheduledEvaluation(): Promise<AlertEvaluationSummary> {
  // Scheduled runs are named by the second they start in; two triggers in one second would collide.
  const wait = lastTriggeredAt + 1_100 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const earlier = new Set((await schedule.describe()).info.recentActions.map((action) => action.action.workflow.workflowId));
  lastTriggeredAt = Date.now();
  await schedule.trigger();
  const started = await waitFor(async () => {
    const { info } = await schedule.describe();
    return info.recentActions.find((action) => !earlier.has(action.action.workflow.workflowId));
  }, 'the triggered evaluation to start');
  const { workflowId, firstExecutionRunId } = started.action.workflow;
  return service.env.client.workflow.getHandle(workflowId, firstExecutionRunId).result();
}

/** A certificate row as the CA stores it, expiring `days` from now. */
async function insertCertificate(tenantId: string, days: number): Promise<NewCertificateRow & { id: string }> {
  const [row] = await service.parts.database.db
    .insert(certificates)
    .values(
      certificateRowFixture(tenantId, {
        issuedAt: new Date(Date.now() - 300 * dayMs),
        expiresAt: new Date(Date.now() + days * dayMs),
      }),
    )
    .returning();
  return row;
}

async function alertRowsOf(tenantId: string) {
  return service.parts.database.db.select().from(alerts).where(eq(alerts.tenantId, tenantId));
}

async function auditedActions(tenantId: string) {
  return (await service.parts.audit.list(tenantId, { limit: 500 })).map((event) => ({
    action: event.action,
    targetId: event.targetId,
    actor: event.actor,
    outcome: event.outcome,
  }));
}

describe('alert evaluation on its schedule', () => {
  it('delivers one signed firing alert per expiring certificate, and does not deliver it again on the next evaluation', async () => {
    const tenant = 'alerts-expiry';
    const soon = await insertCertificate(tenant, 20);
    const verySoon = await insertCertificate(tenant, 3);
    await insertCertificate(tenant, 200);

    const summary = await runScheduledEvaluation();
    expect(summary.evaluation.raised).toBeGreaterThanOrEqual(2);
    expect(summary.delivery.webhookConfigured).toBe(true);

    const delivered = receiver.of(tenant);
    expect(delivered).toHaveLength(2);
    expect(delivered.every((d) => d.signatureValid && d.answeredWith === 204)).toBe(true);
    const byCertificate = new Map(delivered.map((d) => [(d.notification.details as { certificateId: string }).certificateId, d]));
    expect(byCertificate.get(soon.id)?.notification).toMatchObject({
      tenantId: tenant,
      kind: 'certificate.expiring',
      severity: 'warning',
      state: 'firing',
    });
    expect(byCertificate.get(verySoon.id)?.notification).toMatchObject({ kind: 'certificate.expiring', severity: 'critical', state: 'firing' });
    for (const d of delivered) expect(d.idempotencyKey).toBe(`${d.notification.id}:firing`);

    const again = await runScheduledEvaluation();
    expect(again.evaluation.stillFiring).toBeGreaterThanOrEqual(2);
    expect(receiver.of(tenant)).toHaveLength(2);
    expect((await alertRowsOf(tenant)).map((row) => row.deliveredAt)).toEqual([expect.any(Date), expect.any(Date)]);

    const ids = delivered.map((d) => d.notification.id).sort();
    const audit = await auditedActions(tenant);
    expect(audit.filter((e) => e.action === 'alert.raised').map((e) => e.targetId).sort()).toEqual(ids);
    expect(audit.filter((e) => e.action === 'alert.delivered').map((e) => e.targetId).sort()).toEqual(ids);
    expect(audit.every((e) => e.outcome === 'success')).toBe(true);
    expect(audit.find((e) => e.action === 'alert.raised')?.actor).toBe('alert-evaluation');
    expect(audited.filter((e) => e.tenantId === tenant)).toHaveLength(4);
  });

  it('retries a delivery the webhook answered with 500 on the next evaluation, with the same body and idempotency key', async () => {
    const tenant = 'alerts-retry';
    await insertCertificate(tenant, 10);
    receiver.failuresToAnswer = 1;

    const first = await runScheduledEvaluation();
    expect(first.delivery.failed).toBe(1);
    expect(receiver.of(tenant).map((d) => d.answeredWith)).toEqual([500]);
    const [row] = await alertRowsOf(tenant);
    expect(row).toMatchObject({ deliveredAt: null, deliveryAttempts: 1, lastDeliveryError: 'webhook answered 500' });

    await runScheduledEvaluation();
    const [refused, accepted] = receiver.of(tenant);
    expect(accepted.answeredWith).toBe(204);
    expect(accepted.signatureValid).toBe(true);
    expect(accepted.notification).toEqual(refused.notification);
    expect(accepted.idempotencyKey).toBe(refused.idempotencyKey);
    expect((await alertRowsOf(tenant))[0]).toMatchObject({ deliveredAt: expect.any(Date), deliveryAttempts: 2, lastDeliveryError: null });

    const audit = await auditedActions(tenant);
    expect(audit.map((e) => [e.action, e.outcome])).toEqual([
      ['alert.raised', 'success'],
      ['alert.delivery_failed', 'failure'],
      ['alert.delivered', 'success'],
    ]);
  });

  it('resolves the alert of a certificate that was revoked and delivers the resolution', async () => {
    const tenant = 'alerts-clear';
    const expiring = await insertCertificate(tenant, 5);
    await runScheduledEvaluation();
    const [firing] = receiver.of(tenant);
    expect(firing.notification.state).toBe('firing');

    await service.parts.ca.revokeCertificate(expiring.id, 'superseded');
    const summary = await runScheduledEvaluation();
    expect(summary.evaluation.resolved).toBeGreaterThanOrEqual(1);

    const [, resolved] = receiver.of(tenant);
    expect(resolved.signatureValid).toBe(true);
    expect(resolved.notification).toMatchObject({ id: firing.notification.id, state: 'resolved', resolvedAt: expect.any(String) });
    expect(resolved.idempotencyKey).toBe(`${firing.notification.id}:resolved`);
    expect((await auditedActions(tenant)).map((e) => e.action)).toEqual([
      'alert.raised',
      'alert.delivered',
      'alert.resolved',
      'alert.delivered',
    ]);

    await runScheduledEvaluation();
    expect(receiver.of(tenant)).toHaveLength(2);
  });

  it('raises the failure-rate alert when most provisioning runs of a tenant fail', async () => {
    const tenant = 'alerts-failing';
    const fleet: TestDevice[] = [];
    for (const faults of [{ refuseConfiguration: true }, { refuseConfiguration: true }, { refuseConfiguration: true }, undefined]) {
      fleet.push(await devices.start({ faults }));
    }
    // Their firmware is approved, so the failure rate is all there is to alert about.
    const { manufacturer: vendor, model, firmwareVersion: version, firmwareDigest: sha256 } = fleet[0]!.device;
    await service.parts.firmwareCatalogue.upsert(tenant, { vendor, model, version, status: 'approved', sha256 }, 'test');
    await service.provisioning.start(tenant, { devices: fleet.map((d) => d.request) });
    const outcomes = await Promise.all(
      fleet.map((d) =>
        service.env.client.workflow
          .getHandle(provisioningWorkflowId(tenant, d.request.serialNumber))
          .result()
          .then(() => 'completed')
          .catch(() => 'failed'),
      ),
    );
    expect(outcomes.sort()).toEqual(['completed', 'failed', 'failed', 'failed']);
    // Visibility catches up with closed runs a moment after they close.
    const since = new Date(Date.now() - 3_600_000);
    await waitFor(async () => {
      const { count } = await service.env.client.workflow.count(closedProvisioningRunsQuery(tenant, 'failed', since));
      return count === 3 ? count : undefined;
    }, 'the failed runs to be visible');

    await runScheduledEvaluation();

    const delivered = receiver.of(tenant);
    expect(delivered).toHaveLength(1);
    expect(delivered[0].signatureValid).toBe(true);
    expect(delivered[0].notification).toMatchObject({
      kind: 'provisioning.failure_rate',
      severity: 'warning',
      state: 'firing',
      details: { failed: 3, completed: 1, failureRate: 0.75, threshold: 0.5 },
    });
    expect((await auditedActions(tenant)).filter((e) => e.action.startsWith('alert.')).map((e) => e.action)).toEqual([
      'alert.raised',
      'alert.delivered',
    ]);
  });
});

describe('the evaluateAlerts workflow', () => {
  it('still delivers pending alerts when the rules cannot be evaluated, then fails the run', async () => {
    const calls: string[] = [];
    const activities: AlertActivities = {
      evaluateAlertRules: async () => {
        calls.push('evaluateAlertRules');
        throw ApplicationFailure.nonRetryable('visibility is down');
      },
      deliverPendingAlerts: async () => {
        calls.push('deliverPendingAlerts');
        return { webhookConfigured: true, delivered: 0, failed: 0 };
      },
    };
    const taskQueue = `alerts-broken-${randomUUID()}`;
    const broken = await Worker.create({
      connection: service.env.nativeConnection,
      namespace: service.config.temporal.namespace,
      taskQueue,
      dataConverter: payloadDataConverter(service.parts.payloadKeyring),
      workflowsPath,
      activities,
    });
    await broken.runUntil(async () => {
      const run = service.env.client.workflow.execute('evaluateAlerts', { taskQueue, workflowId: `evaluate-${randomUUID()}`, args: [{}] });
      await expect(run).rejects.toThrow(WorkflowFailedError);
    });
    expect(calls).toEqual(['evaluateAlertRules', 'deliverPendingAlerts']);
  });
});

describe('the alert schedule', () => {
  it('is created once and brought up to date on the next start, skipping overlapping runs and keeping an operator’s pause', async () => {
    const id = `alert-schedule-${randomUUID()}`;
    const created = await ensureAlertSchedule(service.env.client, { taskQueue: alertTaskQueue, every: '5m', scheduleId: id });
    try {
      const first = await created.describe();
      expect(first.spec.intervals).toMatchObject([{ every: 300_000 }]);
      expect(first.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
      expect(first.action).toMatchObject({ type: 'startWorkflow', workflowType: 'evaluateAlerts', taskQueue: alertTaskQueue });

      await created.pause('maintenance');
      const updated = await ensureAlertSchedule(service.env.client, { taskQueue: 'another-queue', every: '10m', scheduleId: id });
      const second = await updated.describe();
      expect(second.spec.intervals).toMatchObject([{ every: 600_000 }]);
      expect(second.action).toMatchObject({ taskQueue: 'another-queue' });
      expect(second.state.paused).toBe(true);
    } finally {
      await created.delete();
    }
  });
});
