/**
 * Revocations told to every process that shares the database. Each process's OCSP responder keeps
 * the responses it signed until shortly before their nextUpdate; the process that revokes forgets
 * its own at once, and with this notice every other API process does too, instead of answering
 * "good" from its cache until then. The notice carries the certificate id only.
 */
import type { DatabaseHandle } from '../db/client';
import type { Logger } from '../foundation/logger';
import type { OcspResponder } from './ocsp-responder';

export const revocationChannel = 'certificate_revoked';

export async function announceRevocation(database: Pick<DatabaseHandle, 'notify'>, certificateId: string): Promise<void> {
  await database.notify(revocationChannel, certificateId);
}

/** Makes `ocsp` forget what it said about each certificate announced revoked; returns the function that stops. */
export function followRevocations(
  database: Pick<DatabaseHandle, 'listen'>,
  ocsp: Pick<OcspResponder, 'invalidate'>,
  logger: Logger,
): Promise<() => Promise<void>> {
  return database.listen(revocationChannel, (certificateId) => {
    ocsp.invalidate(certificateId).catch((error: unknown) => {
      logger.error({ err: error, certificateId }, 'could not forget the OCSP responses of a revoked certificate');
    });
  });
}
