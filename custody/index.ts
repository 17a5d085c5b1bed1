/**
 * Chooses key custody from configuration: an HSM through PKCS#11 when one is configured, else the
 * sealed software store. Either way the software store also holds the keys the service must keep
 * in memory, and keys made before the configuration changed stay where they were made.
 */
import { Pkcs11KeyCustody } from './hsm-pkcs11';
import { SoftwareKeyStore } from './software-keystore';
import type { Database } from '../db/client';
import type { Logger } from '../foundation/logger';
import { RoutingKeyCustody } from './routing-key-custody';
import type { Sealer } from './sealing';

/** Where CA keys are made: an HSM's token (PKCS#11), or the sealed software store. */
export type KeyCustodySettings =
  | { kind: 'pkcs11'; module: string; tokenLabel?: string; slot?: number; pin: string }
  | { kind: 'software' };

export async function createKeyCustody(
  config: KeyCustodySettings,
  deps: { db: Database; sealer: Sealer; logger?: Logger },
): Promise<RoutingKeyCustody> {
  const software = new SoftwareKeyStore({ db: deps.db, sealer: deps.sealer });
  switch (config.kind) {
    case 'pkcs11':
      return new RoutingKeyCustody(
        software,
        await Pkcs11KeyCustody.open({
          module: config.module,
          tokenLabel: config.tokenLabel,
          slot: config.slot,
          pin: config.pin,
          logger: deps.logger,
        }),
      );
    case 'software':
      return new RoutingKeyCustody(software);
  }
}

export type { HashAlgorithm, KeyAlgorithm, KeyCustody, KeyHandle } from './key-custody';
