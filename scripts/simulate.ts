/**
 * Starts reference devices on this machine and prints, as one JSON array on stdout, a provisioning
 * request for each, ready to post to the API. Runs until interrupted, then stops the devices.
 *
 *   npm run simulate -- --count 5 [--host 127.0.0.1] [--base-port 8443] [--site lab]
 * Without --host each device gets its own loopback address (127.<run>.<n>), as devices on a site
 * network each have their own IP; with --host they share one and differ by port.
 *
 * stdout carries only the JSON, progress goes to stderr; add npm's `-s` to keep npm's own banner
 * off stdout too when piping (`npm run -s simulate -- --count 5 > devices.json`).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { DeviceCredentials, DeviceType } from '../adapters/device-adapter';
import { ReferenceDevice } from './simulators/reference-device';

interface SimulatedDeviceRequest {
  serialNumber: string;
  macAddress: string;
  address: string;
  protocol: 'https';
  deviceType: DeviceType;
  site: string;
  name: string;
  credentials: DeviceCredentials;
}

/** Kinds of device the simulated fleet cycles through, each with a plausible model name. */
const fleet: { deviceType: DeviceType; model: string }[] = [
  { deviceType: 'camera', model: 'RD-CAM-4K' },
  { deviceType: 'door_controller', model: 'RD-DC-2' },
  { deviceType: 'card_reader', model: 'RD-CR-1' },
  { deviceType: 'intercom', model: 'RD-IC-1' },
];

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run simulate -- --count N [--host H] [--base-port P] [--site S]\n`);
  process.exit(2);
}

function integer(value: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) usage(`--${name} must be an integer from ${min} to ${max}`);
  return Number(value);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        count: { type: 'string', default: '1' },
        host: { type: 'string' },
        'base-port': { type: 'string' },
        site: { type: 'string', default: 'simulated-site' },
      },
    }));
  } catch (error) {
    usage((error as Error).message);
  }
  const count = integer(values.count, 'count', 1, 10_000, 1);
  const basePort = integer(values['base-port'], 'base-port', 1, 65535, 0);
  if (basePort && basePort + count - 1 > 65535) usage('--base-port + --count runs past port 65535');
  return { count, host: values.host, basePort, site: values.site! };
}

/** A distinct loopback address per device of this run; all of 127.0.0.0/8 reaches this host. */
function loopbackAddress(run: Buffer, index: number): string {
  return `127.${(run[0] % 250) + 1}.${Math.floor(index / 250)}.${(index % 250) + 1}`;
}

async function main() {
  const { count, host, basePort, site } = parseOptions();
  // One random run prefix keeps serials and MACs unique across simultaneous simulator runs.
  const run = randomBytes(3);
  const runTag = run.toString('hex').toUpperCase();
  const devices: ReferenceDevice[] = [];
  const requests: SimulatedDeviceRequest[] = [];

  const stop = async (code: number) => {
    await Promise.allSettled(devices.map((device) => device.stop()));
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));

  try {
    for (let i = 1; i <= count; i++) {
      const { deviceType, model } = fleet[(i - 1) % fleet.length];
      const serialNumber = `RD-${runTag}-${String(i).padStart(4, '0')}`;
      const credentials = { username: 'admin', password: randomBytes(18).toString('base64url') };
      const device = new ReferenceDevice({
        host: host ?? loopbackAddress(run, i),
        port: basePort ? basePort + i - 1 : 0,
        serialNumber,
        macAddress: locallyAdministeredMac(run, i),
        manufacturer: 'Reference Devices',
        model,
        firmwareVersion: '2.4.1',
        deviceType,
        credentials,
      });
      devices.push(device);
      const address = await device.start();
      requests.push({
        serialNumber,
        macAddress: device.macAddress,
        address,
        protocol: 'https',
        deviceType,
        site,
        name: `${deviceType.replace('_', ' ')} ${String(i).padStart(4, '0')}`,
        credentials,
      });
    }
  } catch (error) {
    process.stderr.write(`simulate: could not start the devices: ${(error as Error).message}\n`);
    await stop(1);
  }

  process.stdout.write(`${JSON.stringify(requests, null, 2)}\n`);
  process.stderr.write(`simulate: ${count} reference device(s) listening on ${host ?? 'their own loopback addresses'}; Ctrl-C stops them\n`);
}

/** 02:xx:… is a locally administered unicast MAC, so simulated devices never collide with real ones. */
function locallyAdministeredMac(run: Buffer, index: number): string {
  const bytes = [0x02, run[0], run[1], run[2], (index >> 8) & 0xff, index & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

await main();
