/**
 * Key custody for tests: the sealed software store, or the SoftHSM2 token the test setup made
 * (named by the TEST_HSM_* variables).
 */
import { createKeyCustody } from '../../custody';
import type { KeyCustody } from '../../custody/key-custody';
import type { Sealer } from '../../custody/sealing';
import type { Database } from '../../db/client';

export const custodyKinds = ['software', 'pkcs11'] as const;
export type CustodyKind = (typeof custodyKinds)[number];

export function openTestCustody(kind: CustodyKind, deps: { db: Database; sealer: Sealer }): Promise<KeyCustody> {
  if (kind === 'software') return createKeyCustody({ kind: 'software' }, deps);
  return createKeyCustody(
    { kind: 'pkcs11', module: process.env.TEST_HSM_MODULE!, tokenLabel: process.env.TEST_HSM_TOKEN_LABEL!, pin: process.env.TEST_HSM_PIN! },
    deps,
  );
}
