/**
 * The gate every deployment request passes before anything starts (a provisioning request, a
 * rollout): each device's configuration rendered with its parameters and judged under the
 * compliance policy. What cannot be rendered is a problem with the request; what the policy
 * blocks is refused; a refusal of a real request (not a check) goes into each blocked device's
 * history like a blocked push, so the approver of an exception can see who asked for it.
 */
import { ComplianceViolationError, type FieldProblem } from '../foundation/errors';
import { describeFindings } from './compliance';
import type { PreparedConfiguration } from './configuration-rendering';
import type { DeviceConfigurations } from './device-configurations';

/** A device whose configuration the policy would block, and where the request named it. */
export interface BlockedConfiguration {
  field: string;
  deviceId: string;
  prepared: PreparedConfiguration;
}

/** Findings and problems listed in one refusal; the rest are counted. */
const listedInRefusal = 20;

/**
 * Sorts previews (as `DeviceConfigurations.previewMany` returns them, in request order) into the
 * problems of configurations that cannot be rendered and the configurations the policy blocks.
 */
export function judgeDeployment(
  previews: Array<{ prepared?: PreparedConfiguration; problems: FieldProblem[] }>,
  named: Array<{ field: string; deviceId: string }>,
): { problems: FieldProblem[]; blocked: BlockedConfiguration[] } {
  const problems: FieldProblem[] = [];
  const blocked: BlockedConfiguration[] = [];
  previews.forEach(({ prepared, problems: renderProblems }, position) => {
    const { field, deviceId } = named[position]!;
    if (!prepared) {
      problems.push(...renderProblems.map((problem) => ({ field, reason: `${problem.field}: ${problem.reason}` })));
    } else if (prepared.blocking.length > 0) {
      blocked.push({ field, deviceId, prepared });
    }
  });
  return { problems, blocked };
}

/** Each blocking finding as a problem of the device that has it. */
export function complianceProblems(blocked: BlockedConfiguration): FieldProblem[] {
  return blocked.prepared.blocking.map((finding) => ({
    field: blocked.field,
    reason: `compliance rule ${finding.ruleId} at ${finding.field}: ${finding.reason}`,
  }));
}

/** The refusal of a deployment the policy blocks, naming each blocked device and finding (the first few). */
export function complianceRefusal(blocked: BlockedConfiguration[]): ComplianceViolationError {
  const first = blocked[0]!;
  const more = blocked.length > 1 ? ` and ${blocked.length - 1} more device(s)` : '';
  return new ComplianceViolationError(
    `the configuration breaks the compliance policy (${first.deviceId}: ${describeFindings(first.prepared.blocking)}${more}); an approver may grant an exception`,
    { fields: blocked.flatMap(complianceProblems).slice(0, listedInRefusal) },
  );
}

/** Puts a refusal on record in each blocked device's history, as a push the policy stopped. */
export async function recordRefusal(
  configurations: Pick<DeviceConfigurations, 'recordPush'>,
  tenantId: string,
  blocked: BlockedConfiguration[],
  refusal: Error,
  requestedBy: string | undefined,
): Promise<void> {
  for (const { deviceId, prepared } of blocked) {
    await configurations.recordPush({
      tenantId,
      deviceId,
      templateId: prepared.templateId,
      templateVersion: prepared.version,
      outcome: 'blocked',
      settingsHash: prepared.settingsHash,
      findings: prepared.findings,
      actor: requestedBy ?? 'api',
      requestedBy,
      error: refusal.message,
    });
  }
}
