/**
 * Restores a backup written by `npm run backup` into a fresh install (the environment of
 * `npm start`; run it before the first start): the certificate authority, the device secrets sealed
 * again under this install's keys, then the records, committed only when every audit chain and
 * every certificate chain verifies.
 *
 *   npm run restore -- --in <file> [--passphrase-file <file>]
 *
 * The passphrase comes from --passphrase-file, CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE,
 * never from an argument. Refuses an install that already holds records of the backup's tenants.
 * A restore that failed part way may be run again. Exits 0 when restored, 1 when refused, 2 on bad
 * arguments.
 */
import { readFile } from 'node:fs/promises';
import { readBackupPassphrase } from '../custody/backup-envelope';
import { formatCaCertificateSummary } from '../pki/ca-backup';
import { refusePassphraseArgument } from './ca-backup-parts';
import { readCommandLine, runCommand, usageError } from './command-line';
import { openRecordsBackupParts } from './records-backup-parts';

const usage = 'usage: npm run restore -- --in <file> [--passphrase-file <file>]';

async function main(): Promise<number> {
  const refused = refusePassphraseArgument(process.argv.slice(2));
  if (refused) return usageError(refused, usage);
  const options = readCommandLine({ in: { type: 'string', short: 'i' }, 'passphrase-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, usage);
  if (typeof options === 'number') return options;
  if (!options.in) return usageError('--in is required', usage);

  const file = await readFile(options.in);
  const passphrase = await readBackupPassphrase({ file: options['passphrase-file'] });
  const parts = await openRecordsBackupParts({ requireExistingKey: false });
  try {
    const result = await parts.recordsBackup.restoreBackup(file, { passphrase });
    console.log(`restored ${options.in} (created ${result.header.createdAt})`);
    console.log(`records: ${Object.entries(result.inserted).map(([table, count]) => `${table} ${count}`).join(', ')}`);
    console.log(`device secrets sealed again: ${result.deviceSecrets}`);
    for (const chain of result.auditChains) console.log(`audit chain ${chain.tenantId}: ok (${chain.eventsChecked} events, last sequence ${chain.lastSequence})`);
    console.log(`certificates verified against their issuers: ${result.certificatesVerified}`);
    for (const ca of result.certificateAuthority?.caCertificates ?? []) console.log(`  ${formatCaCertificateSummary(ca)}`);
    return 0;
  } finally {
    passphrase.fill(0);
    await parts.close();
  }
}

runCommand(main, 'restore refused', 1);
