/**
 * Bulk provisioning end to end: a spreadsheet uploaded through the API becomes a job whose devices
 * are provisioned by child workflows under a concurrency cap, steered by operators, and reported.
 */
import { randomUUID } from 'node:crypto';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioningWorkflowId, statusQuery } from '../../contracts/provisioning';
import { bulkWorkflowId, type BulkProvisionInput } from '../../contracts/bulk';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, waitFor, type TestDevice, type TestDeviceOptions } from '../support/devices';
import { startTestService, type TestService } from '../support/service';
import { BulkJobStore } from '../../bulk/bulk-job-store';
import { BulkJobs } from '../../bulk/bulk-jobs';
import type { BulkImporter } from '../../bulk/bulk-import';

let service: TestService;
let api: TestApi;
const devices: TestDevice[] = [];

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
});
afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await api?.close();
  await service?.stop();
});

async function simulated(count: number, faults?: TestDeviceOptions['faults']) {
  const started = await Promise.all(Array.from({ length: count }, () => startTestDevice({ faults })));
  devices.push(...started);
  return started;
}

function csvOf(rows: TestDevice[], mutate: (row: Record<string, string>, index: number) => void = () => {}): string {
  const header = ['serialNumber', 'macAddress', 'address', 'protocol', 'deviceType', 'site', 'username', 'password'];
  const lines = rows.map(({ request }, index) => {
    const row: Record<string, string> = {
      serialNumber: request.serialNumber,
      macAddress: request.macAddress,
      address: request.address,
      protocol: 'https',
      deviceType: 'camera',
      site: 'lobby',
      username: request.credentials.username,
      password: request.credentials.password,
    };
    mutate(row, index);
    return header.map((column) => row[column] ?? '').join(',');
  });
  return [header.join(','), ...lines].join('\n') + '\n';
}

async function upload(csv: string, fields: Record<string, string> = {}) {
  const form = new FormData();
  form.set('file', new Blob([csv], { type: 'text/csv' }), 'devices.csv');
  for (const [name, value] of Object.entries(fields)) form.set(name, value);
  const response = await api.call('POST', '/api/v1/provisioning/bulk', { form });
  return response;
}

