/**
 * Delivers alerts to the operator's webhook: one JSON POST per alert state, signed with a secret
 * shared with the receiver (`X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`) and
 * carrying an `Idempotency-Key` that is the same for every retry of one state, so a receiver that
 * saw a delivery whose answer we lost can drop the repeat.
 *
 * The URL is never logged whole (hooks often carry a token in their path), nor is the secret.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { AlertRow } from '../db/schema';
import { parseOrThrow } from '../foundation/validation';
import type { Logger } from '../foundation/logger';
import { alertState, defaultDeliveryRetryPolicy, type AlertState, type DeliveryRetryPolicy } from './alert-store';

export const signatureHeader = 'X-Signature-256';
export const idempotencyHeader = 'Idempotency-Key';

export interface AlertWebhookSettings {
  url: string;
  /** Shared with the receiver, which recomputes the signature with it. */
  secret: string;
  /** How long one POST may take, connection included; default 10 s. */
  timeoutMs?: number;
  /** When failed deliveries are tried again; default 1 min doubling to 1 h. */
  retry?: DeliveryRetryPolicy;
}

/** The JSON body the receiver gets. */
export interface AlertNotification {
  id: string;
  tenantId: string;
  kind: string;
  severity: string;
  summary: string;
  details: unknown;
  raisedAt: string;
  state: AlertState;
  /** Present when `state` is `resolved`. */
  resolvedAt?: string;
}

export type DeliveryOutcome =
  | { delivered: true; status: number }
  | { delivered: false; status?: number; error: string };

const defaultTimeoutMs = 10_000;
/** Enough of a refusal's body to tell what the receiver disliked. */
const maximumErrorBodyLength = 200;

const settingsSchema = z.object({
  url: z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }),
  // Short secrets make the signature guessable.
  secret: z.string().min(16, 'must be at least 16 characters'),
  timeoutMs: z.number().int().min(100).max(120_000).default(defaultTimeoutMs),
  retry: z
    .object({
      initialIntervalMs: z.number().int().min(0),
      maximumIntervalMs: z.number().int().min(0),
    })
    .default(defaultDeliveryRetryPolicy),
});

export function alertNotification(alert: AlertRow): AlertNotification {
  return {
    id: alert.id,
    tenantId: alert.tenantId,
    kind: alert.kind,
    severity: alert.severity,
    summary: alert.summary,
    details: alert.details,
    raisedAt: alert.firstRaisedAt.toISOString(),
    state: alertState(alert),
    ...(alert.resolvedAt ? { resolvedAt: alert.resolvedAt.toISOString() } : {}),
  };
}

/** `sha256=<hex>` of the body as sent, byte for byte. */
export function signWebhookBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/** For receivers (and tests): checks a signature header in constant time. */
export function verifyWebhookSignature(body: string, header: string | undefined, secret: string): boolean {
  if (!header) return false;
  const expected = Buffer.from(signWebhookBody(body, secret));
  const presented = Buffer.from(header);
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

export class AlertWebhook {
  readonly #url: string;
  readonly #secret: string;
  readonly #timeoutMs: number;
  readonly #logger?: Logger;
  readonly retry: DeliveryRetryPolicy;
  /** Safe to log: scheme, host and port only. */
  readonly destination: string;

  constructor(settings: AlertWebhookSettings, logger?: Logger) {
    const parsed = parseOrThrow(settingsSchema, settings, 'alert webhook settings');
    this.#url = parsed.url;
    this.#secret = parsed.secret;
    this.#timeoutMs = parsed.timeoutMs;
    this.retry = parsed.retry;
    this.destination = new URL(parsed.url).origin;
    this.#logger = logger?.child({ component: 'alert-webhook', destination: this.destination });
  }

  /** One attempt: delivered on a 2xx answer, failed on anything else (redirects included) or no answer in time. */
  async deliver(notification: AlertNotification): Promise<DeliveryOutcome> {
    const body = JSON.stringify(notification);
    try {
      const response = await fetch(this.#url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'device-provisioning-alerts',
          [signatureHeader]: signWebhookBody(body, this.#secret),
          [idempotencyHeader]: `${notification.id}:${notification.state}`,
        },
        body,
        // Following a redirect would hand the alert to a host nobody configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await response.text().catch(() => '');
      if (response.status >= 200 && response.status < 300) return { delivered: true, status: response.status };
      const excerpt = text.trim().slice(0, maximumErrorBodyLength);
      const error = `webhook answered ${response.status}${excerpt ? `: ${excerpt}` : ''}`;
      this.#logger?.warn({ alertId: notification.id, state: notification.state, status: response.status }, 'alert delivery refused');
      return { delivered: false, status: response.status, error };
    } catch (failure) {
      const error = describeFetchFailure(failure, this.#timeoutMs);
      this.#logger?.warn({ alertId: notification.id, state: notification.state, error }, 'alert delivery failed');
      return { delivered: false, error };
    }
  }
}

function describeFetchFailure(failure: unknown, timeoutMs: number): string {
  if (failure instanceof Error && (failure.name === 'TimeoutError' || failure.name === 'AbortError')) {
    return `webhook did not answer within ${timeoutMs} ms`;
  }
  // undici puts the useful part (ECONNREFUSED, certificate problems) in the cause.
  const cause = failure instanceof Error && failure.cause instanceof Error ? failure.cause.message : undefined;
  const message = failure instanceof Error ? failure.message : String(failure);
  return `webhook unreachable: ${cause ?? message}`;
}
