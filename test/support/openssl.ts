/**
 * The real `openssl` CLI, for tests that need certificate material made, or checked, by something
 * other than the code under test.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function openssl(args: string[], options: { cwd?: string; input?: string } = {}): string {
  const result = spawnSync('openssl', args, { cwd: options.cwd, input: options.input, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
  return result.stdout;
}

/** Runs `work` in a fresh temporary directory and removes it afterwards. */
export function withTemporaryDirectory<T>(work: (directory: string) => T): T {
  const directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'openssl-'));
  try {
    return work(directory);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

export type CsrKey = 'P-256' | 'P-384' | 'RSA-1024' | 'RSA-2048' | 'Ed25519';

const newKeyArguments: Record<CsrKey, string[]> = {
  'P-256': ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  'P-384': ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  'RSA-1024': ['-newkey', 'rsa:1024'],
  'RSA-2048': ['-newkey', 'rsa:2048'],
  Ed25519: ['-newkey', 'ed25519'],
};

/** A CSR made by `openssl req`, e.g. `makeCsr({ key: 'P-256', subject: '/CN=cam-1', subjectAltName: 'IP:10.0.0.5' })`. */
export function makeCsr(options: {
  key: CsrKey;
  subject: string;
  subjectAltName?: string;
  digest?: 'sha1' | 'sha256' | 'sha384';
}): { csrPem: string; keyPem: string } {
  return withTemporaryDirectory((directory) => {
    openssl(
      [
        'req',
        '-new',
        ...newKeyArguments[options.key],
        '-nodes',
        '-keyout',
        'key.pem',
        '-out',
        'csr.pem',
        '-subj',
        options.subject,
        ...(options.subjectAltName ? ['-addext', `subjectAltName=${options.subjectAltName}`] : []),
        ...(options.digest && options.key !== 'Ed25519' ? [`-${options.digest}`] : []),
      ],
      { cwd: directory },
    );
    return {
      csrPem: readFileSync(path.join(directory, 'csr.pem'), 'utf8'),
      keyPem: readFileSync(path.join(directory, 'key.pem'), 'utf8'),
    };
  });
}

/** `openssl verify -x509_strict` of a leaf against a root and intermediates; returns its output. */
export function verifyChain(options: { rootPem: string; intermediatePems: string[]; leafPem: string; purpose?: string }): string {
  return withTemporaryDirectory((directory) => {
    writeFileSync(path.join(directory, 'root.pem'), options.rootPem);
    writeFileSync(path.join(directory, 'intermediate.pem'), options.intermediatePems.join(''));
    writeFileSync(path.join(directory, 'leaf.pem'), options.leafPem);
    return openssl(
      [
        'verify',
        '-x509_strict',
        ...(options.purpose ? ['-purpose', options.purpose] : []),
        '-CAfile',
        'root.pem',
        ...(options.intermediatePems.length > 0 ? ['-untrusted', 'intermediate.pem'] : []),
        'leaf.pem',
      ],
      { cwd: directory },
    );
  });
}

/** `openssl x509 -noout -text`-style output for chosen extensions, e.g. `['basicConstraints', 'keyUsage']`. */
export function certificateExtensionsText(certificatePem: string, extensions: string[]): string {
  return openssl(['x509', '-noout', '-ext', extensions.join(',')], { input: certificatePem });
}

export function certificateField(certificatePem: string, field: '-subject' | '-issuer' | '-serial' | '-dates' | '-text'): string {
  return openssl(['x509', '-noout', field, '-nameopt', 'RFC2253'], { input: certificatePem });
}
