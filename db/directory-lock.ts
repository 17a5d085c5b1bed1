/**
 * A lock file beside a directory only one process may use at a time (the embedded database). It
 * names its holder by pid and start time, so a lock left by a process that died (even by SIGKILL)
 * is recognised as stale and taken over, and a reused pid is not mistaken for the holder.
 */
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

export class DirectoryInUseError extends Error {
  override name = 'DirectoryInUseError';
  constructor(
    readonly directory: string,
    readonly holderPid: number,
  ) {
    super(`${directory} is in use by another process (pid ${holderPid})`);
  }
}

interface Holder {
  pid: number;
  startTime: string;
}

/**
 * A process's start time in clock ticks since boot (from /proc): with the pid, it names one process
 * for as long as the machine runs, where a pid alone may be reused.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

export function lockFileOf(directory: string): string {
  return `${directory}.lock`;
}

/** Takes the lock or throws DirectoryInUseError; `release` gives it up (only if still ours). */
export function acquireDirectoryLock(directory: string): { release(): void } {
  const file = lockFileOf(directory);
  const self: Holder = { pid: process.pid, startTime: processStartTime(process.pid) ?? '' };
  for (let attempt = 0; attempt < 3; attempt += 1) {
    // Written aside, then linked into place: the lock never exists without its holder in it.
    const draft = `${file}.${process.pid}`;
    writeFileSync(draft, JSON.stringify(self), { mode: 0o600 });
    try {
      linkSync(draft, file);
      return {
        release() {
          const holder = readHolder(file);
          if (holder?.pid === self.pid && holder.startTime === self.startTime) rmSync(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      rmSync(draft, { force: true });
    }
    const holder = readHolder(file);
    if (holder && processStartTime(holder.pid) === holder.startTime) throw new DirectoryInUseError(directory, holder.pid);
    // The holder is gone (or the file is unreadable): a stale lock.
    rmSync(file, { force: true });
  }
  throw new Error(`could not take the lock ${file}`);
}
