/**
 * SNMP peers for tests and demos, all on loopback:
 * - `startSnmpd`: Debian's real net-snmp agent, unprivileged on a high port, with a factory SNMPv3
 *   admin user; it implements the USM and VACM tables the adapter provisions through.
 * - `startEntityAgent`: an agent built on the net-snmp library's own agent, for what snmpd cannot
 *   serve: ENTITY-MIB serial, model, firmware and manufacturer, and an Ethernet MAC address, each
 *   changeable while it runs (a device that reports another serial).
 * - `startMisbehavingUdpPeer`: a port that never answers, or answers with something that is not SNMP.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import snmp from 'net-snmp';

/** The factory SNMPv3 admin: SHA-256 authentication, AES-128 privacy. */
export interface SnmpAdminUser {
  userName: string;
  authPassphrase: string;
  privPassphrase: string;
}

export interface SnmpdOptions {
  /** A 127.0.0.0/8 address; 127.0.0.1 when absent. */
  host?: string;
  /** 0 or absent picks a free port. */
  port?: number;
  sysDescr: string;
  /** e.g. `1.3.6.1.4.1.368.1.1` for an Axis product. */
  sysObjectID: string;
  admin: SnmpAdminUser;
  /** Read-only v1/v2c communities, allowed from loopback only. */
  readOnlyCommunities?: string[];
  /** Further snmpd.conf lines. */
  extraConfig?: string[];
}

