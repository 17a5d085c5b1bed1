/**
 * Encrypted workflow history against a real Temporal dev server: what the server stores holds no
 * secret, the workers and clients that share the codec read everything, and the real `temporal`
 * CLI reads it too through the codec endpoint, which only authorised operators may use, and then
 * only for their own tenant's runs.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ActivityFailure, Client, WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codecServerRouter, type CodecOperation } from '../../api/codec-server';
import { notFoundHandler } from '../../api/problem';
import { EncryptionCodec, payloadDataConverter, type PayloadKeyring } from '../../custody/payload-codec';
import { ForbiddenError, UnauthenticatedError } from '../../foundation/errors';
import { createLogger } from '../../foundation/logger';
import { installTemporalRuntime } from '../../service/temporal';
import type { CodecTestActivities, DeviceSecretInput } from '../support/codec-workflows';
import { temporalCliPath } from '../support/temporal';

const run = promisify(execFile);
const workflowsPath = fileURLToPath(new URL('../support/codec-workflows.ts', import.meta.url));
const operatorToken = 'operator-token-for-tests';
/** Operators' tokens and the tenant each works for. */
const operatorTenants = new Map([
  [operatorToken, 'acme'],
  ['globex-operator-token-for-tests', 'globex'],
]);
const allowedOrigin = 'http://127.0.0.1:8233';

const keyring: PayloadKeyring = { activeKeyId: 'k1', keys: new Map([['k1', randomBytes(32)]]) };
const dataConverter = payloadDataConverter(keyring);
const authorisations: Array<{ operation: CodecOperation; namespace?: string }> = [];

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let codecServer: http.Server;
let codecEndpoint: string;
const taskQueue = `encrypted-history-${randomUUID()}`;

beforeAll(async () => {
  installTemporalRuntime(createLogger('silent'));
  env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      ip: '127.0.0.1',
      extraArgs: ['--log-level', 'error'],
    },
    client: { dataConverter },
  });
  const activities: CodecTestActivities = {
    echoDeviceSecret: async (input) => input,
    refuseDeviceSecret: async (input) => {
      throw ApplicationFailure.nonRetryable(`device ${input.deviceId} refused the password ${input.credentials.password}`, 'ConfigurationRejectedError');
    },
  };
  worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowsPath, activities, dataConverter });
  running = worker.run();

  const app = express();
  app.use(
    '/codec',
    codecServerRouter({
      codec: new EncryptionCodec(keyring),
      allowedOrigins: [allowedOrigin],
      namespaces: ['default'],
      bodyLimit: '64kb',
      async authorise(req, access) {
        const header = req.get('authorization');
        if (!header) throw new UnauthenticatedError('credentials are required');
        const tenantId = operatorTenants.get(header.replace(/^Bearer /, ''));
        if (!tenantId) throw new ForbiddenError('not an operator');
        authorisations.push(access);
        return { tenantId };
      },
    }),
  );
  app.use(notFoundHandler);
  codecServer = http.createServer(app);
  await new Promise<void>((resolve) => codecServer.listen(0, '127.0.0.1', resolve));
  codecEndpoint = `http://127.0.0.1:${(codecServer.address() as AddressInfo).port}/codec`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => {
    if (!codecServer) return resolve();
    codecServer.close(() => resolve());
    codecServer.closeAllConnections();
  });
  worker?.shutdown();
  await running;
  await env?.teardown();
});

function secretInput(): DeviceSecretInput {
  return { deviceId: `CAM-${randomBytes(3).toString('hex')}`, credentials: { username: 'admin', password: `pw-${randomUUID()}` } };
}

/** A run of the tenant's work: its workflow id names the tenant, as every tenant's workflow id does. */
async function completedRun(input: DeviceSecretInput, tenantId = 'acme'): Promise<{ workflowId: string; result: DeviceSecretInput }> {
  const workflowId = `codec-test:${tenantId}:${randomUUID()}`;
  const result = await env.client.workflow.execute('returnDeviceSecret', { args: [input], taskQueue, workflowId });
  return { workflowId, result: result as DeviceSecretInput };
}

