/**
 * Emergency access: each presentation of a break-glass key goes on the tenant's audit trail with
 * the reason its holder stated, and an accepted one raises a critical `access.break_glass_used`
 * alert, so whoever watches the alerts knows the emergency credential is in use, by whom and why.
 */
import { createHash } from 'node:crypto';
import type { BreakGlassUse } from '../access/api-keys';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';

export async function recordBreakGlassUse(deps: { alerts: AlertStore; audit: AuditLog }, use: BreakGlassUse): Promise<void> {
  const { principal } = use;
  const details = { method: use.method, path: use.path, credential: principal.credential, keyName: principal.name, ...(use.address ? { address: use.address } : {}) };
  await deps.audit.append({
    tenantId: principal.tenantId,
    actor: principal.subject,
    actorType: 'api-key',
    action: 'access.break_glass_used',
    targetType: 'api-key',
    targetId: principal.credential,
    outcome: use.outcome === 'accepted' ? 'success' : 'failure',
    details: use.outcome === 'accepted' ? { ...details, reason: use.reason } : { ...details, refused: use.reason },
  });
  if (use.outcome !== 'accepted') return;
  // One alert per key and stated reason: a new reason is a new alert, a repeat marks the open one as still firing.
  await deps.alerts.raise({
    tenantId: principal.tenantId,
    kind: alertKinds.breakGlassUsed,
    severity: 'critical',
    fingerprint: alertFingerprint(alertKinds.breakGlassUsed, principal.credential, createHash('sha256').update(use.reason).digest('hex').slice(0, 16)),
    summary: `break-glass key "${principal.name}" used: ${use.reason}`,
    details: { ...details, reason: use.reason },
    raisedBy: 'access',
  });
}
