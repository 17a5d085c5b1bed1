/**
 * Restores an encrypted CA backup into the install the service is configured with (the same
 * environment as `npm start`), re-sealing software keys under this install's key-encryption key:
 *
 *   npm run ca:restore -- --in <file> [--passphrase-file <file>]
 *
 * The passphrase comes from --passphrase-file, CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE,
 * never from an argument. Nothing is written unless the whole backup verifies and every tenant in
 * it is either absent here or already restored identically. HSM keys must be on this install's
 * token. Exits 0 when restored (or already present), 1 when refused, 2 on bad arguments.
 */
import { readFile } from 'node:fs/promises';
import { formatCaCertificateSummary, readBackupPassphrase } from '../pki/ca-backup';
import { openCaBackupParts, refusePassphraseArgument } from './ca-backup-parts';
import { readCommandLine, runCommand, usageError } from './command-line';

const usage = 'usage: npm run ca:restore -- --in <file> [--passphrase-file <file>]';

async function main(): Promise<number> {
  const refused = refusePassphraseArgument(process.argv.slice(2));
  if (refused) {
    console.error(`${refused}\n${usage}`);
    return 2;
  }
  const options = readCommandLine(
    {
      in: { type: 'string', short: 'i' },
      'passphrase-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    usage,
  );
  if (typeof options === 'number') return options;
  if (!options.in) return usageError('--in is required', usage);

  const file = await readFile(options.in);
  const passphrase = await readBackupPassphrase({ file: options['passphrase-file'] });
  const parts = await openCaBackupParts({ requireExistingKey: false });
  try {
    const result = await parts.backup.restoreBackup(file, { passphrase });
    console.log(`restored ${options.in} (created ${result.header.createdAt})`);
    for (const tenant of result.tenants) console.log(`tenant ${tenant.tenantId}: ${tenant.outcome}`);
    console.log(
      `inserted: ${result.inserted.certificates} certificates, ${result.inserted.certificateRevocationLists} certificate revocation lists, ${result.inserted.softwareKeys} software keys`,
    );
    console.log('CA certificates:');
    for (const ca of result.caCertificates) console.log(`  ${formatCaCertificateSummary(ca)}`);
    return 0;
  } finally {
    passphrase.fill(0);
    await parts.close();
  }
}

runCommand(main, 'CA restore refused', 1);
