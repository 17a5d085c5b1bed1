/**
 * The side effects of alert evaluation: running the rules against the database and Temporal
 * visibility, opening and resolving alerts, and delivering what changed to the webhook. Both
 * activities are idempotent, so a retry, or the next scheduled run, simply picks up where one
 * stopped.
 */
import { Context } from '@temporalio/activity';
import { alertState, type AlertStore } from '../alerts/alert-store';
import type { ScheduledAlertRules } from '../alerts/rules';
import { AlertWebhook, alertNotification, type AlertWebhookSettings } from '../alerts/webhook';
import type { Logger } from '../foundation/logger';

export interface AlertActivityDependencies {
  /** Where alerts are opened and resolved; it audits every alert raised, resolved and delivery attempt. */
  alerts: AlertStore;
  /** The rules to evaluate and the tenants to evaluate them for. */
  rules: ScheduledAlertRules;
  /** Unset: alerts are still raised, resolved and audited, but not sent anywhere. */
  webhook?: AlertWebhookSettings;
  logger: Logger;
  /** The clock the rules measure against; tests fix it. */
  now?: () => Date;
}

export interface AlertEvaluationResult {
  tenants: number;
  /** Alerts opened by this evaluation. */
  raised: number;
  /** Alerts that were open already and still hold. */
  stillFiring: number;
  resolved: number;
}

export interface AlertDeliveryResult {
  /** False when no webhook is configured. */
  webhookConfigured: boolean;
  delivered: number;
  failed: number;
}

/** The audit trail's actor for everything the scheduled evaluation does. */
export const alertEvaluationActor = 'alert-evaluation';

/** One evaluation delivers at most this many, so a long outage drains over a few runs, not one endless activity. */
const deliveryBatchSize = 100;
/** Deliveries in flight at once: a slow receiver should not hold up the whole batch. */
const deliveryConcurrency = 5;

export function createAlertActivities(deps: AlertActivityDependencies) {
  const { alerts: store, logger } = deps;
  const { rules } = deps.rules;
  const log = logger.child({ component: 'alerts' });
  const now = deps.now ?? (() => new Date());
  const webhook = deps.webhook ? new AlertWebhook(deps.webhook, logger) : undefined;

  return {
    /**
     * Runs every rule for the given tenants (default: every tenant with certificates, devices or
     * open alerts), opens what holds and resolves what no longer does. A rule that cannot be
     * evaluated (Temporal unreachable, say) resolves nothing; the others go on, and the activity
     * then fails so that it is retried.
     */
    async evaluateAlertRules(input: { tenantIds?: string[] } = {}): Promise<AlertEvaluationResult> {
      const context = Context.current();
      const tenants = input.tenantIds ?? (await deps.rules.tenants());
      const at = now();
      const result: AlertEvaluationResult = { tenants: tenants.length, raised: 0, stillFiring: 0, resolved: 0 };
      const failures: string[] = [];

      for (const tenantId of tenants) {
        for (const rule of rules) {
          try {
            const conditions = await rule.evaluate(tenantId, at);
            for (const condition of conditions) {
              const { created } = await store.raise({ tenantId, ...condition, raisedBy: alertEvaluationActor });
              if (created) result.raised++;
              else result.stillFiring++;
              context.heartbeat();
            }
            for (const kind of rule.kinds) {
              const firing = conditions.filter((condition) => condition.kind === kind).map((condition) => condition.fingerprint);
              const resolved = await store.resolveMissing(tenantId, kind, firing, alertEvaluationActor);
              result.resolved += resolved.length;
            }
          } catch (error) {
            log.error({ err: error, tenantId, rule: rule.name }, 'alert rule could not be evaluated');
            failures.push(`${rule.name} for tenant ${tenantId}: ${error instanceof Error ? error.message : String(error)}`);
          }
          context.heartbeat();
        }
      }

      if (failures.length > 0) throw new Error(`alert evaluation incomplete: ${failures.join('; ')}`);
      if (result.raised > 0 || result.resolved > 0) log.info({ ...result }, 'alerts evaluated');
      return result;
    },

    /** Sends each alert whose firing or resolution the webhook has not acknowledged yet and whose retry is due. */
    async deliverPendingAlerts(): Promise<AlertDeliveryResult> {
      if (!webhook) return { webhookConfigured: false, delivered: 0, failed: 0 };
      const context = Context.current();
      const pending = await store.pendingDelivery({ retry: webhook.retry, limit: deliveryBatchSize });
      const result: AlertDeliveryResult = { webhookConfigured: true, delivered: 0, failed: 0 };

      const queue = [...pending];
      const sender = async () => {
        for (let alert = queue.shift(); alert; alert = queue.shift()) {
          const state = alertState(alert);
          const outcome = await webhook.deliver(alertNotification(alert));
          if (outcome.delivered) {
            if (await store.markDelivered(alert.id, state, { status: outcome.status })) result.delivered++;
          } else {
            await store.markDeliveryFailed(alert.id, state, outcome.error, outcome.status ? { status: outcome.status } : {});
            result.failed++;
          }
          context.heartbeat();
        }
      };
      await Promise.all(Array.from({ length: Math.min(deliveryConcurrency, queue.length) }, sender));

      if (result.delivered > 0 || result.failed > 0) {
        log.info({ ...result, destination: webhook.destination }, 'alert deliveries attempted');
      }
      return result;
    },
  };
}

export type AlertActivities = ReturnType<typeof createAlertActivities>;
