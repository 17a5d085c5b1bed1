import { describe, expect, it } from 'vitest';
import { canonicalHash } from '../foundation/canonical-json';
import { driftedSettings, reportableSettings } from './drift';

const desired = {
  hostname: 'cam-lobby-01',
  timezone: 'Europe/Berlin',
  ntp: { servers: ['ntp1.hq.internal', 'ntp2.hq.internal'] },
  tls: { minVersion: 'TLSv1.2' },
  management: { httpEnabled: false, passwordLogin: false },
};

describe('driftedSettings', () => {
  it('finds nothing when the device runs exactly what it should, whatever the member order', () => {
    const running = {
      management: { passwordLogin: false, httpEnabled: false },
      tls: { minVersion: 'TLSv1.2' },
      ntp: { servers: ['ntp1.hq.internal', 'ntp2.hq.internal'] },
      timezone: 'Europe/Berlin',
      hostname: 'cam-lobby-01',
    };
    expect(driftedSettings(desired, running)).toEqual([]);
  });

  it('names each nested setting that differs, sorted', () => {
    const running = {
      ...desired,
      hostname: 'cam-renamed',
      management: { httpEnabled: true, passwordLogin: false },
    };
    expect(driftedSettings(desired, running)).toEqual(['hostname', 'management.httpEnabled']);
  });

  it('leaves a setting every device has out when the configuration does not set it, and compares it when it does', () => {
    const { timezone: _unset, ...withoutTimezone } = desired;
    const running = { ...desired, timezone: 'UTC0' };
    expect(driftedSettings(withoutTimezone, running, { inherent: ['timezone'] })).toEqual([]);
    expect(driftedSettings(desired, running, { inherent: ['timezone'] })).toEqual(['timezone']);
    expect(driftedSettings(withoutTimezone, running)).toEqual(['timezone']);
  });

  it('compares lists as a whole, order included', () => {
    const reordered = { ...desired, ntp: { servers: ['ntp2.hq.internal', 'ntp1.hq.internal'] } };
    const shorter = { ...desired, ntp: { servers: ['ntp1.hq.internal'] } };
    expect(driftedSettings(desired, reordered)).toEqual(['ntp.servers']);
    expect(driftedSettings(desired, shorter)).toEqual(['ntp.servers']);
  });

  it('reports a setting only one side has: one the device lost and one added on the device', () => {
    const { timezone: _, ...withoutTimezone } = desired;
    const running = { ...withoutTimezone, syslog: { host: '10.0.0.9', port: 514, protocol: 'udp' } };
    expect(driftedSettings(desired, running)).toEqual(['syslog', 'timezone']);
  });

  it('reports a setting whose kind changed (a value where a group was, or the other way round)', () => {
    expect(driftedSettings(desired, { ...desired, tls: 'TLSv1.2' })).toEqual(['tls']);
    expect(driftedSettings({ a: 1 }, { a: { b: 1 } })).toEqual(['a']);
  });

  it('skips what the device cannot report (secrets, write-only settings) and everything under it', () => {
    const withSecret = { ...desired, snmp: { community: 'secret', version: 'v3' }, removeFactoryAdmin: true };
    const running = { ...desired, snmp: { version: 'v2c' } };
    expect(driftedSettings(withSecret, running)).toEqual(['removeFactoryAdmin', 'snmp.community', 'snmp.version']);
    expect(driftedSettings(withSecret, running, { unreported: ['snmp.community', 'removeFactoryAdmin'] })).toEqual(['snmp.version']);
    expect(driftedSettings(withSecret, running, { unreported: ['snmp'] })).toEqual(['removeFactoryAdmin']);
    // A prefix only counts at a path boundary.
    expect(driftedSettings({ snmpExtra: 1 }, { snmpExtra: 2 }, { unreported: ['snmp'] })).toEqual(['snmpExtra']);
  });

  it('skips a secret member of every list element, still comparing the rest of each element', () => {
    const withUsers = {
      ...desired,
      users: [
        { username: 'installer', password: 'Secret-1', role: 'operator' },
        { username: 'viewer', password: 'Secret-2', role: 'viewer' },
      ],
    };
    const reported = {
      ...desired,
      users: [
        { username: 'installer', role: 'operator' },
        { username: 'viewer', role: 'administrator' },
      ],
    };
    const unreported = ['users[].password'];
    expect(driftedSettings(withUsers, reported, { unreported })).toEqual(['users']);
    const inSync = { ...reported, users: [reported.users[0], { username: 'viewer', role: 'viewer' }] };
    expect(driftedSettings(withUsers, inSync, { unreported })).toEqual([]);
    // The desired settings, stripped alike, hash as a device's report of them does.
    expect(canonicalHash(reportableSettings(withUsers, unreported))).toBe(canonicalHash(inSync));
    // Stripping copies: the desired settings keep their secrets.
    expect(withUsers.users[0]).toHaveProperty('password', 'Secret-1');
  });

  it('treats an undefined member as absent and compares numbers by value', () => {
    expect(driftedSettings({ a: 1, b: undefined }, { a: 1.0 })).toEqual([]);
  });
});
