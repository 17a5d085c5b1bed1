/**
 * Operator commands run as `npm run` runs them: a child process of tsx in the repository, with the
 * environment of one install and nothing else of the test's.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..', '..');

export interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** `environment` is added to PATH, SOFTHSM2_CONF and LOG_LEVEL=warn. */
export function runScript(script: string, environment: Record<string, string | undefined>, ...args: string[]): Promise<ScriptRun> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF, LOG_LEVEL: 'warn', ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, elapsedMs: Date.now() - started }));
  });
}
