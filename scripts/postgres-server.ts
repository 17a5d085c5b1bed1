/**
 * A throwaway PostgreSQL server from Debian's `postgresql` binaries, listening on a free loopback
 * port with trust authentication, for the test run and the development Temporal cluster. Run as
 * root, the server runs as the `postgres` user, as initdb requires.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface PostgresServer {
  port: number;
  /** The postmaster's pid: its children are the server's other processes. */
  pid: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres`: the superuser on the maintenance database. */
  adminUrl: string;
  stop(): void;
}

function run(command: string, args: string[], options: { asPostgres?: boolean } = {}): string {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = options.asPostgres && asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  const result = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  const dirs = existsSync(base)
    ? readdirSync(base).map((v) => path.join(base, v, 'bin')).filter((d) => existsSync(path.join(d, 'pg_ctl')))
    : [];
  if (dirs.length === 0) throw new Error('PostgreSQL server binaries not found; run `npm test`, which installs them');
  return dirs.sort().at(-1)!;
}

/** A loopback port nothing listens on (it was free a moment ago). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Initialises a cluster in `<workDir>/pgdata` and starts it; `workDir` also holds its socket and log. */
export async function startPostgresServer(workDir: string, settings: string[] = []): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const dataDir = path.join(workDir, 'pgdata');
  if (process.getuid?.() === 0) {
    chownSync(workDir, Number(run('id', ['-u', 'postgres']).trim()), Number(run('id', ['-g', 'postgres']).trim()));
  }
  run(path.join(bin, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], { asPostgres: true });
  const port = await freeLoopbackPort();
  const options = [
    `-p ${port}`,
    `-k ${workDir}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=300',
    ...settings.map((setting) => `-c ${setting}`),
  ].join(' ');
  run(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-o', options, '-l', path.join(workDir, 'postgres.log'), '-w', 'start'], { asPostgres: true });
  return {
    port,
    // postmaster.pid starts with the postmaster's pid.
    pid: Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]),
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => void run(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop'], { asPostgres: true }),
  };
}
