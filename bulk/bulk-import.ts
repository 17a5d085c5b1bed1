/**
 * Turning an uploaded spreadsheet into a bulk job: every row is checked (its own fields, the
 * protocol's address rules, duplicates within the file, conflicts with the registry, the template),
 * every bad row is reported with its line and column, and only a file without a single bad row is
 * stored and started. The rows go to the job's store; the job's workflow carries the job id and the
 * template version judged here, which every run of the job pushes.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { SecretVault } from '../custody/secret-vault';
import type { ProvisioningPlanner } from '../provisioning/planner';
import { deviceDescriptorOf, deviceRequestSchema, type DeviceProvisioningRequest } from '../provisioning/requests';
import type { DeviceRegistry } from '../registry/device-registry';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import { ValidationError } from '../foundation/errors';
import { eventLoopTurns } from '../foundation/cooperative';
import { bulkWorkflowId, type BulkProvisionInput } from '../contracts/bulk';
import type { bulkProvision } from '../workflows/bulk-provision';
import { provisioningSearchAttributes as attributes, type ProvisionDeviceInput } from '../contracts/provisioning';
import type { BulkJob, BulkJobSettings, BulkJobStore } from './bulk-job-store';
import { readDeviceSheet, type SheetLimits } from './spreadsheet';

export interface RowProblem {
  line: number;
  column: string;
  reason: string;
}

export interface BulkImportRequest {
  tenantId: string;
  templateId: string;
  dryRun: boolean;
  concurrency: number;
  options: Pick<ProvisionDeviceInput['options'], 'skipCertificateGeneration' | 'autoActivate'>;
  file: { data: Buffer; fileName: string; contentType?: string };
  requestedBy: string;
}

export interface BulkPlan {
  total: number;
  templateId: string;
  bySite: Record<string, number>;
  byDeviceType: Record<string, number>;
  byProtocol: Record<string, number>;
  withCredentials: number;
}

export type BulkImportResult = { dryRun: true; plan: BulkPlan } | { dryRun: false; jobId: string; plan: BulkPlan };

interface ValidRow {
  line: number;
  request: DeviceProvisioningRequest;
}

/** Rows as problems: `field` says where for generic clients, `line` and `column` for spreadsheets. */
function rejection(problems: RowProblem[], rows: number): ValidationError {
  const badRows = new Set(problems.map((p) => p.line)).size;
  return new ValidationError(`${badRows} of ${rows} rows are invalid; nothing was started`, {
    fields: problems.map((p) => ({ field: `line ${p.line}: ${p.column}`, reason: p.reason, line: p.line, column: p.column })),
  });
}

export class BulkImporter {
  constructor(
    private readonly deps: {
      store: BulkJobStore;
      client: Client;
      taskQueue: string;
      vault: SecretVault;
      registry: DeviceRegistry;
      adapters: ReadonlyMap<string, DeviceAdapter>;
      /** Where devices may be reached: rows whose address lies outside are refused. */
      networks: DeviceNetworks;
      /** Judges the template for every row, as for any provisioning request. */
      planner: ProvisioningPlanner;
      sheetLimits?: Partial<SheetLimits>;
    },
  ) {}

  async import(request: BulkImportRequest): Promise<BulkImportResult> {
    const { rows, problems, total } = await this.readRows(request.file);
    // Every check runs on every row that passed the ones before, so one answer lists all bad rows.
    problems.push(...(await this.registryProblems(request.tenantId, rows)));
    const template = await this.templateProblems(request, rows);
    problems.push(...template.problems);
    problems.sort((a, b) => a.line - b.line);
    if (problems.length > 0 || template.templateVersion === undefined) throw rejection(problems, total);
    if (rows.length === 0) {
      throw new ValidationError('the file has no device rows', { fields: [{ field: 'file', reason: 'no device rows' }] });
    }

    const plan = planOf(request.templateId, rows);
    if (request.dryRun) return { dryRun: true, plan };
    const job = await this.store(request, rows, template.templateVersion);
    await this.start(job);
    return { dryRun: false, jobId: job.id, plan };
  }

