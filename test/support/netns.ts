/**
 * Network namespaces for tests that need a real network: multicast, several interfaces, devices on
 * another host. Nothing here touches the machine's own network.
 *
 * Two halves:
 * - From a test: `runInNetworkNamespace(script, { input })` runs a fixture script under
 *   `unshare -rn` (a fresh user and network namespace; root inside it, nobody outside) and
 *   resolves with the JSON the script reported through `reportNamespaceResult`.
 * - Inside that fixture: `bringUpLoopback()`, and `startPeerNamespace()` to run a second script in
 *   a nested network namespace joined to this one by veth pairs: a separate "host" on a real link.
 *   The peer reads its input with `namespaceInput()`, waits for its links with
 *   `awaitPeerLinks()`, starts its devices and calls `reportPeerReady(info)`; it is stopped when
 *   the fixture calls `stop()` or exits (its stdin closes).
 *
 * What works on Linux for an unprivileged or containerised root: `unshare -rn`, nested `unshare -n`
 * inside it, `ip link add ... type veth`, `ip link set ... netns <pid>` and
 * `nsenter --net=/proc/<pid>/ns/net`. `ip netns add` does not (it needs to mount /run/netns).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

const repositoryRoot = path.resolve(import.meta.dirname, '..', '..');
const resultMarker = '@@netns-result ';
const readyMarker = '@@netns-ready ';
const inputVariable = 'NETNS_TEST_INPUT';
const goLine = 'links-ready';
const defaultRunTimeoutMs = 60_000;
const defaultPeerStartTimeoutMs = 20_000;
const peerStopGraceMs = 3_000;

function nodeWithTsx(script: string, args: string[]): string[] {
  return [process.execPath, '--import', 'tsx', path.resolve(repositoryRoot, script), ...args];
}

/** Whether this machine lets an unprivileged process make a network namespace with veth pairs. */
export function networkNamespacesAvailable(): boolean {
  const probe = spawnSync('unshare', ['-rn', 'sh', '-c', 'ip link set lo up && ip link add nsprobe0 type veth peer name nsprobe1'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return probe.status === 0;
}

export interface NamespaceRunOptions {
  /** JSON handed to the script (read it with `namespaceInput()`). */
  input?: unknown;
  args?: string[];
  timeoutMs?: number;
}

/** Thrown when a namespace script fails; carries its output for the test log. */
export class NamespaceScriptError extends Error {
  constructor(
    message: string,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${message}\n--- stderr ---\n${stderr.slice(-4000)}\n--- stdout ---\n${stdout.slice(-2000)}`);
  }
}

/**
 * Runs `script` (a path from the repository root, run with tsx) in a fresh network namespace and
 * resolves with what it passed to `reportNamespaceResult`. The namespace, its links and every
 * process in it go away when the script exits; a script that overruns is killed by its pid.
 */
export function runInNetworkNamespace<T>(script: string, options: NamespaceRunOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? defaultRunTimeoutMs;
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['-rn', ...nodeWithTsx(script, options.args ?? [])], {
      cwd: repositoryRoot,
      env: { ...process.env, [inputVariable]: JSON.stringify(options.input ?? null) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new NamespaceScriptError(`${script} did not finish within ${timeoutMs} ms`, stdout, stderr));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((entry) => entry.startsWith(resultMarker));
      if (code !== 0 || line === undefined) {
        reject(new NamespaceScriptError(`${script} exited with ${signal ?? code} ${line ? '' : 'without a result'}`, stdout, stderr));
        return;
      }
      resolve(JSON.parse(line.slice(resultMarker.length)) as T);
    });
  });
}

// -------------------------------------------------------------------------------------------------
// Inside a namespace

/** The JSON the test (or the fixture, for a peer) passed in. */
export function namespaceInput<T>(): T {
  return JSON.parse(process.env[inputVariable] ?? 'null') as T;
}

/** Hands the fixture's result back to `runInNetworkNamespace`. */
export function reportNamespaceResult(result: unknown): void {
  process.stdout.write(`\n${resultMarker}${JSON.stringify(result)}\n`);
}

/** Runs a command (`ip`, `nsenter`) and returns its stdout; throws with its stderr on failure. */
export function runCommand(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.error?.message}`);
  return result.stdout;
}

export function bringUpLoopback(): void {
  runCommand('ip', ['link', 'set', 'lo', 'up']);
}

/** One veth pair between this namespace and a peer. */
export interface VethLink {
  /** Interface name on this side (at most 15 characters). */
  localName: string;
  /** Address with prefix on this side, e.g. `10.77.1.1/24`. */
  localCidr: string;
  peerName: string;
  peerCidr: string;
  /** Further addresses on the peer side (secondary: the first address stays the source address). */
  peerExtraCidrs?: string[];
}

export interface PeerNamespaceOptions {
  /** Script the peer runs (path from the repository root). */
  script: string;
  input?: unknown;
  links: VethLink[];
  /** Route 224.0.0.0/4 in the peer out of this link's peer side, for software that relies on the default. */
  peerMulticastVia?: string;
  startTimeoutMs?: number;
}

export interface PeerNamespace<Ready> {
  pid: number;
  /** What the peer passed to `reportPeerReady`. */
  ready: Ready;
  /** Runs a command inside the peer's network namespace. */
  exec(command: string, args: string[]): string;
  /** Ends the peer (stdin closed, then SIGKILL by pid if it lingers) and resolves when it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `script` in a new network namespace nested in this one, creates the veth pairs, moves
 * each peer end across, addresses and raises both ends, and resolves once the peer reports ready.
 */
export async function startPeerNamespace<Ready>(options: PeerNamespaceOptions): Promise<PeerNamespace<Ready>> {
  return startNamespaceProcess(['-n'], options);
}

/**
 * From a test: runs `script` in a fresh user and network namespace of its own (`unshare -rn`), as a
 * peer without links: it reads its input, waits for `awaitPeerLinks`, sets up its network and calls
 * `reportPeerReady`. `exec` (and `nsenter --net=/proc/<pid>/ns/net`) reach into it; for that the
 * test must run as root, which owns every namespace its processes make.
 */
export function startTestNamespace<Ready>(options: Omit<PeerNamespaceOptions, 'links' | 'peerMulticastVia'>): Promise<PeerNamespace<Ready>> {
  return startNamespaceProcess(['-rn'], { ...options, links: [] });
}

async function startNamespaceProcess<Ready>(unshareArgs: string[], options: PeerNamespaceOptions): Promise<PeerNamespace<Ready>> {
  const child: ChildProcess = spawn('unshare', [...unshareArgs, ...nodeWithTsx(options.script, [])], {
    cwd: repositoryRoot,
    env: { ...process.env, [inputVariable]: JSON.stringify(options.input ?? null) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${options.script}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    child.stdin?.end();
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
    }, peerStopGraceMs);
    await exited;
    clearTimeout(timer);
  };
  const inPeer = ['--net=/proc/' + pid + '/ns/net'];
  const exec = (command: string, args: string[]) => runCommand('nsenter', [...inPeer, command, ...args]);
  try {
    await waitForNamespaceChange(pid);
    exec('ip', ['link', 'set', 'lo', 'up']);
    for (const link of options.links) {
      runCommand('ip', ['link', 'add', link.localName, 'type', 'veth', 'peer', 'name', link.peerName]);
      runCommand('ip', ['link', 'set', link.peerName, 'netns', String(pid)]);
      runCommand('ip', ['address', 'add', link.localCidr, 'dev', link.localName]);
      runCommand('ip', ['link', 'set', link.localName, 'up']);
      exec('ip', ['address', 'add', link.peerCidr, 'dev', link.peerName]);
      for (const cidr of link.peerExtraCidrs ?? []) exec('ip', ['address', 'add', cidr, 'dev', link.peerName]);
      exec('ip', ['link', 'set', link.peerName, 'up']);
    }
    if (options.peerMulticastVia) exec('ip', ['route', 'add', '224.0.0.0/4', 'dev', options.peerMulticastVia]);
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${options.script} did not report ready`)), options.startTimeoutMs ?? defaultPeerStartTimeoutMs);
      const lines = readline.createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        if (!line.startsWith(readyMarker)) return;
        clearTimeout(timer);
        resolve(JSON.parse(line.slice(readyMarker.length)) as Ready);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${options.script} exited with ${code} before it was ready`));
      });
      child.stdin!.write(`${goLine}\n`);
    });
    return { pid, ready, exec, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** `unshare` execs node once the namespace exists: wait until the pid's namespace differs from ours. */
async function waitForNamespaceChange(pid: number): Promise<void> {
  const ours = runCommand('readlink', ['/proc/self/ns/net']).trim();
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const result = spawnSync('readlink', [`/proc/${pid}/ns/net`], { encoding: 'utf8' });
    if (result.status === 0 && result.stdout.trim() !== ours) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`process ${pid} never entered its own network namespace`);
}

/**
 * In a peer: waits until the fixture has created and addressed the links, and arranges for the
 * process to end when the fixture closes its stdin. `onStop` runs first (close devices).
 */
export function awaitPeerLinks(onStop: () => Promise<void> | void): Promise<void> {
  return new Promise((resolve) => {
    const lines = readline.createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      if (line === goLine) resolve();
    });
    lines.on('close', () => {
      void Promise.resolve(onStop()).finally(() => process.exit(0));
    });
  });
}

export function reportPeerReady(info: unknown): void {
  process.stdout.write(`${readyMarker}${JSON.stringify(info)}\n`);
}
