/**
 * Compliance rules over rendered settings: what a configuration must say before any device is sent
 * it (TLS on and HTTP off, a clock source, no default or weak passwords, no SNMPv1/v2c, OSDP secure
 * channel). Each rule reads the settings of the protocols it knows and names the field it objects
 * to. Which rules apply, how severe each is and their parameters are the tenant's policy; critical
 * findings block deployment unless an approver has made an exception.
 *
 * Rules never see a secret's plaintext: where a secret went they get a sealed marker and ask
 * `passwordVerdict` for the verdict, which the caller takes from the plaintext (inside the push
 * activity) or from what was recorded when the secret was written.
 */
import { z } from 'zod';
import { looksLikeCredential } from './parameters';
import type { SecretField } from './templates';

export const complianceSeverities = ['info', 'warning', 'critical'] as const;
export type ComplianceSeverity = (typeof complianceSeverities)[number];

/** Only critical findings stop a deployment; the others are reported. */
export const blockingSeverity: ComplianceSeverity = 'critical';

export interface PasswordVerdict {
  acceptable: boolean;
  /** Why not, without the password: `shorter than 12 characters`, `a well-known default password`. */
  reasons: string[];
}

export interface ComplianceFinding {
  ruleId: ComplianceRuleId;
  /** Path in the rendered settings, e.g. `management.httpEnabled`, `users[0].password`. */
  field: string;
  severity: ComplianceSeverity;
  reason: string;
  /** Set when an approver's exception covers this finding. */
  override?: { id: string; approvedBy: string; expiresAt: string };
}

export interface ComplianceSubject {
  protocol: string;
  /** Rendered settings, each secret as its sealed marker. */
  settings: Record<string, unknown>;
  /** Where secrets went in `settings`. */
  secretFields: SecretField[];
  /** The strength verdict of a secret, by name; undefined when none is known. */
  passwordVerdict(name: string): PasswordVerdict | undefined;
}

interface Violation {
  field: string;
  reason: string;
}

interface RuleDefinition<P extends z.ZodObject> {
  id: string;
  title: string;
  description: string;
  /** Protocols whose settings the rule can judge; `*` for all. */
  protocols: readonly string[];
  /** On, and critical, for tenants that have not said otherwise. */
  mandatory: boolean;
  parameters: P;
  check(subject: ComplianceSubject, parameters: z.infer<P>): Violation[];
}

function rule<P extends z.ZodObject>(definition: RuleDefinition<P>): RuleDefinition<P> {
  return definition;
}

/** Well-known factory and default passwords of cameras, controllers, readers and network gear. */
export const knownDefaultPasswords: readonly string[] = [
  '', '0000', '00000000', '1111', '111111', '1234', '12345', '123456', '1234567', '12345678', '123456789',
  '1234567890', '4321', '54321', '666666', '888888', '9999', 'abc123', 'admin', 'admin1', 'admin123', 'admin1234',
  'administrator', 'camera', 'changeme', 'default', 'guest', 'letmein', 'manager', 'meinsm', 'pass', 'pass123',
  'passw0rd', 'password', 'password1', 'password123', 'private', 'public', 'qwerty', 'root', 'secret', 'service',
  'supervisor', 'support', 'system', 'tech', 'toor', 'ubnt', 'user', 'vizxv', 'welcome', 'xc3511', 'zlxx.',
];

export const passwordRuleParameters = z
  .object({
    minimumLength: z.number().int().min(8).max(128).default(12),
    /** Of lower case, upper case, digits and symbols. */
    minimumCharacterClasses: z.number().int().min(1).max(4).default(3),
    /** Further passwords to refuse (a site's old shared password, the company name). */
    forbidden: z.array(z.string().max(128)).max(200).default([]),
  })
  .strict();
export type PasswordRuleParameters = z.infer<typeof passwordRuleParameters>;

/** Judges a password; the verdict never contains it. */
export function assessPassword(password: string, parameters: PasswordRuleParameters = passwordRuleParameters.parse({})): PasswordVerdict {
  const reasons: string[] = [];
  const folded = password.toLowerCase();
  if (knownDefaultPasswords.includes(folded) || parameters.forbidden.some((word) => word.toLowerCase() === folded)) {
    reasons.push('a well-known default password');
  }
  if (password.length < parameters.minimumLength) reasons.push(`shorter than ${parameters.minimumLength} characters`);
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((pattern) => pattern.test(password)).length;
  if (classes < parameters.minimumCharacterClasses) {
    reasons.push(`uses ${classes} of the ${parameters.minimumCharacterClasses} character classes required (lower case, upper case, digits, symbols)`);
  }
  if (password.length > 0 && new Set(password).size <= 2) reasons.push('repeats one or two characters');
  return { acceptable: reasons.length === 0, reasons };
}

const tlsVersions = ['TLSv1.2', 'TLSv1.3'] as const;

