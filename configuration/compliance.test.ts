import { describe, expect, it } from 'vitest';
import {
  applyOverrides,
  assessPassword,
  blockingFindings,
  defaultCompliancePolicy,
  evaluateCompliance,
  type ComplianceSubject,
  type PasswordVerdict,
} from './compliance';
import { sealedMarker } from './parameters';

const hardened = {
  hostname: 'cam-1',
  timezone: 'UTC',
  site: 'hq',
  ntp: { servers: ['ntp1.hq.internal'] },
  tls: { minVersion: 'TLSv1.2' },
  management: { httpEnabled: false, passwordLogin: false },
};

function subject(settings: Record<string, unknown>, overrides: Partial<ComplianceSubject> = {}): ComplianceSubject {
  return { protocol: 'https', settings, secretFields: [], passwordVerdict: () => undefined, ...overrides };
}

const rulesOf = (findings: { ruleId: string }[]) => findings.map((f) => f.ruleId);

describe('the default policy', () => {
  it('finds nothing in a hardened HTTPS configuration', () => {
    expect(evaluateCompliance(subject(hardened), defaultCompliancePolicy())).toEqual([]);
  });

  it('names the rule and the field of plain HTTP left on, as a critical finding', () => {
    const findings = evaluateCompliance(subject({ ...hardened, management: { httpEnabled: true, passwordLogin: false } }), defaultCompliancePolicy());
    expect(findings).toEqual([
      expect.objectContaining({ ruleId: 'http-disabled', field: 'management.httpEnabled', severity: 'critical' }),
    ]);
    expect(blockingFindings(findings)).toHaveLength(1);
  });

  it('requires an NTP server on HTTPS and ONVIF devices', () => {
    const onvif = { hostname: 'cam', ntp: { servers: [] }, management: { httpEnabled: false } };
    expect(rulesOf(evaluateCompliance({ ...subject(onvif), protocol: 'onvif' }, defaultCompliancePolicy()))).toEqual(['ntp-configured']);
  });

  it('refuses SNMP community access left as the device had it', () => {
    const snmp = { usmUser: 'prov', system: { name: 'x', location: '', contact: '' }, communityAccess: 'unchanged', removeFactoryAdmin: false };
    const findings = evaluateCompliance({ ...subject(snmp), protocol: 'snmp' }, defaultCompliancePolicy());
    expect(findings).toEqual([expect.objectContaining({ ruleId: 'snmp-v1v2c-disabled', field: 'communityAccess' })]);
  });

  it('requires the OSDP secure channel', () => {
    const findings = evaluateCompliance({ ...subject({ secureChannel: { required: false } }), protocol: 'osdp' }, defaultCompliancePolicy());
    expect(rulesOf(findings)).toEqual(['osdp-secure-channel-required']);
  });

  it('leaves optional rules (syslog, certificate-only login) off', () => {
    expect(rulesOf(evaluateCompliance(subject({ ...hardened, management: { httpEnabled: false, passwordLogin: true } }), defaultCompliancePolicy()))).toEqual([]);
  });
});

