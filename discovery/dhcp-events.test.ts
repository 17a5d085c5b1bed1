import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { networkNamespacesAvailable, runInNetworkNamespace } from '../test/support/netns';
import { parseDhcpLeaseEvent } from './dhcp-events';
import { fingerprintDevice } from './fingerprint';
import type { DhcpServerHostResult } from '../test/fixtures/discovery/dhcp-server-host';

const hookScript = path.resolve(import.meta.dirname, '..', 'scripts', 'dhcp-lease-hook.mjs');

const postedByDnsmasq = {
  hookVersion: 1,
  event: 'add',
  macAddress: '00:40:8C:12:34:56',
  ip: '10.88.0.98',
  observedAt: '2026-11-28T05:35:17.838Z',
  hostname: 'axis-00408c123456',
  vendorClass: 'AXIS,Network Camera,P3265-LVE',
  requestedOptions: '1,3,6,12,15,28,42',
  clientId: '01:00:40:8c:12:34:56',
  suppliedHostname: 'axis-00408c123456',
  interface: 'eth1',
  circuitId: 'sw1/port7',
  tags: 'eth1',
  leaseExpires: '1795847717',
  timeRemaining: '3600',
};

describe('parseDhcpLeaseEvent', () => {
  it('turns a lease event into a dhcp observation with vendor class, host name, PRL as numbers and circuit id', () => {
    const parsed = parseDhcpLeaseEvent(postedByDnsmasq);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.event.event).toBe('add');
    expect(parsed.observation).toEqual({
      source: 'dhcp',
      observedAt: '2026-11-28T05:35:17.838Z',
      ip: '10.88.0.98',
      macAddress: '00:40:8c:12:34:56',
      endpoints: [],
      hostname: 'axis-00408c123456',
      evidence: {
        leaseEvent: 'add',
        vendorClass: 'AXIS,Network Camera,P3265-LVE',
        hostname: 'axis-00408c123456',
        serverHostname: 'axis-00408c123456',
        parameterRequestList: [1, 3, 6, 12, 15, 28, 42],
        clientId: '01:00:40:8c:12:34:56',
        circuitId: 'sw1/port7',
        interface: 'eth1',
        leaseExpires: 1795847717,
      },
    });
  });

  it('refuses an event without a valid event kind, MAC or IP, naming each field', () => {
    const parsed = parseDhcpLeaseEvent({ ...postedByDnsmasq, event: 'init', macAddress: 'not-a-mac', ip: '10.0.0.300' });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors.map((error) => error.field).sort()).toEqual(['event', 'ip', 'macAddress']);
  });

  it('refuses a parameter request list that is not option numbers', () => {
    expect(parseDhcpLeaseEvent({ ...postedByDnsmasq, requestedOptions: '1,3,x' }).ok).toBe(false);
    expect(parseDhcpLeaseEvent({ ...postedByDnsmasq, requestedOptions: '1,300' }).ok).toBe(false);
  });

  it('caps client-supplied text and drops fields it does not know', () => {
    const parsed = parseDhcpLeaseEvent({ ...postedByDnsmasq, vendorClass: 'v'.repeat(600), futureField: 'x' });
    expect(parsed.ok && (parsed.observation.evidence.vendorClass as string).length).toBe(255);
    expect(parsed.ok && 'futureField' in parsed.event).toBe(false);
  });
});

/** Runs the hook as dnsmasq would, returning its exit code, stderr and run time. */
function runHook(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string; elapsedMs: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [hookScript, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stderr, elapsedMs: Date.now() - started }));
  });
}

