/**
 * Runs against the real SoftHSM2 token the test run's global setup creates.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyAlgorithm, KeyHandle } from '../key-custody';
import { DependencyUnavailableError, NotFoundError } from '../../foundation/errors';
import { Pkcs11KeyCustody, type Pkcs11Options } from './pkcs11-key-custody';
import { formatPkcs11Uri, parsePkcs11Uri } from './pkcs11-uri';

function hsmOptions(overrides: Partial<Pkcs11Options> = {}): Pkcs11Options {
  const { TEST_HSM_MODULE, TEST_HSM_TOKEN_LABEL, TEST_HSM_PIN } = process.env;
  if (!TEST_HSM_MODULE || !TEST_HSM_TOKEN_LABEL || !TEST_HSM_PIN) throw new Error('the SoftHSM test token is not set up');
  return { module: TEST_HSM_MODULE, tokenLabel: TEST_HSM_TOKEN_LABEL, pin: TEST_HSM_PIN, ...overrides };
}

function verifies(key: KeyHandle, hash: 'SHA-256' | 'SHA-384', data: Uint8Array, signature: Uint8Array): boolean {
  const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki), format: 'der', type: 'spki' });
  return verify(hash === 'SHA-256' ? 'sha256' : 'sha384', data, { key: publicKey, dsaEncoding: 'der' }, signature);
}

/** Reads private key attributes with a PKCS#11 session of the test's own, not the adapter's. */
function privateKeyAttributes(location: string) {
  const options = hsmOptions();
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(options.module);
  pkcs11.C_Initialize();
  try {
    const slot = pkcs11
      .C_GetSlotList(true)
      .find((candidate) => pkcs11.C_GetTokenInfo(candidate).label.trim() === options.tokenLabel)!;
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    pkcs11.C_Login(session, pkcs11js.CKU_USER, options.pin);
    pkcs11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: parsePkcs11Uri(location)!.id! },
    ]);
    const [handle] = pkcs11.C_FindObjects(session, 2);
    pkcs11.C_FindObjectsFinal(session);
    const flag = (type: number) => pkcs11.C_GetAttributeValue(session, handle!, [{ type }])[0]!.value[0] === 1;
    let valueReadable = true;
    try {
      pkcs11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_VALUE }]);
    } catch {
      valueReadable = false;
    }
    let privateExponentReadable = true;
    try {
      pkcs11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_PRIVATE_EXPONENT }]);
    } catch {
      privateExponentReadable = false;
    }
    const label = pkcs11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_LABEL }])[0]!.value.toString();
    return {
      label,
      token: flag(pkcs11js.CKA_TOKEN),
      private: flag(pkcs11js.CKA_PRIVATE),
      sensitive: flag(pkcs11js.CKA_SENSITIVE),
      alwaysSensitive: flag(pkcs11js.CKA_ALWAYS_SENSITIVE),
      extractable: flag(pkcs11js.CKA_EXTRACTABLE),
      neverExtractable: flag(pkcs11js.CKA_NEVER_EXTRACTABLE),
      sign: flag(pkcs11js.CKA_SIGN),
      secretReadable: valueReadable || privateExponentReadable,
    };
  } finally {
    pkcs11.C_Finalize();
    pkcs11.close();
  }
}

const algorithms: KeyAlgorithm[] = ['P-256', 'P-384', 'RSA-2048', 'RSA-3072'];

