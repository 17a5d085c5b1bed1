/**
 * The parts `npm run backup` and `npm run restore` work with: the service's own parts, built from
 * the same environment as `npm start`, with the service's info lines kept out of the summary.
 */
import { createLogger } from '../foundation/logger';
import { loadConfig } from '../service/config';
import { createServiceParts, type ServiceParts } from '../service/parts';
import { requireKeyEncryptionKey } from './ca-backup-parts';

export async function openRecordsBackupParts(options: { requireExistingKey: boolean }): Promise<ServiceParts> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  if (options.requireExistingKey) await requireKeyEncryptionKey(config);
  return createServiceParts(config, logger);
}
