/**
 * A throwaway two-level CA run with the `openssl` command line, for tests of devices and adapters:
 * a root, a site intermediate that issues device certificates, and a services intermediate that
 * issues the service's client identities and configuration signers, as the service's own CA does. Made with a tool other than our own CA code, so a test passing means the
 * device speaks standard X.509, not merely our dialect of it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClientTlsIdentity } from '../../adapters/device-adapter';

/** id-kp-documentSigning (RFC 9336), the purpose of configuration signers, written out as a relying party's tool would. */
const configurationSigningPurpose = '1.3.6.1.5.5.7.3.36';
/** The purpose configuration signers carried before, under a UUID arc. */
const legacyConfigurationSigningPurpose = '2.25.114753779424367444787422388892927952038.1.1';

/** End-entity profiles: section name, key usage, extended key usage. */
const leafProfiles: Array<[section: string, keyUsage: string, extendedKeyUsage: string]> = [
  ['device', 'digitalSignature, keyEncipherment', 'serverAuth, clientAuth'],
  ['client', 'digitalSignature', 'clientAuth'],
  ['server_only', 'digitalSignature', 'serverAuth'],
  ['configuration_signer', 'digitalSignature', configurationSigningPurpose],
  ['legacy_configuration_signer', 'digitalSignature', legacyConfigurationSigningPurpose],
  ['code_signer', 'digitalSignature', 'codeSigning'],
  // A configuration signer whose key may not sign: the device must refuse it.
  ['configuration_signer_key_agreement', 'keyAgreement', configurationSigningPurpose],
];

const leafSections = leafProfiles
  .map(([section, keyUsage, extendedKeyUsage]) =>
    [
      `[${section}]`,
      'basicConstraints = critical, CA:FALSE',
      `keyUsage = critical, ${keyUsage}`,
      `extendedKeyUsage = ${extendedKeyUsage}`,
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ].join('\n'),
  )
  .join('\n');

const caExtensions = `
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
${leafSections}
`;

export interface SigningIdentity {
  certificatePem: string;
  privateKeyPem: string;
  /** Issuers of the certificate, nearest first, up to the root. */
  chainPem: string[];
}

export class OpensslTestCa {
  readonly rootPem: string;
  readonly intermediatePem: string;
  /** The CA of the service's identities: what devices are given as their anchor for clients. */
  readonly servicesIntermediatePem: string;
  private readonly dir: string;
  private counter = 0;

