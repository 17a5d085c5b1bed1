/**
 * Starts what the whole test run shares: a throwaway PostgreSQL server and a fresh SoftHSM2 token.
 * Their coordinates reach the test forks through the environment (forks inherit it at spawn). At the
 * end it stops every process the run started that is still running, whatever failed on the way.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startPostgresServer } from '../scripts/postgres-server';
import { markTestRun, stopLeftoverProcesses } from './support/test-run';

const root = path.resolve(import.meta.dirname, '..');

function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...options.env } });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

async function startPostgres(workDir: string): Promise<() => void> {
  const server = await startPostgresServer(workDir);
  process.env.TEST_DATABASE_URL = server.adminUrl;
  return server.stop;
}

function createSoftHsmToken(workDir: string) {
  const tokenDir = path.join(workDir, 'tokens');
  const conf = path.join(workDir, 'softhsm2.conf');
  run('mkdir', ['-p', tokenDir]);
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const env = { SOFTHSM2_CONF: conf };
  const label = 'provisioning-test';
  const pin = '1234';
  run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', '12345678'], { env });
  process.env.SOFTHSM2_CONF = conf;
  process.env.TEST_HSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
  process.env.TEST_HSM_TOKEN_LABEL = label;
  process.env.TEST_HSM_PIN = pin;
}

export default async function setup() {
  const marker = markTestRun();
  // What an earlier run left behind when it was killed before its own teardown.
  await stopLeftoverProcesses(marker);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'provisioning-test-'));
  chmodSync(workDir, 0o755);
  const stopPostgres = await startPostgres(workDir);
  createSoftHsmToken(workDir);
  process.env.TEMPORAL_CLI_PATH = path.join(root, '.tools', 'venv', 'bin', 'temporal');
  process.env.TEMPORAL_TEST_SERVER_PATH = path.join(root, '.tools', 'venv', 'bin', 'temporal-test-server');
  process.env.OSDP_LIBOSDP_PYTHON ??= path.join(root, '.tools', 'venv', 'bin', 'python');
  process.env.TEST_WORK_DIR = workDir;

  return async () => {
    try {
      stopPostgres();
    } finally {
      const stopped = await stopLeftoverProcesses(marker);
      if (stopped.length > 0) process.stderr.write(`test run: stopped ${stopped.length} process(es) the tests left running: ${stopped.join(', ')}\n`);
      rmSync(workDir, { recursive: true, force: true });
    }
  };
}
