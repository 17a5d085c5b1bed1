import { describe, expect, it } from 'vitest';
import { judgeProbe, type DeviceHealthState } from './device-health';

const now = new Date('2026-12-06T10:00:00Z');
const device = (state: Partial<DeviceHealthState> = {}): DeviceHealthState => ({
  tenantId: 'acme',
  deviceId: 'cam-1',
  health: 'online',
  consecutiveProbeFailures: 0,
  uptimeSeconds: 500,
  healthChangedAt: null,
  lastRebootAt: new Date('2026-12-06T09:50:00Z'),
  ...state,
});
const silence = { answered: false as const, error: 'no answer' };
const options = { offlineAfterFailures: 3, now };

describe('judging a probe', () => {
  it('keeps a device online until the threshold of failures in a row, then turns it offline once', () => {
    expect(judgeProbe(device({ consecutiveProbeFailures: 1 }), silence, options)).toMatchObject({ health: 'online', consecutiveProbeFailures: 2, healthChanged: false });
    expect(judgeProbe(device({ consecutiveProbeFailures: 2 }), silence, options)).toMatchObject({ health: 'offline', consecutiveProbeFailures: 3, healthChanged: true });
    expect(judgeProbe(device({ health: 'offline', consecutiveProbeFailures: 3 }), silence, options)).toMatchObject({ health: 'offline', consecutiveProbeFailures: 4, healthChanged: false });
  });

  it('leaves a never-probed device unknown while it stays under the threshold', () => {
    expect(judgeProbe(device({ health: 'unknown', uptimeSeconds: null }), silence, options)).toMatchObject({ health: 'unknown', healthChanged: false });
  });

  it('brings an offline device back with its first answer and resets the failures', () => {
    const judged = judgeProbe(device({ health: 'offline', consecutiveProbeFailures: 5 }), { answered: true, report: { uptimeSeconds: 900 } }, options);
    expect(judged).toMatchObject({ health: 'online', consecutiveProbeFailures: 0, healthChanged: true, rebooted: false, uptimeSeconds: 900 });
  });

  it('sees a reboot in uptime that went down, and dates it from the uptime', () => {
    const judged = judgeProbe(device(), { answered: true, report: { uptimeSeconds: 60 } }, options);
    expect(judged.rebooted).toBe(true);
    expect(judged.lastRebootAt).toEqual(new Date('2026-12-06T09:59:00Z'));
    expect(judgeProbe(device(), { answered: true, report: { uptimeSeconds: 560 } }, options)).toMatchObject({ rebooted: false });
  });

  it('compares the presented certificate with ours, whatever the spelling, and only where we issued one', () => {
    const ours = 'AB'.repeat(32);
    const matching = judgeProbe(device(), { answered: true, report: { presentedCertificateFingerprint: 'ab'.repeat(32) } }, { ...options, expectedCertificateFingerprint: ours });
    expect(matching).toMatchObject({ certificateMatches: true });
    expect(matching.certificateMismatch).toBeUndefined();
    const foreign = judgeProbe(device(), { answered: true, report: { presentedCertificateFingerprint: 'cd'.repeat(32) } }, { ...options, expectedCertificateFingerprint: ours });
    expect(foreign.certificateMismatch).toEqual({ presented: 'cd'.repeat(32), expected: 'ab'.repeat(32) });
    expect(judgeProbe(device(), { answered: true, report: { presentedCertificateFingerprint: 'cd'.repeat(32) } }, options)).toMatchObject({ certificateMatches: false });
  });
});