/** Paths of every string in the settings under a key that names a credential. */
function credentialFields(value: unknown, path = ''): { path: string; value: string }[] {
  if (Array.isArray(value)) return value.flatMap((item, index) => credentialFields(item, `${path}[${index}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) => {
    const at = path ? `${path}.${key}` : key;
    if (typeof inner === 'string' && looksLikeCredential(key)) return [{ path: at, value: inner }];
    return credentialFields(inner, at);
  });
}

function at(settings: Record<string, unknown>, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined), settings);
}

export const complianceRules = [
  rule({
    id: 'tls-required',
    title: 'TLS required',
    description: 'Management traffic is encrypted with at least the configured TLS version; optionally syslog too.',
    protocols: ['https'],
    mandatory: true,
    parameters: z
      .object({ minimumVersion: z.enum(tlsVersions).default('TLSv1.2'), syslogOverTls: z.boolean().default(false) })
      .strict(),
    check({ settings }, parameters) {
      const violations: Violation[] = [];
      const version = at(settings, 'tls.minVersion');
      if (typeof version !== 'string' || tlsVersions.indexOf(version as never) < tlsVersions.indexOf(parameters.minimumVersion)) {
        violations.push({ field: 'tls.minVersion', reason: `must be ${parameters.minimumVersion} or later` });
      }
      const syslog = at(settings, 'syslog.protocol');
      if (parameters.syslogOverTls && syslog !== undefined && syslog !== 'tls') {
        violations.push({ field: 'syslog.protocol', reason: 'syslog must be sent over TLS' });
      }
      return violations;
    },
  }),
  rule({
    id: 'http-disabled',
    title: 'Plain HTTP off',
    description: 'The device does not offer management over unencrypted HTTP.',
    protocols: ['https', 'onvif'],
    mandatory: true,
    parameters: z.object({}).strict(),
    check: ({ settings }) =>
      at(settings, 'management.httpEnabled') === false
        ? []
        : [{ field: 'management.httpEnabled', reason: 'plain HTTP management must be off (false)' }],
  }),
  rule({
    id: 'ntp-configured',
    title: 'Time source configured',
    description: 'The device takes its time from NTP, so certificates, logs and schedules agree.',
    protocols: ['https', 'onvif'],
    mandatory: true,
    parameters: z.object({ minimumServers: z.number().int().min(1).max(4).default(1) }).strict(),
    check({ settings }, parameters) {
      const servers = at(settings, 'ntp.servers');
      const count = Array.isArray(servers) ? servers.filter((server) => typeof server === 'string' && server.trim() !== '').length : 0;
      return count >= parameters.minimumServers
        ? []
        : [{ field: 'ntp.servers', reason: `needs at least ${parameters.minimumServers} NTP server(s), has ${count}` }];
    },
  }),
  rule({
    id: 'syslog-configured',
    title: 'Remote syslog configured',
    description: 'The device sends its log to a syslog collector.',
    protocols: ['https'],
    mandatory: false,
    parameters: z.object({}).strict(),
    check: ({ settings }) => (at(settings, 'syslog.host') ? [] : [{ field: 'syslog', reason: 'no syslog collector is configured' }]),
  }),
  rule({
    id: 'no-default-or-weak-passwords',
    title: 'No default or weak passwords',
    description: 'Every password the configuration sets is long, mixed and not a known default.',
    protocols: ['*'],
    mandatory: true,
    parameters: passwordRuleParameters,
    check({ settings, secretFields, passwordVerdict }, parameters) {
      const violations: Violation[] = [];
      const fromSecrets = new Map(secretFields.map((field) => [field.path, field.name]));
      for (const { path } of secretFields) {
        const verdict = passwordVerdict(fromSecrets.get(path)!);
        if (!verdict) violations.push({ field: path, reason: `secret ${fromSecrets.get(path)} has no recorded strength; set it again` });
        else if (!verdict.acceptable) violations.push({ field: path, reason: `secret ${fromSecrets.get(path)} is ${verdict.reasons.join(', ')}` });
      }
      for (const field of credentialFields(settings)) {
        if (fromSecrets.has(field.path)) continue;
        const verdict = assessPassword(field.value, parameters);
        if (!verdict.acceptable) violations.push({ field: field.path, reason: `is ${verdict.reasons.join(', ')}` });
      }
      return violations;
    },
  }),
  rule({
    id: 'credentials-from-vault',
    title: 'Credentials only from the vault',
    description: 'Passwords are per-device secrets ({{secret.name}}), never written into a template where anyone reading it sees them.',
    protocols: ['*'],
    mandatory: true,
    parameters: z.object({}).strict(),
    check({ settings, secretFields }) {
      const fromSecrets = new Set(secretFields.map((field) => field.path));
      return credentialFields(settings)
        .filter((field) => !fromSecrets.has(field.path))
        .map((field) => ({ field: field.path, reason: 'is written into the template; use a per-device secret ({{secret.name}})' }));
    },
  }),
  rule({
    id: 'snmp-v1v2c-disabled',
    title: 'SNMPv1/v2c off',
    description: 'Community-based SNMP (cleartext, unauthenticated) is disabled; only SNMPv3 answers.',
    protocols: ['snmp'],
    mandatory: true,
    parameters: z.object({}).strict(),
    check: ({ settings }) =>
      at(settings, 'communityAccess') === 'disabled'
        ? []
        : [{ field: 'communityAccess', reason: 'community (SNMPv1/v2c) access must be disabled' }],
  }),
  rule({
    id: 'osdp-secure-channel-required',
    title: 'OSDP secure channel',
    description: 'Card readers talk to the panel only over the OSDP secure channel with their own key.',
    protocols: ['osdp'],
    mandatory: true,
    parameters: z.object({}).strict(),
    check: ({ settings }) =>
      at(settings, 'secureChannel.required') === true
        ? []
        : [{ field: 'secureChannel.required', reason: 'the secure channel must be required' }],
  }),
  rule({
    id: 'password-login-disabled',
    title: 'Certificate login only',
    description: 'Once provisioned, the device accepts management only over mutual TLS, not passwords.',
    protocols: ['https'],
    mandatory: false,
    parameters: z.object({}).strict(),
    check: ({ settings }) =>
      at(settings, 'management.passwordLogin') === false
        ? []
        : [{ field: 'management.passwordLogin', reason: 'password login must be off (false)' }],
  }),
] as const;

export type ComplianceRuleId = (typeof complianceRules)[number]['id'];
export const complianceRuleIds = complianceRules.map((r) => r.id) as [ComplianceRuleId, ...ComplianceRuleId[]];

export function ruleDefinition(id: string): (typeof complianceRules)[number] | undefined {
  return complianceRules.find((r) => r.id === id);
}

export interface RulePolicy {
  enabled: boolean;
  severity: ComplianceSeverity;
  parameters: Record<string, unknown>;
  /** `default` when the tenant has not set this rule. */
  source: 'default' | 'tenant';
}

export type CompliancePolicy = Record<ComplianceRuleId, RulePolicy>;

/** Every rule as a tenant without a policy has it: mandatory rules on and critical, the others off. */
export function defaultCompliancePolicy(): CompliancePolicy {
  return Object.fromEntries(
    complianceRules.map((r) => [
      r.id,
      { enabled: r.mandatory, severity: r.mandatory ? 'critical' : 'warning', parameters: r.parameters.parse({}), source: 'default' },
    ]),
  ) as CompliancePolicy;
}

/** Findings of every enabled rule that applies to the subject's protocol, in rule order. */
export function evaluateCompliance(subject: ComplianceSubject, policy: CompliancePolicy): ComplianceFinding[] {
  const findings: ComplianceFinding[] = [];
  for (const definition of complianceRules) {
    const setting = policy[definition.id];
    if (!setting?.enabled) continue;
    if (!definition.protocols.includes('*') && !definition.protocols.includes(subject.protocol)) continue;
    const parameters = (definition.parameters as z.ZodObject).parse(setting.parameters ?? {});
    const check = definition.check as (subject: ComplianceSubject, parameters: unknown) => Violation[];
    for (const violation of check(subject, parameters)) {
      findings.push({ ruleId: definition.id, field: violation.field, severity: setting.severity, reason: violation.reason });
    }
  }
  return findings;
}

/** Rules evaluated for a protocol under a policy. */
export function rulesFor(protocol: string, policy: CompliancePolicy): ComplianceRuleId[] {
  return complianceRules
    .filter((r) => policy[r.id]?.enabled && (r.protocols.includes('*') || r.protocols.includes(protocol)))
    .map((r) => r.id);
}

export interface ApplicableOverride {
  id: string;
  ruleId: string;
  approvedBy: string;
  expiresAt: Date;
}

/** Marks the findings an exception covers; an exception covers every finding of its rule. */
export function applyOverrides(findings: ComplianceFinding[], overrides: ApplicableOverride[]): ComplianceFinding[] {
  return findings.map((finding) => {
    const override = overrides.find((o) => o.ruleId === finding.ruleId);
    return override
      ? { ...finding, override: { id: override.id, approvedBy: override.approvedBy, expiresAt: override.expiresAt.toISOString() } }
      : finding;
  });
}

/** Critical findings no exception covers: what stops a deployment. */
export function blockingFindings(findings: ComplianceFinding[]): ComplianceFinding[] {
  return findings.filter((finding) => finding.severity === blockingSeverity && !finding.override);
}

export function describeFindings(findings: ComplianceFinding[]): string {
  return findings.map((f) => `${f.ruleId} (${f.field}: ${f.reason})`).join('; ');
}