describe('Pkcs11KeyCustody on SoftHSM2', () => {
  let custody: Pkcs11KeyCustody;
  const keys = new Map<KeyAlgorithm, KeyHandle>();

  beforeAll(async () => {
    custody = await Pkcs11KeyCustody.open(hsmOptions());
  });
  afterAll(() => custody?.close());

  it.each(algorithms)('creates a %s key in the token whose signatures verify against its public key', async (algorithm) => {
    const label = `test-${algorithm}-${randomBytes(3).toString('hex')}`;
    const key = await custody.createKey(label, algorithm);
    keys.set(algorithm, key);
    expect(key.algorithm).toBe(algorithm);
    expect(key.location).toMatch(new RegExp(`^pkcs11:token=${process.env.TEST_HSM_TOKEN_LABEL};object=.+;id=(%[0-9a-f]{2}){16}$`));
    expect(await custody.getKey(key.location)).toEqual(key);

    const data = randomBytes(300);
    for (const hash of ['SHA-256', 'SHA-384'] as const) {
      const signature = await custody.sign(key.location, hash, data);
      expect(verifies(key, hash, data, signature)).toBe(true);
      expect(verifies(key, hash, randomBytes(300), signature)).toBe(false);
    }
  });

  it('signs many requests at once, each correctly', async () => {
    const key = keys.get('P-256')!;
    const messages = Array.from({ length: 24 }, () => randomBytes(64));
    const signatures = await Promise.all(messages.map((message) => custody.sign(key.location, 'SHA-256', message)));
    signatures.forEach((signature, index) => expect(verifies(key, 'SHA-256', messages[index]!, signature)).toBe(true));
  });

  it('answers NotFoundError for keys it does not hold', async () => {
    const unknown = formatPkcs11Uri({ token: custody.tokenLabel, object: 'missing', id: randomBytes(16) });
    await expect(custody.getKey(unknown)).rejects.toThrow(NotFoundError);
    await expect(custody.sign(unknown, 'SHA-256', Buffer.from('x'))).rejects.toThrow(NotFoundError);
    const otherToken = formatPkcs11Uri({ token: 'another-token', object: 'x', id: randomBytes(16) });
    await expect(custody.getKey(otherToken)).rejects.toThrow(/another-token/);
    await expect(custody.getKey('software:1234')).rejects.toThrow(NotFoundError);
  });

  it('keeps private keys sensitive, never extractable, and still usable after the module is closed and reopened', async () => {
    await custody.close();

    for (const [algorithm, key] of keys) {
      const attributes = privateKeyAttributes(key.location);
      expect(attributes, algorithm).toMatchObject({
        token: true,
        private: true,
        sensitive: true,
        alwaysSensitive: true,
        extractable: false,
        neverExtractable: true,
        sign: true,
        secretReadable: false,
      });
      expect(attributes.label).toMatch(/^test-/);
    }

    custody = await Pkcs11KeyCustody.open(hsmOptions());
    for (const key of keys.values()) {
      expect(await custody.getKey(key.location)).toEqual(key);
      const data = randomBytes(100);
      expect(verifies(key, 'SHA-256', data, await custody.sign(key.location, 'SHA-256', data))).toBe(true);
    }
  });

  it('refuses to work once closed', async () => {
    const closing = await Pkcs11KeyCustody.open(hsmOptions());
    await custody.close();
    await closing.close();
    await expect(closing.sign(keys.get('P-256')!.location, 'SHA-256', Buffer.from('x'))).rejects.toThrow(
      DependencyUnavailableError,
    );
  });
});

describe('Pkcs11KeyCustody start-up failures', () => {
  it('reports a wrong PIN as the HSM being unavailable, without the PIN', async () => {
    const pin = '864209753';
    const failure = await Pkcs11KeyCustody.open(hsmOptions({ pin })).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DependencyUnavailableError);
    expect((failure as Error).message).toMatch(/log in.*CKR_PIN_INCORRECT/);
    expect((failure as Error).message).not.toContain(pin);
    expect(JSON.stringify(failure)).not.toContain(pin);
  });

  it('names the tokens present when the configured label is missing', async () => {
    await expect(Pkcs11KeyCustody.open(hsmOptions({ tokenLabel: 'no-such-token' }))).rejects.toThrow(
      new RegExp(`no PKCS#11 token labelled "no-such-token".*"${process.env.TEST_HSM_TOKEN_LABEL}"`),
    );
  });

  it('reports a module that cannot be loaded', async () => {
    await expect(Pkcs11KeyCustody.open(hsmOptions({ module: '/nonexistent/libpkcs11.so' }))).rejects.toThrow(
      DependencyUnavailableError,
    );
  });

  it('finds the token by slot index when no label is given', async () => {
    const custody = await Pkcs11KeyCustody.open(hsmOptions({ tokenLabel: undefined, slot: 0 }));
    try {
      expect(custody.tokenLabel).toBe(process.env.TEST_HSM_TOKEN_LABEL);
    } finally {
      await custody.close();
    }
  });
});

describe('PKCS#11 URIs', () => {
  it('round-trip token, object label and binary id, escaping what RFC 7512 requires', () => {
    const id = Buffer.from([0x00, 0xab, 0xff, 0x3b]);
    const uri = formatPkcs11Uri({ token: 'CA token', object: 'root-ca:acme;1', id });
    expect(uri).toBe('pkcs11:token=CA%20token;object=root-ca%3aacme%3b1;id=%00%ab%ff%3b');
    expect(parsePkcs11Uri(uri)).toEqual({ token: 'CA token', object: 'root-ca:acme;1', id });
  });

  it('reads URIs written by other tools and rejects malformed ones', () => {
    expect(parsePkcs11Uri('pkcs11:object=key;type=private;id=%01%02?pin-value=1234')).toEqual({
      object: 'key',
      id: Buffer.from([1, 2]),
    });
    expect(parsePkcs11Uri('pkcs11:id=%zz')).toBeUndefined();
    expect(parsePkcs11Uri('software:abc')).toBeUndefined();
  });
});
