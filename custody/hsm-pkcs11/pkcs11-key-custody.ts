/**
 * Key custody in an HSM through PKCS#11. Keys are generated on the token as non-extractable,
 * sensitive token objects; only public halves and signatures ever leave it.
 */
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import pkcs11js from 'pkcs11js';
import type { HashAlgorithm, KeyAlgorithm, KeyCustody, KeyHandle } from '../key-custody';
import {
  curveOfEcParameters,
  ecCurves,
  ecdsaSignatureToDer,
  ecParameters,
  ecSubjectPublicKeyInfo,
  rsaSubjectPublicKeyInfo,
  type EcCurve,
} from '../../x509/public-key';
import { DependencyUnavailableError, NotFoundError, PolicyViolationError, ValidationError } from '../../foundation/errors';
import type { Logger } from '../../foundation/logger';
import { SealedValueError } from '../sealing';
import { formatPkcs11Uri, parsePkcs11Uri } from './pkcs11-uri';

type Handle = Buffer;

export interface Pkcs11Options {
  /** Path of the vendor's PKCS#11 module (shared library). */
  module: string;
  /** Token to use, by label; takes precedence over `slot`. */
  tokenLabel?: string;
  /** Index into the list of slots that hold a token, when no label is given. */
  slot?: number;
  pin: string;
  /** Concurrent sessions, each used by one operation at a time. */
  sessions?: number;
  logger?: Logger;
}

/** Return values that mean the token, session or login is gone rather than the request being wrong. */
const unavailableCodes = new Set<number>([
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_COUNT,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_PIN_INCORRECT,
  pkcs11js.CKR_PIN_LOCKED,
  pkcs11js.CKR_PIN_EXPIRED,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_HOST_MEMORY,
]);

/** After these a session is not worth keeping in the pool. */
const gcmIvBytes = 12;
const gcmTagBytes = 16;

