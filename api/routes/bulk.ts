import busboy from 'busboy';
import { annotatedSheet } from '../../bulk/annotated-sheet';
import type { RowProblem } from '../../bulk/bulk-import';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { templateIdPattern } from '../../configuration/templates';
import type { BulkImporter } from '../../bulk/bulk-import';
import { bulkReportColumns, type BulkJobs } from '../../bulk/bulk-jobs';
import { deviceSheetTemplateCsv, deviceSheetTemplateXlsx, toCsv } from '../../bulk/spreadsheet-output';
import { PayloadTooLargeError, ServiceBusyError, ValidationError } from '../../foundation/errors';
import { parseOrThrow, refuseUnstorableText } from '../../foundation/validation';
import { maximumBulkConcurrency } from '../../contracts/bulk';
import { operation, type AnyOperation } from '../operation';

const base = '/api/v1/provisioning/bulk';
const maximumUploadBytes = 20 * 1024 * 1024;

const uploadFields = z
  .object({
    templateId: z.string().regex(templateIdPattern, 'must be a template id').default('default'),
    dryRun: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
    concurrency: z.coerce.number().int().min(1).max(maximumBulkConcurrency).default(100),
    skipCertificateGeneration: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
    autoActivate: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  })
  .strict();

interface Upload {
  fields: Record<string, string>;
  file?: { data: Buffer; fileName: string; contentType: string };
}

/** Reads a multipart upload with hard limits: one file, a few small fields, nothing unbounded. */
function readUpload(req: Request): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { fileSize: maximumUploadBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12 },
      });
    } catch {
      reject(new ValidationError('the upload must be multipart/form-data', { fields: [{ field: 'file', reason: 'missing' }] }));
      return;
    }
    const upload: Upload = { fields: {} };
    let failure: Error | undefined;
    parser.on('field', (name, value) => {
      upload.fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'file') {
        failure ??= new ValidationError(`unexpected file field ${name}`, { fields: [{ field: name, reason: 'only "file" is accepted' }] });
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => {
        failure ??= new PayloadTooLargeError(`the file is larger than ${maximumUploadBytes / 1024 / 1024} MiB`, {
          fields: [{ field: 'file', reason: `larger than ${maximumUploadBytes} bytes` }],
        });
      });
      stream.on('end', () => {
        upload.file = { data: Buffer.concat(chunks), fileName: info.filename ?? 'upload', contentType: info.mimeType };
      });
    });
    parser.on('filesLimit', () => {
      failure ??= new ValidationError('only one file per upload', { fields: [{ field: 'file', reason: 'more than one file' }] });
    });
    parser.on('error', (error: Error) => reject(new ValidationError(`the upload could not be read: ${error.message}`)));
    parser.on('close', () => (failure ? reject(failure) : resolve(upload)));
    req.pipe(parser);
  });
}

const jobParams = z.object({ jobId: z.uuid() });

const progressSchema = z.object({
  jobId: z.string(),
  state: z.enum(['running', 'paused', 'cancelling', 'finished']),
  total: z.number().int(),
  pending: z.number().int(),
  inProgress: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  cancelled: z.number().int(),
  concurrency: z.number().int(),
  stepFailures: z.record(z.string(), z.number().int()),
  ratePerSecond: z.number(),
  estimatedSecondsRemaining: z.number().optional(),
  startedAt: z.string(),
  answeredFrom: z
    .enum(['records'])
    .optional()
    .describe("present when the running job's workflow did not answer within seconds (a worker catching up after a restart): the counts are the job's recorded rows, which trail it by a batch of outcomes, longer while it catches up"),
});

const jobSchema = z
  .object({
    jobId: z.string(),
    fileName: z.string(),
    templateId: z.string(),
    rowCount: z.number().int(),
    requestedBy: z.string(),
    createdAt: z.string(),
    finishedAt: z.string().nullable(),
    progress: progressSchema,
    reportUrl: z.string(),
  })
  .meta({ id: 'BulkJob' });

