/**
 * Chooses key custody from configuration: an HSM through PKCS#11 when one is configured, else the
 * sealed software store.
 */
import { Pkcs11KeyCustody } from './hsm-pkcs11';
import { SoftwareKeyStore } from './software-keystore';
import type { Database } from '../db/client';
import type { Logger } from '../foundation/logger';
import type { KeyCustody } from './key-custody';
import type { Sealer } from './sealing';

/** Where CA keys are made: an HSM's token (PKCS#11), or the sealed software store. */
export type KeyCustodySettings =
  | { kind: 'pkcs11'; module: string; tokenLabel?: string; slot?: number; pin: string }
  | { kind: 'software' };

export async function createKeyCustody(
  config: KeyCustodySettings,
  deps: { db: Database; sealer: Sealer; logger?: Logger },
): Promise<KeyCustody> {
  switch (config.kind) {
    case 'pkcs11':
      return Pkcs11KeyCustody.open({
        module: config.module,
        tokenLabel: config.tokenLabel,
        slot: config.slot,
        pin: config.pin,
        logger: deps.logger,
      });
    case 'software':
      return new SoftwareKeyStore({ db: deps.db, sealer: deps.sealer });
  }
}

export type { HashAlgorithm, KeyAlgorithm, KeyCustody, KeyHandle } from './key-custody';