async function finished(jobId: string) {
  return waitFor(async () => {
    const job = await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`);
    return job.body.progress.state === 'finished' ? job.body : undefined;
  }, `bulk job ${jobId} to finish`, 120_000);
}

describe('a bulk job', () => {
  it('provisions every device of the file under its concurrency cap and reports each one', async () => {
    const batch = await simulated(12, { latencyMs: { '/api/v1/configuration': 200 } });
    const started = await upload(csvOf(batch), { concurrency: '4' });
    expect(started.status).toBe(202);
    expect(started.body.plan).toMatchObject({ total: 12, bySite: { lobby: 12 }, withCredentials: 12 });

    // Sample the live progress while it runs: never more than the cap in flight.
    let mostInFlight = 0;
    const job = await waitFor(async () => {
      const { body } = await api.call('GET', `/api/v1/provisioning/bulk/${started.body.jobId}`);
      mostInFlight = Math.max(mostInFlight, body.progress.inProgress);
      return body.progress.state === 'finished' ? body : undefined;
    }, 'the job to finish', 120_000);
    expect(mostInFlight).toBeGreaterThan(1);
    expect(mostInFlight).toBeLessThanOrEqual(4);
    expect(job.progress).toMatchObject({ total: 12, completed: 12, failed: 0 });
    for (const { device } of batch) expect(device.state).toBe('active');

    const listed: string[] = [];
    for await (const run of service.env.client.workflow.list({ query: `BulkJobId = '${started.body.jobId}' AND WorkflowType = 'provisionDevice'` })) {
      listed.push(run.workflowId);
    }
    expect(listed.sort()).toEqual(batch.map((d) => provisioningWorkflowId('acme', d.request.serialNumber)).sort());

    const report = await api.call('GET', `/api/v1/provisioning/bulk/${started.body.jobId}/report`);
    expect(report.body.devices).toHaveLength(12);
    expect(report.body.devices[0]).toMatchObject({ line: 2, outcome: 'completed', attempts: 1 });
    expect(report.body.devices.every((d: { certificateSerial: string }) => /^[0-9a-f]+$/.test(d.certificateSerial))).toBe(true);
    const csv = await api.call('GET', `/api/v1/provisioning/bulk/${started.body.jobId}/report?format=csv`);
    expect(csv.type).toContain('text/csv');
    expect(csv.body.split('\r\n')[0]).toBe('line,deviceId,serialNumber,macAddress,site,outcome,attempts,certificateSerial,failedStep,error,startedAt,finishedAt,durationMs');
  });

  it("runs each device's steps but issuing in the workflow's own worker, and a step whose quick attempt fails as a regular activity, its attempts on record", async () => {
    // Three devices: a job of two would be taken for the dry run's below.
    const [healthy, other, flaky] = await simulated(3);
    flaky!.device.setFaults({ failNext: { '/api/v1/configuration': { count: 1, status: 503 } } });
    const { jobId } = (await upload(csvOf([healthy!, other!, flaky!]))).body;
    expect((await finished(jobId)).progress).toMatchObject({ completed: 3, failed: 0 });

    const stepsOf = async (serialNumber: string) => {
      const handle = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', serialNumber));
      const { events } = await handle.fetchHistory();
      return {
        record: await handle.query(statusQuery),
        local: events!.filter((event) => event.markerRecordedEventAttributes?.markerName === 'core_local_activity').length,
        regular: events!.flatMap((event) => event.activityTaskScheduledEventAttributes?.activityType?.name ?? []),
      };
    };
    // Seven device steps and three records (two audit events, the archive) as markers; issuing alone
    // is a task, which puts the steps before it on record.
    const quick = await stepsOf(healthy!.request.serialNumber);
    expect(quick.local).toBe(10);
    expect(quick.regular).toEqual(['issueDeviceCertificate']);
    expect(quick.record.provisioningSteps.every((step) => step.retryCount === 0)).toBe(true);

    // The configuration refused once: its local attempt failed, the regular activity finished it.
    const retried = await stepsOf(flaky!.request.serialNumber);
    expect(retried.regular).toEqual(['issueDeviceCertificate', 'pushDeviceConfiguration']);
    expect(retried.record.provisioningSteps.find((step) => step.step === 'pushConfiguration')).toMatchObject({ status: 'completed', retryCount: 1 });
    expect(flaky!.device.state).toBe('active');
  });

  it('continues as new along the way, survives its run being replaced, and accounts for every device exactly once', async () => {
    const batch = await simulated(15, { latencyMs: { '/api/v1/configuration': 400 } });
    const { jobId } = (await upload(csvOf(batch), { concurrency: '5' })).body;
    // Replace the job's run by one with a tiny history budget, forcing several continue-as-new
    // hops; devices already in flight report to the new run, as they would after any restart.
    await service.env.client.workflow.getHandle(bulkWorkflowId('acme', jobId)).terminate('restarted with a small history budget');
    const job = await service.env.client.workflow.start('bulkProvision', {
      workflowId: bulkWorkflowId('acme', jobId),
      taskQueue: service.config.temporal.taskQueue,
      args: [
        {
          jobId,
          tenantId: 'acme',
          templateId: 'default',
          options: { skipCertificateGeneration: false, autoActivate: true },
          requestedBy: 'test',
          concurrency: 5,
          eventsPerRun: 60,
        } satisfies BulkProvisionInput,
      ],
    });
    const result = await job.result();
    expect(result).toMatchObject({ total: 15, completed: 15, failed: 0, inProgress: 0 });
    const description = await job.describe();
    expect(description.runId).not.toBe(job.firstExecutionRunId);
    for (const { device } of batch) expect(device.state).toBe('active');
  });

  it('retries only the failed devices, counting their attempts', async () => {
    const good = await simulated(3);
    const bad = await simulated(2, { refuseConfiguration: true });
    const { jobId } = (await upload(csvOf([...good, ...bad]))).body;
    const first = await finished(jobId);
    expect(first.progress).toMatchObject({ completed: 3, failed: 2 });
    expect(first.progress.stepFailures).toEqual({ pushConfiguration: 2 });

    for (const { device } of bad) device.clearFaults();
    expect((await api.call('POST', `/api/v1/provisioning/bulk/${jobId}/retry-failed`)).status).toBe(202);
    await waitFor(async () => {
      const job = await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`);
      return job.body.progress.completed === 5 && job.body.progress.state === 'finished' ? job.body : undefined;
    }, 'the retried devices to complete', 120_000);
    const report = (await api.call('GET', `/api/v1/provisioning/bulk/${jobId}/report`)).body.devices;
    expect(report.map((d: { attempts: number }) => d.attempts)).toEqual([1, 1, 1, 2, 2]);
  });

  it('pauses, resumes, takes a new concurrency, and cancels', async () => {
    const batch = await simulated(8, { latencyMs: { '/api/v1/configuration': 300 } });
    const { jobId } = (await upload(csvOf(batch), { concurrency: '2' })).body;
    expect((await api.call('POST', `/api/v1/provisioning/bulk/${jobId}/pause`)).status).toBe(202);
    const paused = await waitFor(async () => {
      const job = await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`);
      return job.body.progress.state === 'paused' && job.body.progress.inProgress === 0 ? job.body : undefined;
    }, 'the job to pause and drain');
    const finishedWhilePaused = paused.progress.completed;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`)).body.progress.completed).toBe(finishedWhilePaused);

    expect((await api.call('PUT', `/api/v1/provisioning/bulk/${jobId}/concurrency`, { body: { concurrency: 1 } })).status).toBe(202);
    await api.call('POST', `/api/v1/provisioning/bulk/${jobId}/resume`);
    await waitFor(async () => {
      const job = await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`);
      return job.body.progress.completed > finishedWhilePaused ? job.body : undefined;
    }, 'the job to resume');
    expect((await api.call('GET', `/api/v1/provisioning/bulk/${jobId}`)).body.progress.concurrency).toBe(1);

    await api.call('POST', `/api/v1/provisioning/bulk/${jobId}/cancel`, { body: { reason: 'wrong building' } });
    const job = await finished(jobId);
    expect(job.progress.cancelled).toBeGreaterThan(0);
    expect(job.progress.completed + job.progress.failed + job.progress.cancelled).toBe(8);
    expect((await api.call('POST', `/api/v1/provisioning/bulk/${jobId}/pause`)).status).toBe(409);
  });
});

describe("a running job's progress", () => {
  it("is answered from the job's recorded rows, within seconds, when its workflow cannot answer (no worker polls its queue)", async () => {
    const store = new BulkJobStore(service.parts.database.db);
    const jobId = randomUUID();
    const [first, second] = await simulated(2);
    await store.create(
      {
        id: jobId,
        tenantId: 'watched',
        templateId: 'https-camera',
        fileName: 'devices.csv',
        fileSha256: '00',
        rowCount: 2,
        requestedBy: 'api-key:test',
        options: { concurrency: 2, skipCertificateGeneration: false, autoActivate: true },
      },
      [first!, second!].map((d, index) => ({ rowNumber: index + 2, device: { ...d.request, deviceId: d.request.serialNumber }, hasCredentials: false })),
    );
    await store.recordOutcomes(jobId, [
      { rowNumber: 2, deviceId: first!.request.serialNumber, outcome: 'completed', startedAt: new Date().toISOString(), finishedAt: new Date().toISOString() },
    ]);
    // The job's workflow runs, on a queue no worker polls: as while its only worker is down.
    const input: BulkProvisionInput = { jobId, tenantId: 'watched', templateId: 'https-camera', options: { skipCertificateGeneration: false, autoActivate: true }, requestedBy: 'api-key:test', concurrency: 2 };
    const handle = await service.env.client.workflow.start('bulkProvision', {
      taskQueue: `nobody-polls-${randomUUID()}`,
      workflowId: bulkWorkflowId('watched', jobId),
      args: [input],
    });
    try {
      const jobs = new BulkJobs({ store, client: service.env.client, importer: undefined as unknown as BulkImporter, progressQueryTimeoutMs: 1_500 });
      const asked = Date.now();
      const { progress } = await jobs.view('watched', jobId);
      expect(Date.now() - asked).toBeLessThan(10_000);
      expect(progress).toMatchObject({ state: 'running', answeredFrom: 'records', total: 2, completed: 1, pending: 1 });
    } finally {
      await handle.terminate('test over');
    }
  });
});

describe('importing a file', () => {
  it('dry-runs a valid file without storing or starting anything', async () => {
    const batch = await simulated(2);
    const response = await upload(csvOf(batch), { dryRun: 'true' });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ valid: true, plan: { total: 2 } });
    expect((await api.call('GET', '/api/v1/provisioning/bulk')).body.jobs.map((j: { rowCount: number }) => j.rowCount)).not.toContain(2);
  });

  it('lists every bad row with its line, column and reason, and starts nothing', async () => {
    const batch = await simulated(4);
    const csv = csvOf(batch, (row, index) => {
      if (index === 0) row.macAddress = 'not-a-mac';
      if (index === 1) row.site = '';
      if (index === 3) row.serialNumber = batch[2].request.serialNumber;
    });
    const response = await upload(csv);
    expect(response.status).toBe(400);
    const problems = response.body.errors.map((e: { line: number; column: string }) => `${e.line}:${e.column}`);
    expect(problems).toEqual(expect.arrayContaining(['2:macAddress', '3:site', '5:serialNumber']));
    expect(response.body.errors.find((e: { line: number }) => e.line === 5).reason).toBe('duplicates line 4');
    for (const { device } of batch) expect(device.state).toBe('factory');
  });

  it("gives a list back in its own format with a column of each row's reasons, passwords withheld, starting nothing", async () => {
    const batch = await simulated(3);
    const rows = (index: number, row: Record<string, string>) => (index === 1 ? { ...row, macAddress: 'not-a-mac' } : row);
    const csv = csvOf(batch, (row, index) => Object.assign(row, rows(index, row)));
    const annotate = async (file: Blob, name: string) => {
      const form = new FormData();
      form.set('file', file, name);
      return fetch(`${api.baseUrl}/api/v1/provisioning/bulk/annotated`, { method: 'POST', headers: { authorization: `Bearer ${await api.keyFor('acme', 'operator')}` }, body: form });
    };

    const fromCsv = await annotate(new Blob([csv], { type: 'text/csv' }), 'hall.csv');
    expect(fromCsv.status).toBe(200);
    expect(fromCsv.headers.get('content-disposition')).toContain('hall-with-reasons.csv');
    const lines = (await fromCsv.text()).replace(/^\uFEFF/, '').trim().split('\r\n');
    const header = lines[0]!.split(',');
    expect(header.at(-1)).toBe('problems');
    const problems = lines.slice(1).map((line) => line.split(',').at(-1));
    expect(problems[0]).toBe('');
    expect(problems[1]).toContain('macAddress:');
    expect(problems[2]).toBe('');
    const password = header.indexOf('password');
    expect(lines.slice(1).every((line) => line.split(',')[password] === '')).toBe(true);

    const workbook = new ExcelJS.Workbook();
    const sheet = workbook.addWorksheet('Devices');
    for (const line of csv.trim().split('\n')) sheet.addRow(line.split(','));
    const fromXlsx = await annotate(new Blob([Buffer.from(await workbook.xlsx.writeBuffer())]), 'hall.xlsx');
    expect(fromXlsx.status).toBe(200);
    expect(fromXlsx.headers.get('content-type')).toContain('spreadsheetml');
    const answered = new ExcelJS.Workbook();
    await answered.xlsx.load(Buffer.from(await fromXlsx.arrayBuffer()) as unknown as ArrayBuffer);
    const annotated = answered.getWorksheet('Devices')!;
    const lastColumn = annotated.getRow(1).cellCount;
    expect(annotated.getRow(1).getCell(lastColumn).value).toBe('problems');
    expect(String(annotated.getRow(3).getCell(lastColumn).value)).toContain('macAddress:');
    expect(annotated.getRow(2).getCell(lastColumn).value ?? '').toBe('');
    for (const { device } of batch) expect(device.state).toBe('factory');
    expect((await api.call('GET', '/api/v1/provisioning/bulk')).body.jobs.map((j: { fileName: string }) => j.fileName)).not.toContain('hall.csv');
  });

  it('refuses devices already provisioned and an IP another device has', async () => {
    const [done] = await simulated(1);
    await service.provisioning.start('acme', { devices: [done.request] });
    await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', done.request.serialNumber)).result();
    const [fresh] = await simulated(1);
    const csv = csvOf([done, fresh], (row, index) => {
      if (index === 1) row.address = done.request.address;
    });
    const response = await upload(csv);
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ line: 2, column: 'serialNumber', reason: `device ${done.request.serialNumber} is already provisioned` }),
        expect.objectContaining({ line: 3, column: 'address' }),
      ]),
    );
  });

  it('serves the layout as CSV and Excel templates', async () => {
    const csv = await api.call('GET', '/api/v1/provisioning/bulk/layout.csv');
    expect(csv.body.split(/\r?\n/)[0].replace(/^\uFEFF/, '')).toContain('serialNumber,macAddress,address');
    const xlsx = await fetch(`${api.baseUrl}/api/v1/provisioning/bulk/layout.xlsx`, {
      headers: { authorization: `Bearer ${await api.keyFor('acme', 'viewer')}` },
    });
    expect(xlsx.status).toBe(200);
    expect(Buffer.from(await xlsx.arrayBuffer()).subarray(0, 2).toString()).toBe('PK');
  });
});