function workflowShow(workflowId: string, codec?: { endpoint: string; token: string }, commandTimeout = '20s') {
  const args = [
    'workflow', 'show', '--address', env.address, '--namespace', 'default', '--workflow-id', workflowId,
    '--output', 'json', '--command-timeout', commandTimeout,
  ];
  if (codec) args.push('--codec-endpoint', codec.endpoint, '--codec-auth', `Bearer ${codec.token}`);
  // Asynchronous on purpose: the codec server answering the CLI runs in this process.
  return run(temporalCliPath(), args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
}

/** The CLI prints payloads as protobuf JSON (base64 data and metadata): every payload's encoding and contents. */
function payloadContents(cliJson: string): { encodings: string[]; text: string } {
  const encodings: string[] = [];
  const texts: string[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== 'object') return;
    const record = value as Record<string, unknown>;
    const metadata = record.metadata as Record<string, string> | undefined;
    if (typeof metadata?.encoding === 'string') {
      encodings.push(Buffer.from(metadata.encoding, 'base64').toString('utf8'));
      texts.push(Buffer.from(typeof record.data === 'string' ? record.data : '', 'base64').toString('utf8'));
      return;
    }
    Object.values(record).forEach(visit);
  };
  if (cliJson.trim()) visit(JSON.parse(cliJson));
  return { encodings, text: texts.join('\n') };
}

function payloadJson(payload: Payload) {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data!).toString('base64'),
  };
}

/** A payload as versions before per-tenant keys sealed it: under the payload key itself, named by its id alone. */
function legacySealed(payload: Payload): Payload {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyring.keys.get('k1')!, iv);
  cipher.setAAD(Buffer.from('device-provisioning/temporal-payload/v1\0k1'));
  const sealed = Buffer.concat([cipher.update(proto.temporal.api.common.v1.Payload.encode(payload).finish()), cipher.final()]);
  return {
    metadata: { encoding: Buffer.from('binary/encrypted'), 'encryption-key-id': Buffer.from('k1'), 'encryption-cipher': Buffer.from('AES-256-GCM') },
    data: Buffer.concat([iv, sealed, cipher.getAuthTag()]),
  };
}