describe('passwords', () => {
  it('knows factory defaults whatever their case, and says why without repeating the password', () => {
    for (const password of ['admin', 'Admin', '12345', 'password', 'root', 'PASSW0RD', 'meinsm']) {
      const verdict = assessPassword(password);
      expect(verdict.acceptable, password).toBe(false);
      expect(verdict.reasons).toContain('a well-known default password');
    }
    expect(assessPassword('Xq7!Xq7!').reasons.join(' ')).not.toContain('Xq7!');
  });

  it('wants the configured length and character classes', () => {
    expect(assessPassword('Short1!').reasons).toEqual(['shorter than 12 characters']);
    expect(assessPassword('alllowercaseletters').reasons[0]).toMatch(/uses 1 of the 3 character classes/);
    expect(assessPassword('Correct-Horse-42').acceptable).toBe(true);
    expect(assessPassword('Correct-Horse-42', { minimumLength: 20, minimumCharacterClasses: 4, forbidden: [] }).reasons).toEqual([
      'shorter than 20 characters',
    ]);
    expect(assessPassword('Acme-Site-2024!', { minimumLength: 8, minimumCharacterClasses: 3, forbidden: ['acme-site-2024!'] }).acceptable).toBe(false);
  });

  it('judges a secret by its verdict, never by the marker that stands in for it', () => {
    const settings = { ...hardened, users: [{ username: 'ops', password: sealedMarker('opsPassword'), role: 'operator' }] };
    const weak: PasswordVerdict = { acceptable: false, reasons: ['a well-known default password'] };
    const findings = evaluateCompliance(
      subject(settings, { secretFields: [{ path: 'users[0].password', name: 'opsPassword' }], passwordVerdict: () => weak }),
      defaultCompliancePolicy(),
    );
    expect(findings).toEqual([
      expect.objectContaining({
        ruleId: 'no-default-or-weak-passwords',
        field: 'users[0].password',
        reason: 'secret opsPassword is a well-known default password',
      }),
    ]);
    const strong = evaluateCompliance(
      subject(settings, { secretFields: [{ path: 'users[0].password', name: 'opsPassword' }], passwordVerdict: () => ({ acceptable: true, reasons: [] }) }),
      defaultCompliancePolicy(),
    );
    expect(strong).toEqual([]);
  });

  it('refuses a password written into the template, weak or not', () => {
    const settings = { ...hardened, users: [{ username: 'ops', password: 'admin', role: 'operator' }] };
    expect(rulesOf(evaluateCompliance(subject(settings), defaultCompliancePolicy()))).toEqual([
      'no-default-or-weak-passwords',
      'credentials-from-vault',
    ]);
    const strongLiteral = { ...hardened, users: [{ username: 'ops', password: 'Correct-Horse-42', role: 'operator' }] };
    expect(rulesOf(evaluateCompliance(subject(strongLiteral), defaultCompliancePolicy()))).toEqual(['credentials-from-vault']);
  });

  it('does not take settings such as passwordLogin for passwords', () => {
    expect(evaluateCompliance(subject(hardened), defaultCompliancePolicy())).toEqual([]);
  });
});

describe('a tenant policy', () => {
  it('turns rules off, on, and down to a warning that does not block', () => {
    const policy = defaultCompliancePolicy();
    policy['http-disabled'] = { ...policy['http-disabled'], severity: 'warning' };
    policy['syslog-configured'] = { ...policy['syslog-configured'], enabled: true };
    policy['ntp-configured'] = { ...policy['ntp-configured'], enabled: false };
    const findings = evaluateCompliance(
      subject({ ...hardened, ntp: { servers: [] }, management: { httpEnabled: true, passwordLogin: false } }),
      policy,
    );
    expect(findings.map((f) => [f.ruleId, f.severity])).toEqual([
      ['http-disabled', 'warning'],
      ['syslog-configured', 'warning'],
    ]);
    expect(blockingFindings(findings)).toEqual([]);
  });

  it('applies rule parameters such as the minimum TLS version', () => {
    const policy = defaultCompliancePolicy();
    policy['tls-required'] = { ...policy['tls-required'], parameters: { minimumVersion: 'TLSv1.3' } };
    expect(evaluateCompliance(subject(hardened), policy)).toEqual([
      expect.objectContaining({ ruleId: 'tls-required', field: 'tls.minVersion', reason: 'must be TLSv1.3 or later' }),
    ]);
  });
});

describe('exceptions', () => {
  it('cover every finding of their rule and nothing else, so only the rest still blocks', () => {
    const findings = evaluateCompliance(
      subject({ ...hardened, ntp: { servers: [] }, management: { httpEnabled: true, passwordLogin: false } }),
      defaultCompliancePolicy(),
    );
    const expiresAt = new Date(Date.now() + 3_600_000);
    const excused = applyOverrides(findings, [{ id: 'o-1', ruleId: 'http-disabled', approvedBy: 'api-key:approver', expiresAt }]);
    expect(excused.find((f) => f.ruleId === 'http-disabled')?.override).toEqual({
      id: 'o-1',
      approvedBy: 'api-key:approver',
      expiresAt: expiresAt.toISOString(),
    });
    expect(rulesOf(blockingFindings(excused))).toEqual(['ntp-configured']);
  });
});
