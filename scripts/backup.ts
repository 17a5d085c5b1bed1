/**
 * Writes one encrypted backup of everything the service keeps, of the install it is configured
 * with (the same environment as `npm start`): the records (devices, configuration templates and
 * versions, parameters, history, policies, firmware catalogue, archived runs, health events,
 * discovery sites, API keys, alerts, the audit trail) and the certificate authority.
 *
 *   npm run backup -- --out <file> [--passphrase-file <file>]
 *
 * The passphrase comes from --passphrase-file, CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE,
 * never from an argument. The file is created readable by its owner only and never overwritten.
 * Exits 0 when written, 1 when refused, 2 on bad arguments. The embedded database allows one
 * process at a time, so stop the service first or point DATABASE_URL at the server.
 */
import { readBackupPassphrase, writeBackupFile } from '../custody/backup-envelope';
import { refusePassphraseArgument } from './ca-backup-parts';
import { readCommandLine, runCommand, usageError } from './command-line';
import { openRecordsBackupParts } from './records-backup-parts';

const usage = 'usage: npm run backup -- --out <file> [--passphrase-file <file>]';

async function main(): Promise<number> {
  const refused = refusePassphraseArgument(process.argv.slice(2));
  if (refused) return usageError(refused, usage);
  const options = readCommandLine({ out: { type: 'string', short: 'o' }, 'passphrase-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, usage);
  if (typeof options === 'number') return options;
  if (!options.out) return usageError('--out is required', usage);

  const passphrase = await readBackupPassphrase({ file: options['passphrase-file'] });
  const parts = await openRecordsBackupParts({ requireExistingKey: true });
  try {
    const { file, header } = await parts.recordsBackup.createBackup({ passphrase });
    await writeBackupFile(options.out, file);
    console.log(`wrote ${options.out} (${file.length} bytes, readable by its owner only)`);
    console.log(`tenants: ${header.tenants.join(', ') || 'none'}`);
    console.log(`records: ${Object.entries(header.counts.tables).map(([table, count]) => `${table} ${count}`).join(', ')}`);
    console.log(`device secrets: ${header.counts.deviceSecrets} (sealed again under the destination's keys on restore)`);
    console.log(`certificate authority: ${header.counts.certificateAuthority ? 'included' : 'none yet'}`);
    return 0;
  } finally {
    passphrase.fill(0);
    await parts.close();
  }
}

runCommand(main, 'backup failed', 1);
