/**
 * A site's DHCP server for tests in network namespaces: Debian's real dnsmasq on one interface,
 * with the service's lease hook as its `--dhcp-script`.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { testRunEnvironment } from './test-run';

const repositoryRoot = path.resolve(import.meta.dirname, '..', '..');
const leaseHookScript = path.join(repositoryRoot, 'scripts', 'dhcp-lease-hook.mjs');

export interface SiteDhcpServer {
  /** What dnsmasq logged so far (its DHCP exchanges with --log-dhcp). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Resolves once dnsmasq runs; rejects when it cannot be started, so a caller's cleanup runs
 * instead of the process dying on an unhandled spawn error.
 */
export function startSiteDhcpServer(options: {
  interfaceName: string;
  /** `first,last,netmask,lease time`, as dnsmasq's --dhcp-range. */
  range: string;
  /** Where the lease file goes. */
  directory: string;
  /** The hook's settings: DHCP_LEASE_HOOK_URL, DHCP_LEASE_HOOK_API_KEY_FILE, ... */
  hookEnvironment: Record<string, string>;
}): Promise<SiteDhcpServer> {
  let log = '';
  const dnsmasq = spawn(
    '/usr/sbin/dnsmasq',
    [
      '--conf-file=/dev/null',
      '--keep-in-foreground',
      '--port=0',
      `--interface=${options.interfaceName}`,
      '--bind-interfaces',
      `--dhcp-range=${options.range}`,
      `--dhcp-leasefile=${path.join(options.directory, 'leases')}`,
      `--dhcp-script=${leaseHookScript}`,
      '--pid-file=',
      '--log-facility=-',
      '--log-dhcp',
      // Root of a user namespace cannot change groups; stay as we are. dnsmasq's default ping
      // check before offering an address is kept: the first OFFER comes about 3 s after DISCOVER.
      '--user=root',
      '--group=',
    ],
    {
      env: { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, ...testRunEnvironment(), ...options.hookEnvironment },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  dnsmasq.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  dnsmasq.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<void>((resolve) => dnsmasq.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    dnsmasq.once('error', (error) => reject(new Error(`dnsmasq could not be started: ${error.message}`)));
    dnsmasq.once('spawn', () =>
      resolve({
        log: () => log,
        async stop() {
          if (dnsmasq.exitCode === null && dnsmasq.signalCode === null && dnsmasq.pid !== undefined) process.kill(dnsmasq.pid, 'SIGTERM');
          await exited;
        },
      }),
    );
  });
}