/** AES-GCM in the token, with a 96-bit IV and a 128-bit tag appended to the ciphertext. */
function gcmMechanism(iv: Buffer, associatedData: Uint8Array): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = {
    type: pkcs11js.CK_PARAMS_AES_GCM,
    iv,
    aad: Buffer.from(associatedData),
    ivBits: gcmIvBytes * 8,
    tagBits: gcmTagBytes * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/**
 * What a token answers from C_Decrypt to a GCM tag that does not verify: the standard codes, and
 * CKR_GENERAL_ERROR, which is what SoftHSM2 reports.
 */
const invalidCiphertextCodes = new Set<number>([
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
]);

const brokenSessionCodes = new Set<number>([
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
]);

const staleHandleCodes = new Set<number>([pkcs11js.CKR_OBJECT_HANDLE_INVALID, pkcs11js.CKR_KEY_HANDLE_INVALID]);

/**
 * A PKCS#11 module is process-wide state: a second C_Initialize fails and C_Finalize ends it for
 * every user. Each loaded module is therefore shared and finalised only when its last user closes.
 */
const loadedModules = new Map<string, { pkcs11: pkcs11js.PKCS11; users: number }>();

function acquireModule(modulePath: string): pkcs11js.PKCS11 {
  const loaded = loadedModules.get(modulePath);
  if (loaded) {
    loaded.users += 1;
    return loaded.pkcs11;
  }
  const pkcs11 = new pkcs11js.PKCS11();
  try {
    pkcs11.load(modulePath);
  } catch (error) {
    throw new DependencyUnavailableError(`cannot load PKCS#11 module ${modulePath}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  try {
    // OS locking lets the module serve the worker threads that the *Async calls run on.
    pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (codeOf(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      pkcs11.close();
      throw new DependencyUnavailableError(`cannot initialise PKCS#11 module ${modulePath}: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }
  loadedModules.set(modulePath, { pkcs11, users: 1 });
  return pkcs11;
}

function releaseModule(modulePath: string): { last: boolean; finalise: () => void } {
  const loaded = loadedModules.get(modulePath);
  if (!loaded) return { last: false, finalise: () => {} };
  loaded.users -= 1;
  if (loaded.users > 0) return { last: false, finalise: () => {} };
  loadedModules.delete(modulePath);
  return {
    last: true,
    finalise: () => {
      try {
        loaded.pkcs11.C_Finalize();
      } finally {
        loaded.pkcs11.close();
      }
    },
  };
}

interface PrivateKeyEntry {
  handle: Handle;
  algorithm: KeyAlgorithm;
  /** Signature length: 2 × field size for ECDSA, modulus length for RSA. */
  signatureBytes: number;
}

export class Pkcs11KeyCustody implements KeyCustody {
  readonly kind = 'pkcs11' as const;
  readonly tokenLabel: string;
  readonly #options: Pkcs11Options;
  readonly #pkcs11: pkcs11js.PKCS11;
  readonly #slot: Handle;
  readonly #pool: SessionPool;
  /** Object handles of token objects stay valid for the whole application, so they are kept. */
  readonly #privateKeys = new Map<string, PrivateKeyEntry>();
  /** Wrapping keys' object handles by location. */
  readonly #secretKeys = new Map<string, Handle>();
  #closed = false;

  private constructor(options: Pkcs11Options, pkcs11: pkcs11js.PKCS11, slot: Handle, tokenLabel: string) {
    this.#options = options;
    this.#pkcs11 = pkcs11;
    this.#slot = slot;
    this.tokenLabel = tokenLabel;
    this.#pool = new SessionPool(options.sessions ?? 4, () => this.#openSession());
  }

  /** Loads the module, finds the token and logs in; DependencyUnavailableError when any step fails. */
  static async open(options: Pkcs11Options): Promise<Pkcs11KeyCustody> {
    const pkcs11 = acquireModule(options.module);
    try {
      const { slot, tokenLabel } = findSlot(pkcs11, options);
      const custody = new Pkcs11KeyCustody(options, pkcs11, slot, tokenLabel);
      // Opening one session now logs in, so a wrong PIN fails at start-up rather than at first use.
      await custody.#pool.use(() => undefined);
      options.logger?.info({ module: options.module, token: tokenLabel }, 'PKCS#11 key custody ready');
      return custody;
    } catch (error) {
      releaseModule(options.module).finalise();
      throw error;
    }
  }

  async createKey(label: string, algorithm: KeyAlgorithm): Promise<KeyHandle> {
    const id = randomBytes(16);
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
    ];
    const privateTemplate = [
      ...common,
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    const publicTemplate = [
      ...common,
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
    ];

    let mechanism: pkcs11js.Mechanism;
    switch (algorithm) {
      case 'P-256':
      case 'P-384':
        mechanism = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
        publicTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC });
        publicTemplate.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(ecParameters(algorithm)) });
        privateTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC });
        break;
      case 'RSA-2048':
      case 'RSA-3072':
        mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
        publicTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA });
        publicTemplate.push({ type: pkcs11js.CKA_MODULUS_BITS, value: algorithm === 'RSA-2048' ? 2048 : 3072 });
        publicTemplate.push({ type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([0x01, 0x00, 0x01]) });
        privateTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA });
        break;
      default:
        throw new ValidationError(`unsupported key algorithm ${String(algorithm)}`);
    }

    const location = formatPkcs11Uri({ token: this.tokenLabel, object: label, id });
    return this.#withSession('generate key pair', async (session) => {
      const keys = await this.#pkcs11.C_GenerateKeyPairAsync(session, mechanism, publicTemplate, privateTemplate);
      const publicKey = this.#readPublicKey(session, keys.publicKey, location);
      this.#privateKeys.set(location, {
        handle: keys.privateKey,
        algorithm: publicKey.algorithm,
        signatureBytes: signatureLength(publicKey),
      });
      this.#options.logger?.info({ location, algorithm }, 'generated key pair in the HSM');
      return publicKey;
    });
  }

  async getKey(location: string): Promise<KeyHandle> {
    const id = this.#idOf(location);
    return this.#withSession('read public key', (session) => {
      const handle = this.#findObject(session, pkcs11js.CKO_PUBLIC_KEY, id);
      if (!handle) throw new NotFoundError(`no public key with id ${id.toString('hex')} on token "${this.tokenLabel}"`);
      return this.#readPublicKey(session, handle, location);
    });
  }

  /** Nothing leaves the token: keys the service must hold in memory are made in the software store. */
  async createExportableKey(label: string): Promise<KeyHandle> {
    throw new PolicyViolationError(`the HSM keeps every key on its token; ${label} must be made in the software key store`);
  }

  async unsealPrivateKeyPem(location: string): Promise<string> {
    throw new PolicyViolationError(`key ${location} is on the HSM token and never leaves it`);
  }

  async sign(location: string, hash: HashAlgorithm, data: Uint8Array): Promise<Uint8Array> {
    const id = this.#idOf(location);
    return this.#withSession('sign', async (session) => {
      let key = this.#privateKeys.get(location) ?? this.#lookUpPrivateKey(session, location, id);
      try {
        return await this.#signWith(session, key, hash, data);
      } catch (error) {
        // The object was deleted or recreated behind our back; look it up once more.
        if (!staleHandleCodes.has(codeOf(error) ?? -1)) throw error;
        this.#privateKeys.delete(location);
        key = this.#lookUpPrivateKey(session, location, id);
        return await this.#signWith(session, key, hash, data);
      }
    });
  }

  async createWrappingKey(label: string): Promise<string> {
    const id = randomBytes(16);
    const template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      // Data keys pass through it as GCM plaintext; it wraps nothing else and signs nothing.
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    const location = formatPkcs11Uri({ token: this.tokenLabel, object: label, id });
    return this.#withSession('generate wrapping key', (session) => {
      this.#secretKeys.set(location, this.#pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, template));
      this.#options.logger?.info({ location }, 'generated a wrapping key in the HSM');
      return location;
    });
  }

  async wrap(location: string, plaintext: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array> {
    const iv = randomBytes(gcmIvBytes);
    const sealed = await this.#withSecretKey('wrap', location, (session, key) => {
      this.#pkcs11.C_EncryptInit(session, gcmMechanism(iv, associatedData), key);
      return this.#pkcs11.C_Encrypt(session, Buffer.from(plaintext), Buffer.alloc(plaintext.byteLength + gcmTagBytes));
    });
    return new Uint8Array(Buffer.concat([iv, sealed]));
  }

  async unwrap(location: string, wrapped: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array> {
    const bytes = Buffer.from(wrapped);
    if (bytes.length < gcmIvBytes + gcmTagBytes) throw new SealedValueError('wrapped key is too short');
    const iv = bytes.subarray(0, gcmIvBytes);
    const plaintext = await this.#withSecretKey('unwrap', location, (session, key) => {
      this.#pkcs11.C_DecryptInit(session, gcmMechanism(iv, associatedData), key);
      try {
        return this.#pkcs11.C_Decrypt(session, bytes.subarray(gcmIvBytes), Buffer.alloc(bytes.length - gcmIvBytes));
      } catch (error) {
        // The key was found and the operation started: a failure now is the tag not verifying.
        if (invalidCiphertextCodes.has(codeOf(error) ?? -1)) {
          throw new SealedValueError(`wrapped key does not open under ${location}: altered, or wrapped under another key or for other data`);
        }
        throw error;
      }
    });
    return new Uint8Array(plaintext);
  }

  async #withSecretKey<T>(operation: string, location: string, work: (session: Handle, key: Handle) => T): Promise<T> {
    const id = this.#idOf(location);
    return this.#withSession(operation, (session) => {
      let key = this.#secretKeys.get(location);
      if (key === undefined) {
        key = this.#findObject(session, pkcs11js.CKO_SECRET_KEY, id);
        if (key === undefined) throw new NotFoundError(`no wrapping key with id ${id.toString('hex')} on token "${this.tokenLabel}"`);
        this.#secretKeys.set(location, key);
      }
      return work(session, key);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#privateKeys.clear();
    this.#secretKeys.clear();
    const sessions = await this.#pool.drain();
    const release = releaseModule(this.#options.module);
    try {
      // Login state belongs to the application, not the session: only the module's last user logs out.
      if (release.last && sessions.length > 0) ignoreErrors(() => this.#pkcs11.C_Logout(sessions[0]!));
      for (const session of sessions) ignoreErrors(() => this.#pkcs11.C_CloseSession(session));
    } finally {
      release.finalise();
    }
  }

  async #signWith(session: Handle, key: PrivateKeyEntry, hash: HashAlgorithm, data: Uint8Array): Promise<Uint8Array> {
    if (key.algorithm === 'P-256' || key.algorithm === 'P-384') {
      // CKM_ECDSA signs a digest; hashing here keeps us independent of which ECDSA-SHA*
      // combinations a given HSM happens to implement.
      const digest = createHash(hash === 'SHA-384' ? 'sha384' : 'sha256').update(data).digest();
      this.#pkcs11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key.handle);
      const raw = await this.#pkcs11.C_SignAsync(session, digest, Buffer.alloc(key.signatureBytes));
      return ecdsaSignatureToDer(raw);
    }
    const mechanism = hash === 'SHA-384' ? pkcs11js.CKM_SHA384_RSA_PKCS : pkcs11js.CKM_SHA256_RSA_PKCS;
    this.#pkcs11.C_SignInit(session, { mechanism }, key.handle);
    return new Uint8Array(await this.#pkcs11.C_SignAsync(session, Buffer.from(data), Buffer.alloc(key.signatureBytes)));
  }

  #lookUpPrivateKey(session: Handle, location: string, id: Buffer): PrivateKeyEntry {
    const handle = this.#findObject(session, pkcs11js.CKO_PRIVATE_KEY, id);
    if (!handle) throw new NotFoundError(`no private key with id ${id.toString('hex')} on token "${this.tokenLabel}"`);
    const publicHandle = this.#findObject(session, pkcs11js.CKO_PUBLIC_KEY, id);
    if (!publicHandle) throw new NotFoundError(`no public key with id ${id.toString('hex')} on token "${this.tokenLabel}"`);
    const publicKey = this.#readPublicKey(session, publicHandle, location);
    const entry = { handle, algorithm: publicKey.algorithm, signatureBytes: signatureLength(publicKey) };
    this.#privateKeys.set(location, entry);
    return entry;
  }

  #findObject(session: Handle, objectClass: number, id: Buffer): Handle | undefined {
    this.#pkcs11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: objectClass },
      { type: pkcs11js.CKA_ID, value: id },
    ]);
    try {
      return this.#pkcs11.C_FindObjects(session, 1)[0];
    } finally {
      this.#pkcs11.C_FindObjectsFinal(session);
    }
  }

  #readPublicKey(session: Handle, handle: Handle, location: string): KeyHandle {
    const [keyType] = this.#pkcs11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_KEY_TYPE }]);
    const type = readUnsignedLong(keyType!.value);

    if (type === pkcs11js.CKK_EC) {
      const [parameters, point] = this.#pkcs11.C_GetAttributeValue(session, handle, [
        { type: pkcs11js.CKA_EC_PARAMS },
        { type: pkcs11js.CKA_EC_POINT },
      ]);
      const curve = curveOfEcParameters(parameters!.value);
      if (!curve) throw new ValidationError(`key ${location} is on an unsupported curve`);
      const spki = ecSubjectPublicKeyInfo(curve, uncompressedPoint(curve, point!.value));
      return { location, algorithm: curve, publicKeySpki: spki };
    }

    if (type === pkcs11js.CKK_RSA) {
      const [modulus, exponent] = this.#pkcs11.C_GetAttributeValue(session, handle, [
        { type: pkcs11js.CKA_MODULUS },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT },
      ]);
      const bits = significantBits(modulus!.value);
      if (bits !== 2048 && bits !== 3072) throw new ValidationError(`key ${location} is RSA-${bits}, which is not supported`);
      return {
        location,
        algorithm: bits === 2048 ? 'RSA-2048' : 'RSA-3072',
        publicKeySpki: rsaSubjectPublicKeyInfo(modulus!.value, exponent!.value),
      };
    }

    throw new ValidationError(`key ${location} has unsupported PKCS#11 key type ${type}`);
  }

  #idOf(location: string): Buffer {
    const uri = parsePkcs11Uri(location);
    if (!uri?.id) throw new NotFoundError(`"${location}" is not a PKCS#11 key location`);
    if (uri.token !== undefined && uri.token !== this.tokenLabel) {
      throw new NotFoundError(`key ${location} is on token "${uri.token}", not on "${this.tokenLabel}"`);
    }
    return uri.id;
  }

  #openSession(): Handle {
    if (this.#closed) throw new DependencyUnavailableError('PKCS#11 key custody is closed');
    let session: Handle;
    try {
      session = this.#pkcs11.C_OpenSession(this.#slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    } catch (error) {
      throw new DependencyUnavailableError(`cannot open a session on token "${this.tokenLabel}": ${messageOf(error)}`, {
        cause: error,
      });
    }
    try {
      this.#pkcs11.C_Login(session, pkcs11js.CKU_USER, this.#options.pin);
    } catch (error) {
      // Login is per application: every session after the first finds it done already.
      if (codeOf(error) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
        ignoreErrors(() => this.#pkcs11.C_CloseSession(session));
        throw new DependencyUnavailableError(`cannot log in to token "${this.tokenLabel}": ${messageOf(error)}`, {
          cause: error,
        });
      }
    }
    return session;
  }

  /** Runs one operation on a session of its own; maps PKCS#11 failures to service errors. */
  async #withSession<T>(operation: string, work: (session: Handle) => T | Promise<T>): Promise<T> {
    if (this.#closed) throw new DependencyUnavailableError('PKCS#11 key custody is closed');
    try {
      return await this.#pool.use(work, (error) => brokenSessionCodes.has(codeOf(error) ?? -1));
    } catch (error) {
      const code = codeOf(error);
      if (code === undefined) throw error;
      const message = `HSM ${operation} failed on token "${this.tokenLabel}": ${messageOf(error)}`;
      if (unavailableCodes.has(code)) throw new DependencyUnavailableError(message, { cause: error });
      throw new Error(message, { cause: error });
    }
  }
}

