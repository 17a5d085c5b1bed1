/**
 * The parts a CA backup or restore needs, built from the service configuration the same way the
 * service builds them (service/main.ts): the database, the key-encryption key and key custody.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { createKeyCustody } from '../custody';
import { keyEncryptionKeyFileName, readKeyEncryptionKey, Sealer } from '../custody/sealing';
import { openDatabase } from '../db/client';
import { CertificateAuthorityBackup } from '../pki/ca-backup';
import { ConfigurationError } from '../foundation/errors';
import { loadConfig, type ServiceConfig } from '../service/config';
import { createLogger } from '../foundation/logger';

export interface CaBackupParts {
  backup: CertificateAuthorityBackup;
  close(): Promise<void>;
}

/**
 * `requireExistingKey`: a backup must unseal with the install's own key, so it must not let a
 * missing development key file be generated afresh (that key would open nothing).
 */
export async function openCaBackupParts(options: { requireExistingKey: boolean }): Promise<CaBackupParts> {
  const config = loadConfig();
  // Operators read the script's own summary; the service's info lines would only interleave with it.
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  if (options.requireExistingKey) await requireKeyEncryptionKey(config);
  const database = await openDatabase({ url: config.database.url, embeddedDir: config.database.embeddedDir });
  try {
    const sealer = new Sealer(await readKeyEncryptionKey({ keyEncryptionKey: config.keyEncryptionKey, dataDir: config.dataDir }, logger));
    const custody = await createKeyCustody(config.keyCustody, { db: database.db, sealer, logger });
    return {
      backup: new CertificateAuthorityBackup({ db: database.db, sealer, custody, logger }),
      async close() {
        await custody.close();
        await database.close();
      },
    };
  } catch (error) {
    await database.close();
    throw error;
  }
}

/**
 * A backup must unseal with the install's own key, so it must not let a missing development key
 * file be generated afresh (that key would open nothing).
 */
export async function requireKeyEncryptionKey(config: ServiceConfig): Promise<void> {
  if (config.keyEncryptionKey !== undefined) return;
  const file = path.join(config.dataDir, keyEncryptionKeyFileName);
  await access(file).catch(() => {
    throw new ConfigurationError(`no key-encryption key: set KEY_ENCRYPTION_KEY (or KEY_ENCRYPTION_KEY_FILE); ${file} does not exist`);
  });
}

/** Refused outright, so a passphrase never reaches the process list or the shell history. */
export function refusePassphraseArgument(argv: readonly string[]): string | undefined {
  const offending = argv.find((argument) => /^--passphrase(=|$)/.test(argument));
  return offending
    ? 'the passphrase is never taken as an argument: use --passphrase-file <file>, CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE'
    : undefined;
}