describe('dhcp-lease-hook', () => {
  let directory: string;
  let keyFile: string;
  let stalled: http.Server;
  let stalledUrl: string;

  beforeAll(async () => {
    directory = mkdtempSync(path.join(os.tmpdir(), 'dhcp-hook-'));
    keyFile = path.join(directory, 'key');
    writeFileSync(keyFile, 'key-1\n');
    // Accepts the request and never answers: a service that hangs.
    stalled = http.createServer(() => undefined);
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    stalledUrl = `http://127.0.0.1:${(stalled.address() as AddressInfo).port}/dhcp-events`;
  });

  afterAll(async () => {
    stalled.closeAllConnections();
    await new Promise<void>((resolve) => stalled.close(() => resolve()));
    rmSync(directory, { recursive: true, force: true });
  });

  it('gives up on a service that does not answer within its timeout and still exits 0, so dnsmasq is not held up', async () => {
    const run = await runHook(['add', '00:40:8c:12:34:56', '10.0.0.5'], {
      DHCP_LEASE_HOOK_URL: stalledUrl,
      DHCP_LEASE_HOOK_API_KEY_FILE: keyFile,
      DHCP_LEASE_HOOK_TIMEOUT_MS: '300',
    });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/no answer within 300 ms/);
    expect(run.elapsedMs).toBeLessThan(2_000);
  });

  it('ignores dnsmasq actions that are not lease events and reports missing configuration without failing', async () => {
    expect(await runHook(['init'], {})).toMatchObject({ code: 0, stderr: '' });
    const unconfigured = await runHook(['add', '00:40:8c:12:34:56', '10.0.0.5'], {});
    expect(unconfigured.code).toBe(0);
    expect(unconfigured.stderr).toMatch(/DHCP_LEASE_HOOK_URL/);
  });
});

describe.runIf(networkNamespacesAvailable())('DHCP lease events end to end', () => {
  it('delivers a lease taken from real dnsmasq by a device in another namespace to the service, with its DHCP fingerprint', async () => {
    const identity = {
      macAddress: '00:40:8c:12:34:56',
      hostName: 'axis-00408c123456',
      vendorClass: 'AXIS,Network Camera,P3265-LVE',
      parameterRequestList: [1, 3, 6, 12, 15, 28, 42],
      circuitId: 'sw1/port7',
    };
    const result = await runInNetworkNamespace<DhcpServerHostResult>('test/fixtures/discovery/dhcp-server-host.ts', {
      input: { identity, apiKey: 'site-7-dhcp-key' },
      timeoutMs: 45_000,
    });
    expect(result.clientError, result.dnsmasqLog).toBeUndefined();
    expect(result.lease?.address).toMatch(/^10\.88\.0\.(5\d|[6-9]\d)$/);
    expect(result.received).toHaveLength(1);
    const [posted] = result.received;
    expect(posted!.authorization).toBe('Bearer site-7-dhcp-key');
    expect(posted!.contentType).toBe('application/json');

    const parsed = parseDhcpLeaseEvent(posted!.body);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.event).toMatchObject({ event: 'add', interface: 'dhcpsrv0' });
    expect(parsed.observation).toMatchObject({
      source: 'dhcp',
      ip: result.lease!.address,
      macAddress: identity.macAddress,
      hostname: identity.hostName,
      evidence: {
        leaseEvent: 'add',
        vendorClass: identity.vendorClass,
        parameterRequestList: identity.parameterRequestList,
        circuitId: 'sw1/port7',
        clientId: '01:00:40:8c:12:34:56',
      },
    });
    const print = fingerprintDevice([parsed.observation]);
    expect(print.manufacturer?.value).toBe('Axis Communications');
    expect(print.deviceType.value).toBe('camera');
  });

  it('reports a released lease as a del event for the same MAC and address', async () => {
    const identity = { macAddress: '00:1b:c5:0a:00:07', hostName: 'door-7', vendorClass: 'udhcp 1.36.1' };
    const result = await runInNetworkNamespace<DhcpServerHostResult>('test/fixtures/discovery/dhcp-server-host.ts', {
      input: { identity, apiKey: 'site-7-dhcp-key', release: true },
      timeoutMs: 45_000,
    });
    expect(result.clientError, result.dnsmasqLog).toBeUndefined();
    const events = result.received.map((posted) => parseDhcpLeaseEvent(posted.body));
    // A renewal in between (`old`, when the client retransmits under load) is for the same lease too.
    const lease = events.map((event) => event.ok && [event.event.event, event.observation.macAddress, event.observation.ip]);
    expect(lease.filter((event) => event && event[0] !== 'old')).toEqual([
      ['add', identity.macAddress, result.lease!.address],
      ['del', identity.macAddress, result.lease!.address],
    ]);
    for (const renewal of lease.filter((event) => event && event[0] === 'old')) {
      expect(renewal).toEqual(['old', identity.macAddress, result.lease!.address]);
    }
  });
});
