import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AlertRow } from '../db/schema';
import { ValidationError } from '../foundation/errors';
import {
  AlertWebhook,
  alertNotification,
  idempotencyHeader,
  signWebhookBody,
  signatureHeader,
  verifyWebhookSignature,
} from './webhook';

const secret = 'a-shared-secret-of-some-length';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A loopback receiver that answers each request as `respond` says. */
let server: http.Server;
let baseUrl: string;
let received: Received[] = [];
let respond: (req: http.IncomingMessage, res: http.ServerResponse) => void;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      respond(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
afterEach(() => {
  received = [];
});

function alertRow(overrides: Partial<AlertRow> = {}): AlertRow {
  return {
    id: '5b0e4cf4-1a0f-4a62-9d7c-2a4a9b1e0c11',
    tenantId: 'acme',
    kind: 'certificate.expiring',
    severity: 'warning',
    fingerprint: 'certificate.expiring:abc:warning',
    summary: 'Device certificate CN=cam-1 expires soon',
    details: { certificateId: 'abc', expiresAt: '2030-01-01T00:00:00.000Z' },
    firstRaisedAt: new Date('2029-12-01T10:00:00.000Z'),
    lastRaisedAt: new Date('2029-12-01T10:05:00.000Z'),
    resolvedAt: null,
    deliveredAt: null,
    deliveryAttempts: 0,
    lastDeliveryError: null,
    ...overrides,
  };
}

/** A logger whose every line lands in `lines`, to check what it never says. */
function capturingLogger() {
  const lines: string[] = [];
  const logger = pino(
    { level: 'trace' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  return { logger, lines };
}

describe('the alert notification', () => {
  it('carries the alert as firing while open and as resolved, with its resolution time, once closed', () => {
    expect(alertNotification(alertRow())).toEqual({
      id: '5b0e4cf4-1a0f-4a62-9d7c-2a4a9b1e0c11',
      tenantId: 'acme',
      kind: 'certificate.expiring',
      severity: 'warning',
      summary: 'Device certificate CN=cam-1 expires soon',
      details: { certificateId: 'abc', expiresAt: '2030-01-01T00:00:00.000Z' },
      raisedAt: '2029-12-01T10:00:00.000Z',
      state: 'firing',
    });
    const resolved = alertNotification(alertRow({ resolvedAt: new Date('2029-12-02T00:00:00.000Z') }));
    expect(resolved).toMatchObject({ state: 'resolved', resolvedAt: '2029-12-02T00:00:00.000Z' });
  });
});

describe('the webhook signature', () => {
  it('is the hex HMAC-SHA256 of the exact body, and fails for another body or secret', () => {
    const body = '{"id":"1"}';
    // Computed independently: printf '{"id":"1"}' | openssl dgst -sha256 -hmac a-shared-secret-of-some-length
    expect(signWebhookBody(body, secret)).toBe('sha256=5f17bad35e569da3cc9da6f6fdf07b63a4e4f85234516f0578582ce64825dfa0');
    expect(verifyWebhookSignature(body, signWebhookBody(body, secret), secret)).toBe(true);
    expect(verifyWebhookSignature('{"id":"2"}', signWebhookBody(body, secret), secret)).toBe(false);
    expect(verifyWebhookSignature(body, signWebhookBody(body, 'another-secret-of-length'), secret)).toBe(false);
    expect(verifyWebhookSignature(body, undefined, secret)).toBe(false);
  });
});

describe('webhook delivery', () => {
  it('POSTs the notification as JSON, signed, with an idempotency key per alert and state, and counts a 2xx as delivered', async () => {
    respond = (_req, res) => res.writeHead(202).end();
    const webhook = new AlertWebhook({ url: `${baseUrl}/hooks/alerts`, secret });
    const notification = alertNotification(alertRow());

    const outcome = await webhook.deliver(notification);

    expect(outcome).toEqual({ delivered: true, status: 202 });
    expect(received).toHaveLength(1);
    const [request] = received;
    expect(request.path).toBe('/hooks/alerts');
    expect(request.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request.body)).toEqual(notification);
    expect(verifyWebhookSignature(request.body, request.headers[signatureHeader.toLowerCase()] as string, secret)).toBe(true);
    expect(request.headers[idempotencyHeader.toLowerCase()]).toBe(`${notification.id}:firing`);

    await webhook.deliver(alertNotification(alertRow({ resolvedAt: new Date() })));
    expect(received[1].headers[idempotencyHeader.toLowerCase()]).toBe(`${notification.id}:resolved`);
  });

  it('counts a 500 as failed and keeps the status and the start of the answer', async () => {
    respond = (_req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('database is down');
    const webhook = new AlertWebhook({ url: baseUrl, secret });
    expect(await webhook.deliver(alertNotification(alertRow()))).toEqual({
      delivered: false,
      status: 500,
      error: 'webhook answered 500: database is down',
    });
  });

  it('does not follow a redirect and counts it as failed', async () => {
    respond = (req, res) => {
      if (req.url === '/elsewhere') res.writeHead(200).end();
      else res.writeHead(307, { location: `${baseUrl}/elsewhere` }).end();
    };
    const webhook = new AlertWebhook({ url: `${baseUrl}/hook`, secret });
    const outcome = await webhook.deliver(alertNotification(alertRow()));
    expect(outcome).toMatchObject({ delivered: false, status: 307 });
    expect(received.map((r) => r.path)).toEqual(['/hook']);
  });

  it('gives up on a receiver that does not answer within the timeout', async () => {
    respond = (_req, res) => setTimeout(() => res.writeHead(200).end(), 2_000);
    const webhook = new AlertWebhook({ url: baseUrl, secret, timeoutMs: 200 });
    const started = Date.now();
    const outcome = await webhook.deliver(alertNotification(alertRow()));
    expect(outcome).toEqual({ delivered: false, error: 'webhook did not answer within 200 ms' });
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('counts an unreachable receiver as failed', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const outcome = await new AlertWebhook({ url: `http://127.0.0.1:${port}/`, secret }).deliver(alertNotification(alertRow()));
    expect(outcome.delivered).toBe(false);
    expect(outcome).toMatchObject({ error: expect.stringMatching(/^webhook unreachable: .*ECONNREFUSED/) });
  });

  it('never logs the secret or the path of the URL, which may carry a token', async () => {
    respond = (_req, res) => res.writeHead(500).end();
    const { logger, lines } = capturingLogger();
    const webhook = new AlertWebhook({ url: `${baseUrl}/hooks/T0KEN-IN-PATH`, secret }, logger);
    await webhook.deliver(alertNotification(alertRow()));

    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('\n')).toContain(baseUrl);
    expect(lines.join('\n')).not.toContain(secret);
    expect(lines.join('\n')).not.toContain('T0KEN-IN-PATH');
    expect(JSON.stringify(webhook)).not.toContain(secret);
  });

  it('refuses a URL that is not http(s) and a secret too short to sign with', () => {
    expect(() => new AlertWebhook({ url: 'ftp://example.test/hook', secret })).toThrow(ValidationError);
    expect(() => new AlertWebhook({ url: `${baseUrl}/hook`, secret: 'short' })).toThrow(/secret/);
  });
});
