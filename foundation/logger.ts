/**
 * The one logger. Secrets are redacted by key name wherever they sit in a logged object, so a
 * careless `logger.info({ request })` still never writes a password, PIN or key.
 */
import { pino, type Logger } from 'pino';

export const redactedKeys = [
  'password',
  'passphrase',
  'pin',
  'secret',
  'privateKey',
  'keyEncryptionKey',
  'credentials',
  'authorization',
  'token',
];

const redactPaths = redactedKeys.flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`]);

export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { service: 'device-provisioning' },
    redact: { paths: redactPaths, censor: '[redacted]' },
  });
}

export const logger = createLogger();

export type { Logger };
