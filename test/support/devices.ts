/**
 * Reference devices for tests, each with its own serial, MAC and factory password, and the
 * provisioning request that names it.
 */
import { randomBytes } from 'node:crypto';
import { ReferenceDevice, type DeviceFaults } from '../../scripts/simulators/reference-device';

export interface TestDevice {
  device: ReferenceDevice;
  request: {
    serialNumber: string;
    macAddress: string;
    address: string;
    protocol: 'https';
    deviceType: 'camera';
    site: string;
    credentials: { username: string; password: string };
  };
}

export interface TestDeviceOptions {
  faults?: DeviceFaults;
  site?: string;
  firmwareVersion?: string;
}

export async function startTestDevice(options: TestDeviceOptions = {}): Promise<TestDevice> {
  const suffix = randomBytes(4).toString('hex').toUpperCase();
  const mac = ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
  const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
  // Its own loopback address, as each device on a site network has its own IP.
  const [a, b, c] = randomBytes(3);
  const device = new ReferenceDevice({
    host: `127.${(a % 250) + 1}.${b}.${(c % 250) + 1}`,
    serialNumber: `RD-${suffix}`,
    macAddress: mac,
    credentials,
    deviceType: 'camera',
    faults: options.faults,
    ...(options.firmwareVersion ? { firmwareVersion: options.firmwareVersion } : {}),
  });
  const address = await device.start();
  return {
    device,
    request: {
      serialNumber: `RD-${suffix}`,
      macAddress: mac,
      address,
      protocol: 'https',
      deviceType: 'camera',
      site: options.site ?? 'hq',
      credentials,
    },
  };
}

export async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The devices a test file starts, so they can all be stopped together (after each test or at the end). */
export class TestDevices {
  private readonly started: TestDevice[] = [];

  async start(options: TestDeviceOptions = {}): Promise<TestDevice> {
    const device = await startTestDevice(options);
    this.started.push(device);
    return device;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.started.splice(0).map(({ device }) => device.stop()));
  }
}