/**
 * A PKCS#11 session runs one operation at a time (C_SignInit and C_Sign must not interleave with
 * another caller's), so each operation borrows a session of its own from a small pool.
 */
class SessionPool {
  readonly #idle: Handle[] = [];
  readonly #waiting: ((session: Handle | undefined) => void)[] = [];
  readonly #open: () => Handle;
  readonly #size: number;
  #count = 0;
  #draining = false;

  constructor(size: number, open: () => Handle) {
    this.#size = Math.max(1, size);
    this.#open = open;
  }

  async use<T>(work: (session: Handle) => T | Promise<T>, isBroken: (error: unknown) => boolean = () => false) {
    const session = await this.#acquire();
    let keep = true;
    try {
      return await work(session);
    } catch (error) {
      keep = !isBroken(error);
      throw error;
    } finally {
      this.#release(session, keep);
    }
  }

  /** Waits for every session to come back and hands them over for closing. */
  async drain(): Promise<Handle[]> {
    this.#draining = true;
    const sessions: Handle[] = [];
    while (this.#count > 0) {
      const session = this.#idle.pop() ?? (await new Promise<Handle | undefined>((resolve) => this.#waiting.push(resolve)));
      if (session) {
        sessions.push(session);
        this.#count -= 1;
      }
    }
    for (const waiter of this.#waiting.splice(0)) waiter(undefined);
    return sessions;
  }

  async #acquire(): Promise<Handle> {
    if (this.#draining) throw new DependencyUnavailableError('PKCS#11 key custody is closing');
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#count < this.#size) {
      this.#count += 1;
      try {
        return this.#open();
      } catch (error) {
        this.#count -= 1;
        throw error;
      }
    }
    const session = await new Promise<Handle | undefined>((resolve) => this.#waiting.push(resolve));
    if (!session) throw new DependencyUnavailableError('PKCS#11 key custody is closing');
    return session;
  }

  #release(session: Handle, keep: boolean) {
    if (!keep) {
      // Forget the broken session; the next caller opens a fresh one in its place.
      this.#count -= 1;
      const waiter = this.#waiting.shift();
      if (waiter) {
        if (this.#draining) return waiter(undefined);
        this.#count += 1;
        try {
          waiter(this.#open());
        } catch {
          this.#count -= 1;
          waiter(undefined);
        }
      }
      return;
    }
    const waiter = this.#waiting.shift();
    if (waiter) waiter(session);
    else this.#idle.push(session);
  }
}

function findSlot(pkcs11: pkcs11js.PKCS11, options: Pkcs11Options): { slot: Handle; tokenLabel: string } {
  let slots: Handle[];
  try {
    slots = pkcs11.C_GetSlotList(true);
  } catch (error) {
    throw new DependencyUnavailableError(`cannot list PKCS#11 slots: ${messageOf(error)}`, { cause: error });
  }
  const tokens = slots.map((slot) => ({ slot, tokenLabel: pkcs11.C_GetTokenInfo(slot).label.trim() }));
  if (options.tokenLabel !== undefined) {
    const found = tokens.find((token) => token.tokenLabel === options.tokenLabel);
    if (!found) {
      const present = tokens.map((token) => `"${token.tokenLabel}"`).join(', ') || 'none';
      throw new DependencyUnavailableError(`no PKCS#11 token labelled "${options.tokenLabel}" (present: ${present})`);
    }
    return found;
  }
  const index = options.slot ?? 0;
  const found = tokens[index];
  if (!found) throw new DependencyUnavailableError(`no PKCS#11 token in slot index ${index} (${tokens.length} present)`);
  return found;
}

/**
 * CKA_EC_POINT should be the DER OCTET STRING around the point (SoftHSM and most modules do
 * that), but some modules return the bare point. The length tells which, as both start with 0x04.
 */
function uncompressedPoint(curve: EcCurve, value: Buffer): Uint8Array {
  const pointLength = 1 + 2 * ecCurves[curve].fieldBytes;
  if (value.length === pointLength && value[0] === 0x04) return value;
  if (value[0] === 0x04 && value.length === pointLength + 2 && value[1] === pointLength) return value.subarray(2);
  throw new ValidationError(`unexpected CKA_EC_POINT encoding (${value.length} bytes) for ${curve}`);
}

function signatureLength(key: KeyHandle): number {
  switch (key.algorithm) {
    case 'P-256':
    case 'P-384':
      return 2 * ecCurves[key.algorithm].fieldBytes;
    case 'RSA-2048':
      return 256;
    case 'RSA-3072':
      return 384;
  }
}

function significantBits(bytes: Buffer): number {
  let index = 0;
  while (index < bytes.length && bytes[index] === 0) index += 1;
  if (index === bytes.length) return 0;
  return (bytes.length - index - 1) * 8 + (32 - Math.clz32(bytes[index]!));
}

/** CK_ULONG attributes come back in the platform's byte order and width. */
function readUnsignedLong(value: Buffer): number {
  if (value.length === 8) return Number(os.endianness() === 'LE' ? value.readBigUInt64LE() : value.readBigUInt64BE());
  return os.endianness() === 'LE' ? value.readUInt32LE() : value.readUInt32BE();
}

function codeOf(error: unknown): number | undefined {
  return error instanceof pkcs11js.Pkcs11Error ? error.code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function ignoreErrors(action: () => void) {
  try {
    action();
  } catch {
    // Best effort while shutting down.
  }
}