export interface RunningSnmpPeer {
  /** `host:port`, as a device address. */
  address: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export interface RunningSnmpd extends RunningSnmpPeer {
  pid: number;
  /** Temporary directory holding snmpd.conf and the agent's persistent state. */
  directory: string;
  /** What snmpd wrote to stdout/stderr so far (it logs there with -Lo). */
  log(): string;
}

const startupTimeoutMs = 10_000;

/**
 * Starts `snmpd -f -Lo -C -I -smux -c <conf> udp:<host>:<port>` with its state in a temporary
 * directory and resolves once it answers the admin user; `close()` ends it by pid.
 */
export async function startSnmpd(options: SnmpdOptions): Promise<RunningSnmpd> {
  const host = loopbackHost(options.host);
  const port = options.port || (await freeUdpPort(host));
  const directory = mkdtempSync(path.join(os.tmpdir(), 'snmpd-'));
  const configPath = path.join(directory, 'snmpd.conf');
  const { admin } = options;
  const lines = [
    `sysDescr ${options.sysDescr}`,
    `sysObjectID ${options.sysObjectID.startsWith('.') ? options.sysObjectID : `.${options.sysObjectID}`}`,
    // sysName, sysLocation and sysContact are left out on purpose: snmpd makes configured ones read-only.
    ...(options.readOnlyCommunities ?? []).map((community) => `rocommunity ${community} 127.0.0.0/8`),
    `createUser ${admin.userName} SHA-256 ${admin.authPassphrase} AES ${admin.privPassphrase}`,
    `rwuser ${admin.userName} priv`,
    ...(options.extraConfig ?? []),
  ];
  writeFileSync(configPath, `${lines.join('\n')}\n`, { mode: 0o600 });

  const child = spawn('snmpd', ['-f', '-Lo', '-C', '-I', '-smux', '-c', configPath, `udp:${host}:${port}`], {
    env: { ...process.env, MIBS: '', SNMP_PERSISTENT_DIR: path.join(directory, 'state') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const close = async () => {
    await stopChild(child, exited);
    rmSync(directory, { recursive: true, force: true });
  };

  try {
    await waitUntilAnswering(host, port, admin, () => child.exitCode !== null || child.signalCode !== null);
  } catch (error) {
    await close();
    throw new Error(`snmpd did not start on ${host}:${port}: ${(error as Error).message}\n${output}`);
  }
  return { address: `${host}:${port}`, host, port, pid: child.pid!, directory, log: () => output, close };
}

export interface EntityAgentOptions {
  host?: string;
  port?: number;
  sysDescr: string;
  sysObjectID: string;
  sysName?: string;
  admin: SnmpAdminUser;
  entity: { serialNumber: string; model: string; firmwareVersion: string; manufacturer: string };
  /** Reported in IF-MIB ifPhysAddress of interface 2; interface 1 is a loopback with none. */
  macAddress?: string;
}

export interface RunningEntityAgent extends RunningSnmpPeer {
  /** Makes the chassis report another serial number from now on. */
  reportSerialNumber(serialNumber: string): void;
}

const entPhysicalTable = '1.3.6.1.2.1.47.1.1.1.1';
const ifTableEntry = '1.3.6.1.2.1.2.2.1';

/** An agent on the net-snmp library serving the system group, ENTITY-MIB and IF-MIB MAC addresses. */
export async function startEntityAgent(options: EntityAgentOptions): Promise<RunningEntityAgent> {
  const host = loopbackHost(options.host);
  const port = options.port || (await freeUdpPort(host));
  const agent = snmp.createAgent({ port, address: host, transport: 'udp4' }, () => {
    // Per-request errors (e.g. unknown users) are answered with USM reports; nothing to do here.
  });
  agent.getAuthorizer().addUser({
    name: options.admin.userName,
    level: snmp.SecurityLevel.authPriv,
    authProtocol: snmp.AuthProtocols.sha256,
    authKey: options.admin.authPassphrase,
    privProtocol: snmp.PrivProtocols.aes,
    privKey: options.admin.privPassphrase,
  });
  const mib = agent.getMib();
  const scalar = (name: string, oid: string, scalarType: snmp.ObjectType, value: unknown) => {
    mib.registerProvider({ name, type: snmp.MibProviderType.Scalar, oid, scalarType, maxAccess: snmp.MaxAccess['read-only'] });
    mib.setScalarValue(name, value);
  };
  scalar('sysDescr', '1.3.6.1.2.1.1.1', snmp.ObjectType.OctetString, options.sysDescr);
  scalar('sysObjectID', '1.3.6.1.2.1.1.2', snmp.ObjectType.OID, options.sysObjectID.replace(/^\./, ''));
  scalar('sysName', '1.3.6.1.2.1.1.5', snmp.ObjectType.OctetString, options.sysName ?? '');

  const readOnly = snmp.MaxAccess['read-only'];
  mib.registerProvider({
    name: 'entPhysicalTable',
    type: snmp.MibProviderType.Table,
    oid: entPhysicalTable,
    maxAccess: snmp.MaxAccess['not-accessible'],
    tableColumns: [
      { number: 1, name: 'entPhysicalIndex', type: snmp.ObjectType.Integer, maxAccess: snmp.MaxAccess['not-accessible'] },
      { number: 2, name: 'entPhysicalDescr', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
      { number: 5, name: 'entPhysicalClass', type: snmp.ObjectType.Integer, maxAccess: readOnly },
      { number: 10, name: 'entPhysicalSoftwareRev', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
      { number: 11, name: 'entPhysicalSerialNum', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
      { number: 12, name: 'entPhysicalMfgName', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
      { number: 13, name: 'entPhysicalModelName', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
    ],
    tableIndex: [{ columnName: 'entPhysicalIndex' }],
  });
  const { entity } = options;
  // entPhysicalClass 3 = chassis; row 2 is a module without serial, as real chassis tables have.
  mib.addTableRow('entPhysicalTable', [1, 'Chassis', 3, entity.firmwareVersion, entity.serialNumber, entity.manufacturer, entity.model]);
  mib.addTableRow('entPhysicalTable', [2, 'Image sensor', 9, '', '', '', '']);

  mib.registerProvider({
    name: 'ifTable',
    type: snmp.MibProviderType.Table,
    oid: ifTableEntry,
    maxAccess: snmp.MaxAccess['not-accessible'],
    tableColumns: [
      { number: 1, name: 'ifIndex', type: snmp.ObjectType.Integer, maxAccess: readOnly },
      { number: 2, name: 'ifDescr', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
      { number: 6, name: 'ifPhysAddress', type: snmp.ObjectType.OctetString, maxAccess: readOnly },
    ],
    tableIndex: [{ columnName: 'ifIndex' }],
  });
  mib.addTableRow('ifTable', [1, 'lo', Buffer.alloc(6)]);
  if (options.macAddress) {
    mib.addTableRow('ifTable', [2, 'eth0', Buffer.from(options.macAddress.replace(/[^0-9a-f]/gi, ''), 'hex')]);
  }

  const close = () =>
    new Promise<void>((resolve) => {
      agent.close(() => resolve());
    });
  try {
    await waitUntilAnswering(host, port, options.admin, () => false);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    address: `${host}:${port}`,
    host,
    port,
    reportSerialNumber: (serialNumber) => mib.setTableSingleCell('entPhysicalTable', 11, [1], serialNumber),
    close,
  };
}

export type UdpMisbehaviour =
  /** Receives and never answers: a device that hangs or a firewall that drops. */
  | 'silent'
  /** Answers each datagram with random bytes. */
  | 'garbage'
  /** Answers each datagram with its own first half: a truncated SNMP message. */
  | 'truncated';

export async function startMisbehavingUdpPeer(behaviour: UdpMisbehaviour, host = '127.0.0.1'): Promise<RunningSnmpPeer> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (message, remote) => {
    if (behaviour === 'silent') return;
    const answer = behaviour === 'garbage' ? randomBytes(48) : message.subarray(0, Math.floor(message.length / 2));
    socket.send(answer, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, loopbackHost(host), resolve));
  const { port } = socket.address();
  return {
    address: `${host}:${port}`,
    host,
    port,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

export interface SnmpToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs one of Debian's net-snmp command-line tools (snmpget, snmpusm...) as an independent client,
 * with no MIBs loaded and its state in a throwaway directory instead of /var/lib/snmp.
 */
export function runSnmpTool(tool: 'snmpget' | 'snmpset' | 'snmpwalk' | 'snmpusm', args: string[]): SnmpToolResult {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'snmp-tool-'));
  try {
    const result = spawnSync(tool, args, {
      encoding: 'utf8',
      env: { ...process.env, MIBS: '', SNMP_PERSISTENT_DIR: directory },
      timeout: 15_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** A UDP port on `host` that was free a moment ago. */
export function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, host, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

function loopbackHost(host = '127.0.0.1'): string {
  // Test peers must never be reachable from, or talk to, anything but this machine.
  if (!isIPv4(host) || !host.startsWith('127.')) throw new Error(`SNMP test peers listen on 127.0.0.0/8 only, not ${host}`);
  return host;
}

async function waitUntilAnswering(host: string, port: number, admin: SnmpAdminUser, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + startupTimeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (gaveUp()) throw new Error('the agent exited during startup');
    try {
      await probe(host, port, admin);
      return;
    } catch (error) {
      lastError = error;
      await sleep(100);
    }
  }
  throw new Error(`no answer within ${startupTimeoutMs} ms: ${(lastError as Error | undefined)?.message ?? 'unknown'}`);
}

function probe(host: string, port: number, admin: SnmpAdminUser): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = snmp.createV3Session(
      host,
      {
        name: admin.userName,
        level: snmp.SecurityLevel.authPriv,
        authProtocol: snmp.AuthProtocols.sha256,
        authKey: admin.authPassphrase,
        privProtocol: snmp.PrivProtocols.aes,
        privKey: admin.privPassphrase,
      },
      { port, timeout: 300, retries: 0 },
    );
    session.on('error', () => undefined);
    session.get(['1.3.6.1.2.1.1.1.0'], (error) => {
      session.close();
      if (error) reject(error);
      else resolve();
    });
  });
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const stopped = await Promise.race([exited.then(() => true), sleep(3_000).then(() => false)]);
  if (!stopped) {
    child.kill('SIGKILL');
    await exited;
  }
}
