/**
 * A fresh machine has only what setup installs: every program the code or the tests run must come
 * from a package setup installs (or from the machine's base), and the README must list the same
 * packages.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module with no type declarations (it runs before node_modules exists)
import { basePrograms, systemPackages } from './setup.mjs';

const root = path.resolve(import.meta.dirname, '..');

/** Program names the tracked sources start: the first literal argument of a spawning call, or an absolute /usr path. */
function programsTheSourcesRun(): Map<string, string[]> {
  const files = execFileSync('git', ['ls-files', '*.ts', '*.mjs', '*.py'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
  const call = /\b(?:spawn|spawnSync|execFile|execFileSync|run|runCommand|runSnmpTool)\(\s*['"]([^'"]+)['"]/g;
  const absolute = /['"]\/usr\/s?bin\/([a-z0-9._-]+)['"]/g;
  const found = new Map<string, string[]>();
  for (const file of files) {
    if (file === 'scripts/setup.test.ts') continue;
    const text = readFileSync(path.join(root, file), 'utf8');
    for (const pattern of [call, absolute]) {
      for (const match of text.matchAll(pattern)) {
        const program = path.basename(match[1]);
        found.set(program, [...(found.get(program) ?? []), file]);
      }
    }
  }
  return found;
}

/** Absolute paths under /usr the tracked sources name (programs and libraries loaded by path), with where. */
function filesTheSourcesName(): Map<string, string[]> {
  const files = execFileSync('git', ['ls-files', '*.ts', '*.mjs', '*.py'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
  const found = new Map<string, string[]>();
  for (const file of files) {
    if (file === 'scripts/setup.test.ts' || file === 'scripts/setup.mjs') continue;
    for (const match of readFileSync(path.join(root, file), 'utf8').matchAll(/['"](\/usr\/(?:s?bin|lib)\/[A-Za-z0-9._/-]+)['"]/g)) {
      found.set(match[1]!, [...(found.get(match[1]!) ?? []), file]);
    }
  }
  return found;
}

describe('what a fresh machine needs', () => {
  const provided = new Set<string>([...basePrograms, ...systemPackages.flatMap((p: { programs: string[] }) => p.programs)]);

  it('installs a package for every program the code and the tests run', () => {
    const programs = programsTheSourcesRun();
    // Guards the scan itself: these are known to be run.
    expect([...programs.keys()]).toEqual(expect.arrayContaining(['dnsmasq', 'snmpd', 'openssl', 'ip', 'chromium']));
    const unprovided = [...programs].filter(([program]) => !provided.has(program)).map(([program, files]) => `${program} (${files.join(', ')})`);
    expect(unprovided).toEqual([]);
  });

  it('installs the package of every file under /usr the code and the tests name by path, libraries included', () => {
    const named = filesTheSourcesName();
    expect([...named.keys()]).toEqual(expect.arrayContaining(['/usr/lib/softhsm/libsofthsm2.so', '/usr/bin/chromium']));
    const packaged = new Set(systemPackages.flatMap((p: { files?: string[] }) => p.files ?? []));
    const bases = new Set(basePrograms);
    const unpackaged = [...named]
      .filter(([file]) => !packaged.has(file) && !(/^\/usr\/s?bin\//.test(file) && bases.has(path.basename(file))))
      .map(([file, where]) => `${file} (${[...new Set(where)].join(', ')})`);
    expect(unpackaged).toEqual([]);
  });

  it('lists in the README exactly the Debian packages setup installs', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const start = readme.indexOf('these Debian packages:');
    const end = readme.indexOf('into `.tools/venv`', start);
    expect(start).toBeGreaterThan(0);
    const named = [...readme.slice(start, end).matchAll(/`([a-z0-9.+-]+)`/g)].map((match) => match[1]);
    expect(named.sort()).toEqual(systemPackages.map((p: { name: string }) => p.name).sort());
  });
});