  /** Every row through the same checks as a single provisioning request, plus the file's own. */
  private async readRows(file: BulkImportRequest['file']): Promise<{ rows: ValidRow[]; problems: RowProblem[]; total: number }> {
    const schema = deviceRequestSchema([...this.deps.adapters.keys()]);
    const rows: ValidRow[] = [];
    const problems: RowProblem[] = [];
    const firstLine = new Map<string, number>();
    const giveWay = eventLoopTurns();
    let total = 0;

    for await (const row of readDeviceSheet(file, this.deps.sheetLimits)) {
      await giveWay();
      total += 1;
      const rowProblems: RowProblem[] = row.problems.map((p) => ({ line: row.line, column: String(p.column), reason: p.reason }));
      const { username, password, ...values } = row.values;
      if (Boolean(username) !== Boolean(password)) {
        rowProblems.push({ line: row.line, column: username ? 'password' : 'username', reason: 'username and password go together' });
      }
      const parsed = schema.safeParse({
        ...values,
        protocol: values.protocol ?? 'https',
        ...(username && password ? { credentials: { username, password } } : {}),
      });
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          const [first, second] = issue.path;
          const column = first === 'credentials' ? String(second ?? 'username') : String(first ?? 'row');
          rowProblems.push({ line: row.line, column, reason: issue.message });
        }
      } else {
        const request = { ...parsed.data, deviceId: parsed.data.deviceId ?? parsed.data.serialNumber };
        const adapter = this.deps.adapters.get(request.protocol)!;
        const addressProblem = await this.deps.networks.addressProblem(adapter, request.address);
        if (addressProblem) rowProblems.push({ line: row.line, column: 'address', reason: addressProblem });
        const host = addressProblem ? undefined : adapter.networkHost(request.address);
        // The same device, or the same IP, twice in one file is a mistake to fix, not to merge.
        const claims: [string, string][] = [
          ['deviceId', request.deviceId],
          ['serialNumber', request.serialNumber],
          ['macAddress', request.macAddress],
          ...(host ? [['address', host] as [string, string]] : []),
        ];
        for (const [column, value] of claims) {
          const key = `${column}=${value.toLowerCase()}`;
          const first = firstLine.get(key);
          if (first === undefined) firstLine.set(key, row.line);
          else rowProblems.push({ line: row.line, column, reason: `duplicates line ${first}` });
        }
        if (rowProblems.length === 0) rows.push({ line: row.line, request });
      }
      problems.push(...rowProblems);
    }
    return { rows, problems, total };
  }

  /** Serial numbers or MACs already provisioned, or an IP another registered device has. */
  private async registryProblems(tenantId: string, rows: ValidRow[]): Promise<RowProblem[]> {
    const registered = await this.deps.registry.claimsOf(tenantId);
    const bySerial = new Map(registered.map((d) => [d.serialNumber, d]));
    const byMac = new Map(registered.map((d) => [d.macAddress, d]));
    const byHost = new Map<string, (typeof registered)[number]>();
    for (const device of registered) {
      const host = this.hostOf(device.protocol, device.address);
      if (host) byHost.set(host, device);
    }

    const problems: RowProblem[] = [];
    const giveWay = eventLoopTurns();
    for (const { line, request } of rows) {
      await giveWay();
      for (const [column, existing] of [
        ['serialNumber', bySerial.get(request.serialNumber)],
        ['macAddress', byMac.get(request.macAddress)],
      ] as const) {
        if (!existing) continue;
        if (existing.deviceId !== request.deviceId) {
          problems.push({ line, column, reason: `already belongs to device ${existing.deviceId}` });
        } else if (existing.lifecycleState === 'provisioned' || existing.lifecycleState === 'active') {
          problems.push({ line, column, reason: `device ${existing.deviceId} is already provisioned` });
        }
      }
      const host = this.hostOf(request.protocol, request.address);
      const holder = host ? byHost.get(host) : undefined;
      if (holder && holder.deviceId !== request.deviceId) {
        problems.push({ line, column: 'address', reason: `${host} is the address of device ${holder.deviceId}` });
      }
    }
    return problems;
  }

  /** The template's problems by line, and the version judged: the one every run of the job pushes. */
  private async templateProblems(request: BulkImportRequest, rows: ValidRow[]): Promise<{ problems: RowProblem[]; templateVersion?: number }> {
    const problems: RowProblem[] = [];
    const verdict = await this.deps.planner.templateProblemsFor(
      request.tenantId,
      request.templateId,
      rows.map((r) => r.request),
      request.options,
    );
    for (const problem of verdict.problems) {
      const index = /^devices\[(\d+)\]/.exec(problem.field)?.[1];
      if (index !== undefined) {
        const column = problem.field.replace(/^devices\[\d+\]\.?/, '') || 'row';
        problems.push({ line: rows[Number(index)].line, column, reason: problem.reason });
      } else {
        problems.push({ line: 0, column: problem.field, reason: problem.reason });
      }
    }
    return { problems, templateVersion: verdict.templateVersion };
  }

  private hostOf(protocol: string, address: string): string | undefined {
    try {
      return this.deps.adapters.get(protocol)?.networkHost(address);
    } catch {
      return undefined;
    }
  }

  private async store(request: BulkImportRequest, rows: ValidRow[], templateVersion: number): Promise<BulkJob> {
    const secrets = rows
      .filter((row) => row.request.credentials)
      .map((row) => ({ deviceId: row.request.deviceId, value: row.request.credentials }));
    // Credentials first: a job is only visible once everything it needs is in place.
    await this.deps.vault.storeMany(request.tenantId, initialCredentialsPurpose, secrets);
    const job = {
      id: randomUUID(),
      tenantId: request.tenantId,
      templateId: request.templateId,
      fileName: request.file.fileName.slice(0, 255),
      fileSha256: createHash('sha256').update(request.file.data).digest('hex'),
      rowCount: rows.length,
      options: { ...request.options, concurrency: request.concurrency, templateVersion } satisfies BulkJobSettings,
      requestedBy: request.requestedBy,
    };
    await this.deps.store.create(
      job,
      rows.map(({ line, request: device }) => ({ rowNumber: line, device: deviceDescriptorOf(device), hasCredentials: Boolean(device.credentials) })),
    );
    return { ...job, createdAt: new Date(), finishedAt: null };
  }

  /** Starts the job's workflow: a new job, or a finished one asked to run its failed devices again. */
  async start(job: BulkJob, retryFailed = false) {
    const settings = job.options as BulkJobSettings;
    const input: BulkProvisionInput = {
      jobId: job.id,
      tenantId: job.tenantId,
      templateId: job.templateId,
      ...(settings.templateVersion !== undefined ? { templateVersion: settings.templateVersion } : {}),
      options: { skipCertificateGeneration: settings.skipCertificateGeneration, autoActivate: settings.autoActivate },
      requestedBy: job.requestedBy,
      concurrency: settings.concurrency,
      retryFailed,
    };
    return this.deps.client.workflow.start<typeof bulkProvision>('bulkProvision', {
      workflowId: bulkWorkflowId(job.tenantId, job.id),
      taskQueue: this.deps.taskQueue,
      args: [input],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      workflowIdConflictPolicy: 'FAIL',
      typedSearchAttributes: [
        { key: attributes.tenantId, value: job.tenantId },
        { key: attributes.bulkJobId, value: job.id },
        { key: attributes.method, value: 'bulk' },
      ],
    });
  }
}

function planOf(templateId: string, rows: ValidRow[]): BulkPlan {
  const plan: BulkPlan = { total: rows.length, templateId, bySite: {}, byDeviceType: {}, byProtocol: {}, withCredentials: 0 };
  const count = (tally: Record<string, number>, key: string) => {
    tally[key] = (tally[key] ?? 0) + 1;
  };
  // One pass: a file may have 100,000 rows, and this runs on the API's thread.
  for (const { request } of rows) {
    count(plan.bySite, request.site);
    count(plan.byDeviceType, request.deviceType);
    count(plan.byProtocol, request.protocol);
    if (request.credentials) plan.withCredentials += 1;
  }
  return plan;
}
