import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { processAlive, processIdentity, stopLeftoverProcesses, testRunVariable } from './test-run';

const started: number[] = [];

/** A process in a session of its own (as a crashed fixture's server would be), carrying `marker`. */
function startMarked(marker: string): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH, [testRunVariable]: marker },
  });
  child.unref();
  started.push(child.pid!);
  return child.pid!;
}

afterEach(() => {
  for (const pid of started.splice(0)) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
});

describe('stopping what a test run started', () => {
  it('stops a process of this run left running in a session of its own', async () => {
    const marker = processIdentity(process.pid)!;
    const pid = startMarked(marker);

    const stopped = await stopLeftoverProcesses(marker);

    expect(stopped).toContain(pid);
    expect(processAlive(pid)).toBe(false);
  });

  it('stops a process left by an earlier run whose owner is gone, and leaves a live run\'s processes alone', async () => {
    const ownRun = processIdentity(process.pid)!;
    const liveOtherRun = processIdentity(process.ppid)!;
    const orphan = startMarked('2147483646:1');
    const otherRunsProcess = startMarked(liveOtherRun);

    const stopped = await stopLeftoverProcesses(ownRun);

    expect(stopped).toContain(orphan);
    expect(processAlive(orphan)).toBe(false);
    expect(stopped).not.toContain(otherRunsProcess);
    expect(processAlive(otherRunsProcess)).toBe(true);
  });
});
