/**
 * Key custody for tests: the sealed software store, or the SoftHSM2 token the test setup made
 * (named by the TEST_HSM_* variables).
 */
import pkcs11js from 'pkcs11js';
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

/**
 * Attributes of a token object as a PKCS#11 session of the test's own sees them, not the
 * custody's: whether the key is sensitive, extractable, and whether its value can be read at all.
 */
export function tokenKeyAttributes(objectClass: number, id: Uint8Array) {
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(process.env.TEST_HSM_MODULE!);
  pkcs11.C_Initialize();
  try {
    const slot = pkcs11.C_GetSlotList(true).find((candidate) => pkcs11.C_GetTokenInfo(candidate).label.trim() === process.env.TEST_HSM_TOKEN_LABEL)!;
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    pkcs11.C_Login(session, pkcs11js.CKU_USER, process.env.TEST_HSM_PIN!);
    pkcs11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: objectClass },
      { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
    ]);
    const [handle] = pkcs11.C_FindObjects(session, 2);
    pkcs11.C_FindObjectsFinal(session);
    if (handle === undefined) return undefined;
    const flag = (type: number) => pkcs11.C_GetAttributeValue(session, handle, [{ type }])[0]!.value[0] === 1;
    let valueReadable = true;
    try {
      pkcs11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }]);
    } catch {
      valueReadable = false;
    }
    return { token: flag(pkcs11js.CKA_TOKEN), sensitive: flag(pkcs11js.CKA_SENSITIVE), extractable: flag(pkcs11js.CKA_EXTRACTABLE), valueReadable };
  } finally {
    pkcs11.C_Finalize();
    pkcs11.close();
  }
}
