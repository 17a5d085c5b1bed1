/**
 * Certificates of which there is one live at a time (a tenant's root, a site's intermediate, a
 * service identity, a CA's OCSP responder), made when there is none and replaced when the one
 * there is no longer usable, without two processes sharing the database making two.
 */
import { KeyedMutex } from '../foundation/keyed-mutex';
import type { Logger } from '../foundation/logger';
import type { CertificateRow, CertificateStore, LiveCertificateSlot, NewCertificateRow } from './certificate-store';

export interface LiveCertificate {
  /** Names the slot for the locks, in this process and across processes. */
  lockName: string;
  slot: LiveCertificateSlot;
  usable: (row: CertificateRow) => boolean;
  /** When making a successor fails (the issuing key is offline), whether the current one will still do. */
  keepWhileRenewalFails?: (row: CertificateRow) => boolean;
  /** Makes the successor of `replacing` (none at first use): its key, and its certificate signed. */
  create: (replacing: CertificateRow | undefined) => Promise<NewCertificateRow>;
}

export class LiveCertificates {
  readonly #store: CertificateStore;
  readonly #logger: Logger;
  readonly #locks = new KeyedMutex();

  constructor(store: CertificateStore, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  /**
   * The live row, created under a lock when there is none or it is no longer usable. The key is
   * made and the certificate signed before the transaction: with the embedded database a
   * transaction holds the only connection, and the software key store needs it too. The
   * in-process lock keeps this process from racing itself; the advisory lock and re-check keep
   * several processes on one server from creating two.
   */
  async ensure(spec: LiveCertificate): Promise<CertificateRow> {
    return this.#locks.run(spec.lockName, async () => {
      const current = await this.#store.findLive(spec.slot);
      if (current && spec.usable(current)) return current;

      let created: NewCertificateRow;
      try {
        created = await spec.create(current);
      } catch (error) {
        if (!current || !spec.keepWhileRenewalFails?.(current)) throw error;
        this.#logger.warn(
          { err: error, certificateId: current.id, lock: spec.lockName },
          'could not renew the certificate; the current one stays in use while it is valid',
        );
        return current;
      }
      return this.#store.exclusively(spec.lockName, async (certificates) => {
        const live = await certificates.findLive(spec.slot);
        if (live && spec.usable(live)) {
          this.#logger.warn(
            { lock: spec.lockName, unusedKeyLocation: created.privateKeyLocation },
            'another instance created this certificate first; the key made for it here stays unused',
          );
          return live;
        }
        if (live) {
          await certificates.supersede(live.id);
          this.#logger.info({ certificateId: live.id, lock: spec.lockName }, 'superseded certificate');
        }
        return certificates.insert(created);
      });
    });
  }

  /** Runs `work` while nothing else under `lockName` runs in this process (`ensure` included). */
  exclusively<T>(lockName: string, work: () => Promise<T>): Promise<T> {
    return this.#locks.run(lockName, work);
  }
}

/** Renew once a third of the validity is left. */
export function renewalTime(row: Pick<CertificateRow, 'issuedAt' | 'expiresAt'>): number {
  const start = row.issuedAt.getTime();
  const end = row.expiresAt.getTime();
  return end - (end - start) / 3;
}
