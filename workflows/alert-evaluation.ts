/**
 * One alert evaluation, started by the alert schedule: run the rules, then deliver whatever
 * changed (and whatever earlier deliveries left behind). Delivery runs even when evaluation failed,
 * so alerts raised directly by other features still go out.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { AlertActivities, AlertDeliveryResult, AlertEvaluationResult } from '../activities/alerts';

/**
 * Both activities are idempotent and the schedule runs again in a few minutes, so a few quick
 * retries are enough; they heartbeat per tenant and per delivery.
 */
const alerting = proxyActivities<AlertActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 3 },
});

export interface EvaluateAlertsInput {
  /** Only these tenants; default every tenant with certificates, devices or open alerts. */
  tenantIds?: string[];
}

export interface AlertEvaluationSummary {
  evaluation: AlertEvaluationResult;
  delivery: AlertDeliveryResult;
}

export async function evaluateAlerts(input: EvaluateAlertsInput = {}): Promise<AlertEvaluationSummary> {
  let evaluation: AlertEvaluationResult | undefined;
  let evaluationFailure: unknown;
  try {
    evaluation = await alerting.evaluateAlertRules({ tenantIds: input.tenantIds });
  } catch (error) {
    evaluationFailure = error;
  }
  const delivery = await alerting.deliverPendingAlerts();
  if (evaluationFailure !== undefined) throw evaluationFailure;
  return { evaluation: evaluation!, delivery };
}
