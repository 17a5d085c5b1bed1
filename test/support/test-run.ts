/**
 * Every process a test run starts carries the run's marker in its environment (children inherit
 * it), so the run can stop all of them at the end by their process ids: a Temporal dev server whose
 * fixture crashed before stopping it, a dnsmasq in a namespace whose script died, a process a test
 * started in a session of its own. A run also stops what an earlier run left behind when that run
 * itself was killed (its owner process is gone).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStartTime } from '../../db/directory-lock';

export const testRunVariable = 'PROVISIONING_TEST_RUN';

/** `<pid>:<start time>` of the process that owns the run: unique while it lives. */
export function processIdentity(pid: number): string | undefined {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : `${pid}:${startTime}`;
}

/** Marks this process (and so everything it starts from now on) as belonging to a new run. */
export function markTestRun(): string {
  const marker = processIdentity(process.pid)!;
  process.env[testRunVariable] = marker;
  return marker;
}

/** The marker to hand to a child started with an environment of its own. */
export function testRunEnvironment(): Record<string, string> {
  const marker = process.env[testRunVariable];
  return marker ? { [testRunVariable]: marker } : {};
}

function markerOf(pid: number): string | undefined {
  try {
    const prefix = `${testRunVariable}=`;
    return readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .find((entry) => entry.startsWith(prefix))
      ?.slice(prefix.length);
  } catch {
    return undefined; // gone, or a kernel thread
  }
}

function markedProcesses(): Array<{ pid: number; marker: string }> {
  const found: Array<{ pid: number; marker: string }> = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const marker = markerOf(pid);
    if (marker) found.push({ pid, marker });
  }
  return found;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopAll(pids: number[], graceMs: number): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(processAlive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(processAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // went in the meantime
    }
  }
}

/**
 * Stops every process still running with this run's marker, and those of earlier runs whose owner
 * is gone. Returns the pids it stopped.
 */
export async function stopLeftoverProcesses(marker: string, options: { graceMs?: number } = {}): Promise<number[]> {
  const leftovers = markedProcesses()
    .filter((process) => process.marker === marker || processIdentity(Number(process.marker.split(':')[0])) !== process.marker)
    .map((process) => process.pid);
  await stopAll(leftovers, options.graceMs ?? 3_000);
  return leftovers;
}