function codecRequest(operation: string, init: { body?: string; headers?: Record<string, string>; method?: string } = {}) {
  return fetch(`${codecEndpoint}/${operation}`, {
    method: init.method ?? 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${operatorToken}`,
      'x-namespace': 'default',
      ...init.headers,
    },
    body: init.body,
  });
}

async function expectProblem(response: Response, status: number) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = (await response.json()) as { status: number; type: string; title: string; detail: string };
  expect(problem).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  return problem;
}

describe('encrypted workflow history', () => {
  it('the history the server stores holds no secret while the codec client gets the result back intact', async () => {
    const input = secretInput();
    const { workflowId, result } = await completedRun(input);
    expect(result).toEqual(input);

    const plainClient = new Client({ connection: env.connection, namespace: 'default' });
    const history = await plainClient.workflow.getHandle(workflowId).fetchHistory();
    const stored = Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
    expect(stored.includes(workflowId)).toBe(true);
    expect(stored.includes(input.credentials.password)).toBe(false);
    expect(stored.includes(input.deviceId)).toBe(false);

    // Every payload-carrying event (start input, activity input and result, workflow result) is sealed under acme's key from k1.
    const events = history.events ?? [];
    const payloads = [
      ...(events[0].workflowExecutionStartedEventAttributes?.input?.payloads ?? []),
      ...events.flatMap((e) => e.activityTaskScheduledEventAttributes?.input?.payloads ?? []),
      ...events.flatMap((e) => e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
      ...events.flatMap((e) => e.workflowExecutionCompletedEventAttributes?.result?.payloads ?? []),
    ];
    expect(payloads).toHaveLength(4);
    for (const payload of payloads) {
      expect(Buffer.from(payload.metadata!.encoding!).toString()).toBe('binary/encrypted');
      expect(Buffer.from(payload.metadata!['encryption-key-id']!).toString()).toBe('k1/acme');
    }
  });

  it('failure messages are stored encrypted too, and the codec client reads them back', async () => {
    const input = secretInput();
    const workflowId = `codec-test:acme:${randomUUID()}`;
    const handle = await env.client.workflow.start('failWithDeviceSecret', { workflowId, taskQueue, args: [input] });
    const failure = await handle.result().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const activityFailure = (failure as WorkflowFailedError).cause as ActivityFailure;
    expect(activityFailure).toBeInstanceOf(ActivityFailure);
    expect(activityFailure.cause?.message).toContain(input.credentials.password);

    const plainClient = new Client({ connection: env.connection, namespace: 'default' });
    const history = await plainClient.workflow.getHandle(workflowId).fetchHistory();
    const events = history.events ?? [];
    expect(events.some((e) => e.activityTaskFailedEventAttributes)).toBe(true);
    expect(events.some((e) => e.workflowExecutionFailedEventAttributes)).toBe(true);
    const stored = Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
    expect(stored.includes(input.credentials.password)).toBe(false);
    expect(stored.includes(input.deviceId)).toBe(false);
    expect(stored.includes('refused the password')).toBe(false);
  });

  it('the temporal CLI shows the secret only through the codec endpoint, as an authorised operator of the namespace', async () => {
    const input = secretInput();
    const { workflowId } = await completedRun(input);

    const withoutCodec = await workflowShow(workflowId);
    expect(withoutCodec.stdout).toContain(workflowId);
    expect(payloadContents(withoutCodec.stdout).encodings).toEqual(Array(4).fill('binary/encrypted'));
    expect(payloadContents(withoutCodec.stdout).text).not.toContain(input.credentials.password);
    expect(withoutCodec.stdout).not.toContain(input.credentials.password);

    authorisations.length = 0;
    const withCodec = await workflowShow(workflowId, { endpoint: codecEndpoint, token: operatorToken });
    expect(payloadContents(withCodec.stdout).encodings).toEqual(Array(4).fill('json/plain'));
    expect(payloadContents(withCodec.stdout).text).toContain(input.credentials.password);
    expect(authorisations.length).toBeGreaterThan(0);
    expect(authorisations).toContainEqual({ operation: 'decode', namespace: 'default' });

    // The CLI retries a refused decode until its deadline, then fails without printing the history.
    const refused = await workflowShow(workflowId, { endpoint: codecEndpoint, token: 'not-an-operator' }, '2s').then(
      () => expect.unreachable('the CLI printed history the codec refused to decode'),
      (error: { code?: number; stdout?: string; stderr?: string }) => error,
    );
    expect(refused.code).not.toBe(0);
    expect(payloadContents(refused.stdout ?? '').text).not.toContain(input.credentials.password);
    expect(refused.stderr ?? '').not.toContain(input.credentials.password);
  });

  it("decodes for an operator only its own tenant's history: another tenant's payloads stay encoded", async () => {
    const ofAcme = secretInput();
    const ofGlobex = secretInput();
    const [acmeRun, globexRun] = await Promise.all([completedRun(ofAcme, 'acme'), completedRun(ofGlobex, 'globex')]);

    const acmeReadsGlobex = await workflowShow(globexRun.workflowId, { endpoint: codecEndpoint, token: operatorToken });
    expect(payloadContents(acmeReadsGlobex.stdout).encodings).toEqual(Array(4).fill('binary/encrypted'));
    expect(acmeReadsGlobex.stdout).not.toContain(ofGlobex.credentials.password);
    expect(payloadContents(acmeReadsGlobex.stdout).text).not.toContain(ofGlobex.credentials.password);

    const globexReadsOwn = await workflowShow(globexRun.workflowId, { endpoint: codecEndpoint, token: 'globex-operator-token-for-tests' });
    expect(payloadContents(globexReadsOwn.stdout).text).toContain(ofGlobex.credentials.password);
    const globexReadsAcme = await workflowShow(acmeRun.workflowId, { endpoint: codecEndpoint, token: 'globex-operator-token-for-tests' });
    expect(payloadContents(globexReadsAcme.stdout).encodings).toEqual(Array(4).fill('binary/encrypted'));
    expect(payloadContents(globexReadsAcme.stdout).text).not.toContain(ofAcme.credentials.password);

    // Each tenant's key is its own: acme's does not open globex's payloads.
    const plainClient = new Client({ connection: env.connection, namespace: 'default' });
    const globexHistory = await plainClient.workflow.getHandle(globexRun.workflowId).fetchHistory();
    const [sealed] = globexHistory.events![0].workflowExecutionStartedEventAttributes!.input!.payloads!;
    expect(Buffer.from(sealed.metadata!['encryption-key-id']!).toString()).toBe('k1/globex');
    const relabelled = { ...sealed, metadata: { ...sealed.metadata, 'encryption-key-id': Buffer.from('k1/acme') } };
    await expect(new EncryptionCodec(keyring).decode([relabelled as Payload])).rejects.toThrow(/failed authentication/);
  });

  it('the codec endpoint round-trips payloads as protobuf JSON for an authorised operator', async () => {
    const payload = defaultPayloadConverter.toPayload({ password: 'round-trip-secret' });
    const asJson = { payloads: [payloadJson(payload)] };
    const encoded = await codecRequest('encode', { body: JSON.stringify(asJson) });
    expect(encoded.status).toBe(200);
    const encodedBody = (await encoded.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(JSON.stringify(encodedBody)).not.toContain(Buffer.from('round-trip-secret').toString('base64'));
    expect(Buffer.from(encodedBody.payloads[0].metadata.encoding, 'base64').toString()).toBe('binary/encrypted');

    expect(Buffer.from(encodedBody.payloads[0].metadata['encryption-key-id'], 'base64').toString()).toBe('k1/acme');

    const decoded = await codecRequest('decode', { body: JSON.stringify(encodedBody) });
    expect(decoded.status).toBe(200);
    expect(decoded.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await decoded.json()).toEqual(asJson);

    const byGlobex = await codecRequest('decode', { body: JSON.stringify(encodedBody), headers: { authorization: 'Bearer globex-operator-token-for-tests' } });
    expect(byGlobex.status).toBe(200);
    expect(await byGlobex.json()).toEqual(encodedBody);
  });

  it('leaves history sealed before payloads were per tenant encoded for every codec caller, while the service still reads it', async () => {
    const legacyPayload = legacySealed(defaultPayloadConverter.toPayload({ password: 'written-by-an-earlier-version' }));
    const body = JSON.stringify({ payloads: [payloadJson(legacyPayload)] });
    for (const token of operatorTenants.keys()) {
      const answer = await codecRequest('decode', { body, headers: { authorization: `Bearer ${token}` } });
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual(JSON.parse(body));
    }
    const [opened] = await new EncryptionCodec(keyring).decode([legacyPayload]);
    expect(defaultPayloadConverter.fromPayload(opened)).toEqual({ password: 'written-by-an-earlier-version' });
  });

  it('the codec endpoint refuses decoding without operator credentials (401) and with the wrong ones (403)', async () => {
    const body = JSON.stringify({ payloads: [] });
    await expectProblem(await codecRequest('decode', { body, headers: { authorization: '' } }), 401);
    await expectProblem(await codecRequest('decode', { body, headers: { authorization: 'Bearer someone-else' } }), 403);
    await expectProblem(await codecRequest('encode', { body, headers: { authorization: '' } }), 401);
  });

  it('the codec endpoint refuses a namespace it does not serve', async () => {
    const problem = await expectProblem(
      await codecRequest('decode', { body: JSON.stringify({ payloads: [] }), headers: { 'x-namespace': 'someone-elses' } }),
      400,
    );
    expect(problem.detail).toContain('someone-elses');
  });

  it('the codec endpoint answers CORS preflight for the Web UI origin with credentials, and not for other origins', async () => {
    const preflight = (origin: string) =>
      fetch(`${codecEndpoint}/decode`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,x-namespace',
        },
      });

    const allowed = await preflight(allowedOrigin);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(allowedOrigin);
    expect(allowed.headers.get('access-control-allow-credentials')).toBe('true');
    expect(allowed.headers.get('access-control-allow-methods')).toContain('POST');
    expect(allowed.headers.get('access-control-allow-headers')).toBe('Authorization, Content-Type, X-Namespace');
    expect(allowed.headers.get('vary')).toMatch(/Origin/i);

    const other = await preflight('https://elsewhere.example');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('access-control-allow-credentials')).toBeNull();
    await expectProblem(other, 403);

    // The real request from the UI's origin carries CORS too; from another origin it is refused.
    const fromUi = await codecRequest('decode', { body: JSON.stringify({ payloads: [] }), headers: { origin: allowedOrigin } });
    expect(fromUi.status).toBe(200);
    expect(fromUi.headers.get('access-control-allow-origin')).toBe(allowedOrigin);
    await expectProblem(
      await codecRequest('decode', { body: JSON.stringify({ payloads: [] }), headers: { origin: 'https://elsewhere.example' } }),
      403,
    );
  });

  it('the codec endpoint answers malformed bodies with 400 problem+json, never 500', async () => {
    const foreignKey = new EncryptionCodec({ activeKeyId: 'retired', keys: new Map([['retired', randomBytes(32)]]) });
    const [sealedElsewhere] = await foreignKey.encodeFor('acme', [defaultPayloadConverter.toPayload('x')]);
    const unknownKeyBody = JSON.stringify({ payloads: [payloadJson(sealedElsewhere)] });
    const garbage = [
      'not json at all',
      '{"payloads": [',
      '[]',
      '{}',
      '{"payloads": "nope"}',
      '{"payloads": [{"data": "!!!not base64!!!"}]}',
      '{"payloads": [{"metadata": {"encoding": 42}}]}',
      '{"payloads": [{"metadata": {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="}, "data": "AAAA"}]}',
      unknownKeyBody,
    ];
    for (const body of garbage) {
      const response = await codecRequest('decode', { body });
      expect(response.status, body).toBe(400);
      await expectProblem(response, 400);
    }
    const unknownKey = await expectProblem(await codecRequest('decode', { body: unknownKeyBody }), 400);
    expect(unknownKey.detail).toContain('"retired"');

    await expectProblem(await codecRequest('decode', { body: 'payloads=1', headers: { 'content-type': 'text/plain' } }), 415);
    await expectProblem(await codecRequest('decode', { body: JSON.stringify({ payloads: [{ data: 'A'.repeat(100_000) }] }) }), 413);
    await expectProblem(await codecRequest('decode', { method: 'GET' }), 405);
  });
});