  constructor(readonly name = 'Test') {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'openssl-test-ca-'));
    writeFileSync(this.file('ext.cnf'), caExtensions);
    this.openssl('req', '-x509', ...ecKey('root.key'), '-subj', `/CN=${name} Root CA`, '-days', '3',
      '-config', this.file('ext.cnf'), '-extensions', 'root', '-out', this.file('root.pem'));
    this.openssl('req', '-new', ...ecKey('intermediate.key'), '-subj', `/CN=${name} Site Intermediate CA`,
      '-out', this.file('intermediate.csr'));
    this.sign('intermediate.csr', 'root', 'intermediate', 'intermediate.pem');
    this.openssl('req', '-new', ...ecKey('services.key'), '-subj', `/CN=${name} Services CA`, '-out', this.file('services.csr'));
    this.sign('services.csr', 'root', 'intermediate', 'services.pem');
    this.rootPem = this.read('root.pem');
    this.intermediatePem = this.read('intermediate.pem');
    this.servicesIntermediatePem = this.read('services.pem');
  }

  /** A device certificate for `csrPem`, keeping the names the device asked for. */
  signDeviceCsr(csrPem: string, options: { days?: number } = {}): string {
    const n = this.next();
    writeFileSync(this.file(`device-${n}.csr`), csrPem);
    this.sign(`device-${n}.csr`, 'intermediate', 'device', `device-${n}.pem`, ['-copy_extensions', 'copyall'], options.days);
    return this.read(`device-${n}.pem`);
  }

  /** A client identity issued by the services intermediate; `purpose: 'serverAuth'` makes one unfit for clients. */
  issueClientIdentity(commonName: string, options: { purpose?: 'clientAuth' | 'serverAuth' } = {}): ClientTlsIdentity {
    const n = this.next();
    this.openssl('req', '-new', ...ecKey(`client-${n}.key`), '-subj', `/CN=${commonName}`, '-out', this.file(`client-${n}.csr`));
    this.sign(`client-${n}.csr`, 'services', options.purpose === 'serverAuth' ? 'server_only' : 'client', `client-${n}.pem`);
    return {
      certificatePem: this.read(`client-${n}.pem`),
      privateKeyPem: this.read(`client-${n}.key`),
      chainPem: [this.servicesIntermediatePem],
    };
  }

  /** A device's own TLS identity, with its key, from the site intermediate (clientAuth and serverAuth). */
  issueDeviceIdentity(commonName: string): ClientTlsIdentity {
    const n = this.next();
    this.openssl('req', '-new', ...ecKey(`device-key-${n}.key`), '-subj', `/CN=${commonName}`, '-out', this.file(`device-key-${n}.csr`));
    this.sign(`device-key-${n}.csr`, 'intermediate', 'device', `device-key-${n}.pem`);
    return {
      certificatePem: this.read(`device-key-${n}.pem`),
      privateKeyPem: this.read(`device-key-${n}.key`),
      chainPem: [this.intermediatePem],
    };
  }

  /**
   * A configuration signer issued by the services intermediate. `purpose: 'codeSigning'` and
   * `keyUsage: 'keyAgreement'` make signers a device must refuse; `purpose: 'legacy'` one with the
   * purpose signers carried before id-kp-documentSigning.
   */
  issueConfigurationSigner(
    options: { purpose?: 'documentSigning' | 'legacy' | 'codeSigning'; keyUsage?: 'digitalSignature' | 'keyAgreement' } = {},
  ): SigningIdentity {
    const n = this.next();
    const extensions =
      options.purpose === 'codeSigning'
        ? 'code_signer'
        : options.purpose === 'legacy'
          ? 'legacy_configuration_signer'
          : options.keyUsage === 'keyAgreement'
            ? 'configuration_signer_key_agreement'
            : 'configuration_signer';
    this.openssl('req', '-new', ...ecKey(`signer-${n}.key`), '-subj', `/CN=${this.name} Configuration Signing`, '-out', this.file(`signer-${n}.csr`));
    this.sign(`signer-${n}.csr`, 'services', extensions, `signer-${n}.pem`);
    return {
      certificatePem: this.read(`signer-${n}.pem`),
      privateKeyPem: this.read(`signer-${n}.key`),
      chainPem: [this.servicesIntermediatePem, this.rootPem],
    };
  }

  /** A CSR for a key made here, i.e. not the one the device holds. */
  foreignCsr(commonName: string): string {
    const n = this.next();
    this.openssl('req', '-new', ...ecKey(`foreign-${n}.key`), '-subj', `/CN=${commonName}`, '-out', this.file(`foreign-${n}.csr`));
    return this.read(`foreign-${n}.csr`);
  }

  /** `openssl req -verify` on the CSR (throws when its signature does not hold); returns the text dump. */
  verifyCsr(csrPem: string): string {
    const n = this.next();
    writeFileSync(this.file(`check-${n}.csr`), csrPem);
    return this.openssl('req', '-in', this.file(`check-${n}.csr`), '-verify', '-noout', '-text');
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private sign(csr: string, issuer: 'root' | 'intermediate' | 'services', extensions: string, out: string, extra: string[] = [], days = 2) {
    this.openssl('x509', '-req', '-in', this.file(csr), '-CA', this.file(`${issuer}.pem`), '-CAkey', this.file(`${issuer}.key`),
      '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', String(days), '-sha256',
      '-extfile', this.file('ext.cnf'), '-extensions', extensions, ...extra, '-out', this.file(out));
  }

  private openssl(...args: string[]): string {
    return execFileSync('openssl', args, { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  private read(name: string): string {
    return readFileSync(this.file(name), 'utf8');
  }

  private next(): number {
    this.counter += 1;
    return this.counter;
  }
}

function ecKey(keyFile: string): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile];
}