const planSchema = z.object({
  total: z.number().int(),
  templateId: z.string(),
  bySite: z.record(z.string(), z.number().int()),
  byDeviceType: z.record(z.string(), z.number().int()),
  byProtocol: z.record(z.string(), z.number().int()),
  withCredentials: z.number().int(),
});

/** What an upload turned away at the cap is told to wait: about as long as reading one takes. */
const busyRetryAfterSeconds = 10;

export function bulkOperations(deps: { importer: BulkImporter; jobs: BulkJobs; concurrentUploads: number }): AnyOperation[] {
  const { importer, jobs } = deps;
  const jobUrl = (jobId: string) => `${base}/${jobId}`;
  // Each file being read holds its bytes, its text and its rows; beyond the cap, uploads are
  // turned away before a byte of them is read.
  let uploadsBeingRead = 0;

  async function whileReadingUpload(read: () => Promise<void>): Promise<void> {
    if (uploadsBeingRead >= deps.concurrentUploads) {
      throw new ServiceBusyError(`${uploadsBeingRead} bulk files are being read already; try again shortly`, busyRetryAfterSeconds);
    }
    uploadsBeingRead += 1;
    try {
      await read();
    } finally {
      uploadsBeingRead -= 1;
    }
  }

  /** The upload's form fields, checked, and its file, which is required. */
  async function checkedUpload(req: Request) {
    const upload = await readUpload(req);
    // Multipart parts are not JSON, so the API's own check of every text does not see them.
    refuseUnstorableText({ ...upload.fields, ...(upload.file ? { file: upload.file.fileName } : {}) }, 'upload');
    const fields = parseOrThrow(uploadFields, upload.fields, 'upload');
    if (!upload.file) {
      throw new ValidationError('no file was uploaded', { fields: [{ field: 'file', reason: 'a CSV or .xlsx file is required' }] });
    }
    return { fields, file: upload.file };
  }

  async function startBulkJob(req: Request, res: Response, tenantId: string, requestedBy: string): Promise<void> {
    const { fields, file } = await checkedUpload(req);
    const result = await importer.import({
      tenantId,
      templateId: fields.templateId,
      dryRun: fields.dryRun,
      concurrency: fields.concurrency,
      options: { skipCertificateGeneration: fields.skipCertificateGeneration, autoActivate: fields.autoActivate },
      file,
      requestedBy,
    });
    if (result.dryRun) {
      res.status(200).json({ valid: true, plan: result.plan });
      return;
    }
    res
      .status(202)
      .location(jobUrl(result.jobId))
      .json({ jobId: result.jobId, statusUrl: jobUrl(result.jobId), reportUrl: `${jobUrl(result.jobId)}/report`, plan: result.plan });
  }

  const control = (name: 'pause' | 'resume' | 'cancel' | 'retry-failed', summary: string) =>
    operation({
      operationId: `${name.replace(/-(\w)/, (_m, c: string) => c.toUpperCase())}BulkJob`,
      method: 'post',
      path: `${base}/{jobId}/${name}`,
      summary,
      tag: 'bulk',
      permission: 'provisioning:write',
      params: jobParams,
      body: z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict().optional().transform((v) => v ?? {}),
      responses: {
        202: { description: 'Requested', schema: z.object({ jobId: z.string(), requested: z.string() }) },
        409: { description: 'The job has finished (only retry-failed starts it again)' },
      },
      async handle({ res, tenantId, params, body }) {
        await jobs.control(tenantId, params.jobId, name, body.reason);
        res.status(202).json({ jobId: params.jobId, requested: name });
      },
    });

  return [
    operation({
      operationId: 'downloadBulkLayoutCsv',
      method: 'get',
      path: `${base}/layout.csv`,
      summary: 'Download the device list layout as a CSV template',
      tag: 'bulk',
      permission: 'provisioning:read',
      responses: { 200: { description: 'Header and one example row', contentType: 'text/csv', schema: z.string() } },
      handle({ res }) {
        res.type('text/csv').attachment('device-list.csv').send(deviceSheetTemplateCsv());
      },
    }),
    operation({
      operationId: 'downloadBulkLayoutXlsx',
      method: 'get',
      path: `${base}/layout.xlsx`,
      summary: 'Download the device list layout as an Excel template',
      tag: 'bulk',
      permission: 'provisioning:read',
      responses: {
        200: {
          description: 'Header, one example row, and the columns explained',
          contentType: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
        },
      },
      async handle({ res }) {
        res
          .type('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
          .attachment('device-list.xlsx')
          .send(await deviceSheetTemplateXlsx());
      },
    }),
    operation({
      operationId: 'startBulkProvisioning',
      method: 'post',
      path: base,
      summary: 'Provision the devices of an uploaded CSV or Excel file',
      tag: 'bulk',
      permission: 'provisioning:write',
      upload: {
        contentType: 'multipart/form-data',
        schema: {
          type: 'object',
          required: ['file'],
          properties: {
            file: { type: 'string', contentMediaType: 'application/octet-stream', description: 'CSV or .xlsx, see layout.csv' },
            templateId: { type: 'string', default: 'default' },
            dryRun: { type: 'string', enum: ['true', 'false'], default: 'false' },
            concurrency: { type: 'integer', minimum: 1, maximum: maximumBulkConcurrency, default: 100 },
            skipCertificateGeneration: { type: 'string', enum: ['true', 'false'], default: 'false' },
            autoActivate: { type: 'string', enum: ['true', 'false'], default: 'true' },
          },
        },
      },
      responses: {
        202: {
          description: 'The job, started',
          schema: z.object({ jobId: z.string(), statusUrl: z.string(), reportUrl: z.string(), plan: planSchema }),
        },
        200: { description: 'dryRun: the validated plan; nothing is stored or started', schema: z.object({ valid: z.literal(true), plan: planSchema }) },
        503: { description: 'As many files as the service reads at once are being read; try again after Retry-After' },
      },
      async handle({ req, res, tenantId, principal }) {
        await whileReadingUpload(() => startBulkJob(req, res, tenantId, principal.subject));
      },
    }),
    operation({
      operationId: 'annotateBulkFile',
      method: 'post',
      path: `${base}/annotated`,
      summary: 'Check a device list without starting anything, and get it back with a column of the reasons each row was refused',
      tag: 'bulk',
      permission: 'provisioning:write',
      upload: {
        contentType: 'multipart/form-data',
        schema: {
          type: 'object',
          required: ['file'],
          properties: {
            file: { type: 'string', contentMediaType: 'application/octet-stream', description: 'CSV or .xlsx, see layout.csv' },
            templateId: { type: 'string', default: 'default' },
          },
        },
      },
      responses: {
        200: {
          description: 'The list in the format it came in, with a last `problems` column (empty for good rows); passwords are not given back',
          contentType: 'text/csv',
          alsoAs: ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
        },
        503: { description: 'As many files as the service reads at once are being read; try again after Retry-After' },
      },
      async handle({ req, res, tenantId, principal }) {
        await whileReadingUpload(async () => {
          const { fields, file } = await checkedUpload(req);
          const problems: RowProblem[] = [];
          try {
            await importer.import({
              tenantId,
              templateId: fields.templateId,
              dryRun: true,
              concurrency: fields.concurrency,
              options: { skipCertificateGeneration: fields.skipCertificateGeneration, autoActivate: fields.autoActivate },
              file,
              requestedBy: principal.subject,
            });
          } catch (error) {
            // Only refusals of rows belong in the file; anything else (no such template, an unreadable file) is the answer.
            const rows = error instanceof ValidationError ? (error.fields ?? []).filter((field) => typeof (field as Partial<RowProblem>).line === 'number') : [];
            if (rows.length === 0) throw error;
            problems.push(...(rows as unknown as RowProblem[]));
          }
          const annotated = await annotatedSheet(file, problems);
          res.type(annotated.contentType).attachment(annotated.fileName).send(annotated.body);
        });
      },
    }),
    operation({
      operationId: 'listBulkJobs',
      method: 'get',
      path: base,
      summary: "List the tenant's bulk jobs, newest first",
      tag: 'bulk',
      permission: 'provisioning:read',
      responses: {
        200: {
          description: 'Jobs',
          schema: z.object({
            jobs: z.array(z.object({ jobId: z.string(), fileName: z.string(), rowCount: z.number().int(), createdAt: z.string(), finishedAt: z.string().nullable() })),
          }),
        },
      },
      async handle({ res, tenantId }) {
        const rows = await jobs.list(tenantId);
        res.json({
          jobs: rows.map((j) => ({
            jobId: j.id,
            fileName: j.fileName,
            rowCount: j.rowCount,
            createdAt: j.createdAt.toISOString(),
            finishedAt: j.finishedAt?.toISOString() ?? null,
          })),
        });
      },
    }),
    operation({
      operationId: 'getBulkJob',
      method: 'get',
      path: `${base}/{jobId}`,
      summary: 'Read a bulk job and its live progress',
      tag: 'bulk',
      permission: 'provisioning:read',
      params: jobParams,
      responses: { 200: { description: 'The job', schema: jobSchema } },
      async handle({ res, tenantId, params }) {
        res.json({ ...(await jobs.view(tenantId, params.jobId)), reportUrl: `${jobUrl(params.jobId)}/report` });
      },
    }),
    control('pause', 'Pause a bulk job: devices in flight finish, no new ones start'),
    control('resume', 'Resume a paused bulk job'),
    control('cancel', 'Cancel a bulk job: devices in flight are cancelled and revoked, the rest never start'),
    control('retry-failed', "Run a bulk job's failed devices again"),
    operation({
      operationId: 'setBulkJobConcurrency',
      method: 'put',
      path: `${base}/{jobId}/concurrency`,
      summary: 'Change how many devices of a bulk job are provisioned at once',
      tag: 'bulk',
      permission: 'provisioning:write',
      params: jobParams,
      body: z.object({ concurrency: z.number().int().min(1).max(maximumBulkConcurrency) }).strict(),
      responses: { 202: { description: 'Requested', schema: z.object({ jobId: z.string(), concurrency: z.number().int() }) } },
      async handle({ res, tenantId, params, body }) {
        await jobs.setConcurrency(tenantId, params.jobId, body.concurrency);
        res.status(202).json({ jobId: params.jobId, concurrency: body.concurrency });
      },
    }),
    operation({
      operationId: 'getBulkJobReport',
      method: 'get',
      path: `${base}/{jobId}/report`,
      summary: 'Download the per-device report of a bulk job (JSON or CSV)',
      tag: 'bulk',
      permission: 'provisioning:read',
      params: jobParams,
      query: z.object({ format: z.enum(['json', 'csv']).default('json') }).strict(),
      responses: {
        200: {
          description: 'One entry per device: outcome, certificate serial, error, duration',
          alsoAs: ['text/csv'],
          schema: z.object({
            jobId: z.string(),
            devices: z.array(z.record(z.string(), z.union([z.string(), z.number(), z.null()]))),
          }),
        },
      },
      async handle({ res, tenantId, params, query }) {
        const rows = await jobs.report(tenantId, params.jobId);
        if (query.format === 'csv') {
          res
            .type('text/csv')
            .attachment(`bulk-${params.jobId}.csv`)
            .send(toCsv(bulkReportColumns, rows.map((row) => bulkReportColumns.map((column) => row[column]))));
          return;
        }
        res.json({ jobId: params.jobId, devices: rows });
      },
    }),
  ];
}
