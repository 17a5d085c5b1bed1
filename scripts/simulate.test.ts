import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpsDeviceAdapter } from '../adapters/https';
import { testDeviceNetworks } from '../test/support/device-networks';

const httpsDeviceAdapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

const root = path.resolve(import.meta.dirname, '..');
const running: ChildProcess[] = [];

afterEach(() => {
  // Only reached when a test failed half-way; each test stops its own simulator otherwise.
  for (const child of running.splice(0)) if (child.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
});

interface SimulatedRequest {
  serialNumber: string;
  macAddress: string;
  address: string;
  protocol: string;
  deviceType: string;
  site: string;
  name: string;
  credentials: { username: string; password: string };
}

/** Starts `command` in its own process group and resolves with the JSON array it prints. */
function startSimulator(command: string, args: string[]): Promise<{ child: ChildProcess; requests: SimulatedRequest[]; stdout: () => string }> {
  const child = spawn(command, args, { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      try {
        resolve({ child, requests: JSON.parse(stdout), stdout: () => stdout });
      } catch {
        // Not all of it yet.
      }
    });
    child.once('exit', (code) => reject(new Error(`simulator exited early (${code}): ${stderr}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function refusesConnections(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('npm run simulate', () => {
  it('prints one JSON array of provisioning requests whose devices answer, and exits 0 on SIGTERM after stopping them', async () => {
    // Exactly what the `simulate` npm script runs; npm itself is left out so the exit code is ours.
    const { child, requests, stdout } = await startSimulator(path.join(root, 'node_modules', '.bin', 'tsx'), [
      'scripts/simulate.ts',
      '--count',
      '3',
      '--site',
      'lab-7',
    ]);

    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((r) => r.serialNumber)).size).toBe(3);
    expect(new Set(requests.map((r) => r.macAddress)).size).toBe(3);
    expect(new Set(requests.map((r) => r.credentials.password)).size).toBe(3);
    expect(new Set(requests.map((r) => r.address.split(':')[0])).size).toBe(3);
    for (const request of requests) {
      expect(request).toMatchObject({
        serialNumber: expect.stringMatching(/^RD-[0-9A-F]{6}-000[1-3]$/),
        macAddress: expect.stringMatching(/^02(:[0-9a-f]{2}){5}$/),
        // Each device on its own loopback address, as devices on a site network have their own IPs.
        address: expect.stringMatching(/^127\.\d+\.\d+\.\d+:\d+$/),
        protocol: 'https',
        site: 'lab-7',
        name: expect.any(String),
        credentials: { username: 'admin', password: expect.any(String) },
      });
      const identity = await httpsDeviceAdapter.identify({ address: request.address });
      expect(identity).toMatchObject({ serialNumber: request.serialNumber, macAddress: request.macAddress, deviceType: request.deviceType });
      await httpsDeviceAdapter.authenticate({
        address: request.address,
        credentials: request.credentials,
        pinnedCertificateFingerprint: identity.presentedCertificateFingerprint,
      });
    }

    process.kill(child.pid!, 'SIGTERM');
    expect(await exited(child)).toBe(0);
    expect(stdout().trim().startsWith('[')).toBe(true);
    for (const request of requests) expect(await refusesConnections(request.address)).toBe(true);
  }, 60_000);

  it('with npm --silent, stdout is the JSON array alone', async () => {
    const { child, requests, stdout } = await startSimulator('npm', ['run', '--silent', 'simulate', '--', '--count', '3']);
    expect(requests).toHaveLength(3);
    expect(JSON.parse(stdout())).toEqual(requests);
    // The whole group, as a terminal's Ctrl-C would: npm's `sh -c` does not pass signals on.
    process.kill(-child.pid!, 'SIGTERM');
    await exited(child);
    for (const request of requests) expect(await refusesConnections(request.address)).toBe(true);
  }, 60_000);
});
