/**
 * Chooses key custody from configuration: an HSM through PKCS#11 when one is configured, else the
 * sealed software store.
 */
import { Pkcs11KeyCustody } from './hsm-pkcs11';
import { SoftwareKeyStore } from './software-keystore';
import type { Database } from '../db/client';
import type { ServiceConfig } from '../service/config';
import type { Logger } from '../foundation/logger';
import type { KeyCustody } from './key-custody';
import type { Sealer } from './sealing';

export async function createKeyCustody(
  config: ServiceConfig['keyCustody'],
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
