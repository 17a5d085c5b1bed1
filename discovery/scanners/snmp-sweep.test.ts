/**
 * The sweep against real Debian snmpd agents on 127.77.0.x addresses, all on one port, with
 * addresses that hold a socket that never answers and addresses with nothing at all.
 */
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeUdpPort, startSnmpd, type RunningSnmpd } from '../../scripts/simulators/snmp-agent';
import { parseScanScope, type ScanScope } from '../scope';
import { sweepSnmp, type SnmpSweepReport } from './snmp-sweep';
import { testDeviceNetworks } from '../../test/support/device-networks';

const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-pass', privPassphrase: 'factory-priv-pass' };
/** Axis's enterprise number with the high bit, format 3 (MAC), and an Axis MAC. */
const axisEngineId = '80000170' + '03' + '00408c123456';

let port: number;
const agents: RunningSnmpd[] = [];
let silentSocket: dgram.Socket;

function loopbackScope(ranges: string[], extra: Record<string, unknown> = {}): ScanScope {
  const parsed = parseScanScope({ interfaces: ['lo'], ranges, allowLoopback: true, ...extra });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.scope;
}

beforeAll(async () => {
  port = await freeUdpPort('127.77.0.2');
  agents.push(
    // An Axis camera with the community `public` and a MAC-based engine ID.
    await startSnmpd({
      host: '127.77.0.2',
      port,
      sysDescr: 'AXIS P3265-LVE Network Camera 11.8.61',
      sysObjectID: '1.3.6.1.4.1.368.4.1',
      admin,
      readOnlyCommunities: ['public'],
      extraConfig: [`exactEngineID 0x${axisEngineId}`],
    }),
    // A Hikvision camera whose community is the second one configured.
    await startSnmpd({ host: '127.77.0.3', port, sysDescr: 'Hikvision DS-2CD2143G2 dome camera', sysObjectID: '1.3.6.1.4.1.39165.1.1', admin, readOnlyCommunities: ['site-ro'] }),
    // SNMPv3 only: no community at all.
    await startSnmpd({ host: '127.77.0.4', port, sysDescr: 'Door controller DC-2', sysObjectID: '1.3.6.1.4.1.99999.7', admin }),
  );
  // Receives and never answers: a host that drops SNMP.
  silentSocket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => silentSocket.bind(port, '127.77.0.9', resolve));
}, 60_000);

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.close()));
  await new Promise<void>((resolve) => silentSocket?.close(() => resolve()));
});

describe('sweepSnmp', () => {
  it('finds each agent in the range by community or engine discovery, and gets past silent addresses quickly', async () => {
    const started = Date.now();
    const found = await sweepSnmp(loopbackScope(['127.77.0.0/27']), {
      networks: testDeviceNetworks,
      timeoutMs: 20_000,
      port,
      communities: ['public', 'site-ro'],
      concurrency: 8,
      hostTimeoutMs: 300,
    });
    const elapsed = Date.now() - started;
    const report = found.report as SnmpSweepReport;

    expect(found.map((o) => o.ip).sort()).toEqual(['127.77.0.2', '127.77.0.3', '127.77.0.4']);
    const byIp = Object.fromEntries(found.map((o) => [o.ip, o]));
    expect(byIp['127.77.0.2']).toMatchObject({
      source: 'snmp',
      macAddress: '00:40:8c:12:34:56',
      manufacturer: 'Axis Communications',
      endpoints: [{ protocol: 'snmp', address: `127.77.0.2:${port}` }],
      evidence: {
        sysDescr: 'AXIS P3265-LVE Network Camera 11.8.61',
        sysObjectID: '1.3.6.1.4.1.368.4.1',
        enterpriseNumber: 368,
        snmpVersion: 'v2c',
        communityIndex: 0,
        engine: expect.objectContaining({ engineId: axisEngineId, enterpriseNumber: 368 }),
      },
    });
    expect(byIp['127.77.0.2']!.hostname).toBeTruthy();
    expect(byIp['127.77.0.3']).toMatchObject({ manufacturer: 'Hikvision', evidence: { communityIndex: 1, enterpriseNumber: 39165 } });
    // The v3-only agent is revealed by its engine, without credentials: no system group.
    expect(byIp['127.77.0.4']!.evidence).toMatchObject({ snmpVersion: 'v3', credentialsAccepted: false, engine: expect.objectContaining({ enterpriseNumber: 8072 }) });
    expect(byIp['127.77.0.4']!.evidence.sysDescr).toBeUndefined();
    // No community is ever recorded.
    expect(JSON.stringify(found)).not.toMatch(/site-ro|"public"/);

    expect(report).toMatchObject({ addressesProbed: 30, addressesSilent: 27, addressesSkipped: 0 });
    expect(report.problems).toEqual([]);
    // 27 silent addresses, two communities at 300 ms each, 8 at a time: about 2 s, not 27 × 600 ms.
    expect(elapsed).toBeLessThan(5_000);
  });

  it('reads the system group over SNMPv3 with a discovery user where no community answers', async () => {
    const found = await sweepSnmp(loopbackScope(['127.77.0.4/32']), { networks: testDeviceNetworks, timeoutMs: 10_000, port, discoveryUser: admin, hostTimeoutMs: 1_000 });
    expect(found).toHaveLength(1);
    expect(found[0]!.evidence).toMatchObject({ snmpVersion: 'v3', sysDescr: 'Door controller DC-2', sysObjectID: '1.3.6.1.4.1.99999.7' });
    expect(found[0]!.manufacturer).toBeUndefined();
  });

  it('probes no more addresses than the scope allows and refuses ranges beyond its limits', async () => {
    const found = await sweepSnmp(loopbackScope(['127.77.0.0/29'], { maxAddressesPerSweep: 8 }), { networks: testDeviceNetworks, timeoutMs: 10_000, port, communities: ['public'], hostTimeoutMs: 200 });
    expect((found.report as SnmpSweepReport).addressesProbed).toBe(6);
    expect(found.map((o) => o.ip).sort()).toEqual(['127.77.0.2', '127.77.0.3', '127.77.0.4']);

    expect(parseScanScope({ interfaces: ['lo'], ranges: ['127.77.0.0/24'], allowLoopback: true, maxAddressesPerSweep: 16 })).toMatchObject({ ok: false });
    expect(parseScanScope({ interfaces: ['lo'], ranges: ['10.0.0.0/16'] })).toMatchObject({ ok: false });
    expect(parseScanScope({ interfaces: ['lo'], ranges: ['127.77.0.0/29'] })).toMatchObject({ ok: false });
  });

  it('stops starting hosts when the scan time is up and counts what it skipped', async () => {
    const started = Date.now();
    const found = await sweepSnmp(loopbackScope(['127.78.0.0/24']), { networks: testDeviceNetworks, timeoutMs: 700, port, communities: ['public'], concurrency: 4, hostTimeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(1_500);
    const report = found.report as SnmpSweepReport;
    expect(report.addressesSkipped).toBeGreaterThan(200);
    expect(report.addressesProbed + report.addressesSkipped).toBe(254);
  });

  it('refuses a sweep with neither a community nor engine discovery, or at a port the scope does not list', async () => {
    await expect(sweepSnmp(loopbackScope(['127.77.0.4/32']), { networks: testDeviceNetworks, timeoutMs: 1_000, engineDiscovery: false })).rejects.toThrow(RangeError);
    await expect(sweepSnmp(loopbackScope(['127.77.0.4/32'], { ports: [161] }), { networks: testDeviceNetworks, timeoutMs: 1_000, port })).rejects.toThrow(/not among the scope's ports/);
  });
});
