/**
 * Writes an encrypted backup of the certificate authority of the install the service is configured
 * with (the same environment as `npm start`):
 *
 *   npm run ca:backup -- --out <file> [--tenant <id>] [--passphrase-file <file>]
 *
 * The passphrase comes from --passphrase-file, CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE,
 * never from an argument. The file is created readable by its owner only and never overwritten.
 * Prints the counts and the fingerprints of the CA certificates; exits 0 when written, 1 when the
 * backup was refused, 2 on bad arguments. The embedded database allows one process at a time, so
 * stop the service first or point DATABASE_URL at the server.
 */
import { formatCaCertificateSummary, readBackupPassphrase, writeBackupFile } from '../pki/ca-backup';
import { openCaBackupParts, refusePassphraseArgument } from './ca-backup-parts';
import { readCommandLine, runCommand, usageError } from './command-line';

const usage = 'usage: npm run ca:backup -- --out <file> [--tenant <id>] [--passphrase-file <file>]';

async function main(): Promise<number> {
  const refused = refusePassphraseArgument(process.argv.slice(2));
  if (refused) {
    console.error(`${refused}\n${usage}`);
    return 2;
  }
  const options = readCommandLine(
    {
      out: { type: 'string', short: 'o' },
      tenant: { type: 'string' },
      'passphrase-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    usage,
  );
  if (typeof options === 'number') return options;
  if (!options.out) return usageError('--out is required', usage);

  const passphrase = await readBackupPassphrase({ file: options['passphrase-file'] });
  const parts = await openCaBackupParts({ requireExistingKey: true });
  try {
    const { file, summary } = await parts.backup.createBackup({ passphrase, tenantId: options.tenant });
    await writeBackupFile(options.out, file);
    const { counts } = summary.header;
    console.log(`wrote ${options.out} (${file.length} bytes, readable by its owner only)`);
    console.log(`tenants: ${summary.header.tenants.join(', ')}`);
    console.log(
      `certificates: ${Object.entries(counts.certificates).map(([type, count]) => `${type} ${count}`).join(', ')} (${counts.revokedCertificates} revoked)`,
    );
    console.log(`certificate revocation lists: ${counts.certificateRevocationLists}`);
    console.log(`software keys: ${counts.softwareKeys}`);
    console.log(`HSM key references: ${counts.hsmKeyReferences}`);
    console.log('CA certificates:');
    for (const ca of summary.caCertificates) console.log(`  ${formatCaCertificateSummary(ca)}`);
    return 0;
  } finally {
    passphrase.fill(0);
    await parts.close();
  }
}

runCommand(main, 'CA backup failed', 1);
