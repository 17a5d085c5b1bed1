/**
 * Encryption of every Temporal payload (workflow and activity inputs, results, signals, queries),
 * so device credentials and configuration never sit in plaintext in Temporal's database or its Web
 * UI. Each payload is the whole original Payload, protobuf-encoded and sealed with AES-256-GCM.
 *
 * Payloads are sealed per tenant: the key is derived (HKDF) from the active payload key for the
 * tenant whose work the payload belongs to, and its id, `<payload key id>/<tenant>`, travels in the
 * clear in the metadata. Whose work it is comes from the serialization context Temporal gives
 * every codec call: the workflow id, which for a tenant's work is `<kind>:<tenant>:...` (see
 * `tenantOfWorkflowId`). Work of no tenant (alert evaluation, CRL publication, CA backups) is
 * sealed for the service itself (`_service`). A leaked tenant key opens that tenant's history only;
 * the codec endpoint decodes for a caller only the payloads of the caller's tenant.
 *
 * Keys rotate: encoding always uses the active payload key, decoding any key still in the keyring.
 * History written before payloads were sealed per tenant names a payload key alone and is opened
 * with it by the service itself (workers replaying, status queries), never for a codec caller.
 */
import { fileURLToPath } from 'node:url';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { DataConverter, Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import proto from '@temporalio/proto';
import { ConfigurationError } from '../foundation/errors';

// A CommonJS module: its namespaces are only reachable through the default export under Node's ESM.
const ProtoPayload = proto.temporal.api.common.v1.Payload;

export const encryptedEncoding = 'binary/encrypted';
export const payloadCipher = 'AES-256-GCM';
export const metadataKeys = {
  encoding: 'encoding',
  keyId: 'encryption-key-id',
  cipher: 'encryption-cipher',
} as const;

/** The key derived from the key-encryption key when no payload keys are configured. */
export const derivedPayloadKeyId = 'kek-derived-1';

/** Whose payloads belong to no tenant: the service's own work. Tenant ids start with a letter or digit. */
export const servicePayloadScope = '_service';

const keyLength = 32;
const ivLength = 12;
const tagLength = 16;
const keyIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const tenantPattern = '[A-Za-z0-9][A-Za-z0-9._-]{0,63}?';
const derivationSalt = Buffer.from('device-provisioning/temporal-payload-key/v1', 'utf8');
const scopeDerivationSalt = Buffer.from('device-provisioning/temporal-payload-key/per-tenant/v1', 'utf8');
const associatedDataLabel = 'device-provisioning/temporal-payload/v1\0';
const scopeSeparator = '/';

/**
 * The tenant whose work a workflow id names: `<kind>:<tenant>` followed by `:` and more, by the
 * end, or by the `-<RFC 3339 time>` a schedule appends to the id of each run it starts.
 */
const tenantWorkflowId = new RegExp(`^[a-z][a-z-]*:(${tenantPattern})(?::|$|-\\d{4}-\\d\\d-\\d\\dT)`);

export function tenantOfWorkflowId(workflowId: string): string | undefined {
  return tenantWorkflowId.exec(workflowId)?.[1];
}

/** Whose payloads these are: the tenant the workflow (or the activity's workflow) works for. */
export function payloadScopeOf(context: SerializationContext | undefined): string {
  const tenant = context?.workflowId !== undefined ? tenantOfWorkflowId(context.workflowId) : undefined;
  return tenant ?? servicePayloadScope;
}

export interface PayloadKeyring {
  /** Encrypts every new payload. */
  activeKeyId: string;
  /** Every key that may still be needed to read history: the active one and those it replaced. */
  keys: ReadonlyMap<string, Uint8Array>;
}

/** A payload that cannot be decrypted; its message names the key id, never key material. */
export class PayloadDecryptionError extends Error {
  override name = 'PayloadDecryptionError';
}

export class EncryptionCodec implements PayloadCodec {
  readonly activeKeyId: string;
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #scopedKeys = new Map<string, Buffer>();

  constructor(keyring: PayloadKeyring) {
    const keys = new Map<string, Buffer>();
    for (const [id, key] of keyring.keys) {
      checkKeyId(id, 'payload key id');
      if (key.byteLength !== keyLength) {
        throw new ConfigurationError(`payload key "${id}" must be ${keyLength} bytes, got ${key.byteLength}`);
      }
      keys.set(id, Buffer.from(key));
    }
    if (!keys.has(keyring.activeKeyId)) {
      throw new ConfigurationError(`the active payload key "${keyring.activeKeyId}" is not in the keyring`);
    }
    this.activeKeyId = keyring.activeKeyId;
    this.#keys = keys;
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /** Seals each payload for the tenant the context names, or for the service. */
  async encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.encodeFor(payloadScopeOf(context), payloads);
  }

  /**
   * Opens every payload, whoever it was sealed for: the service's own workers and clients read
   * all of history. Payloads that are not encrypted pass unchanged: history written before
   * encryption stays readable.
   */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => (isEncrypted(payload) ? this.#decrypt(payload) : payload));
  }

  /** Seals each payload for `scope` (a tenant id, or the service's own scope). */
  async encodeFor(scope: string, payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.#encrypt(payload, scope));
  }

  /**
   * Opens only the payloads sealed for `tenantId`; every other payload (another tenant's, the
   * service's own, or history sealed before payloads were per tenant) passes unchanged.
   */
  async decodeFor(tenantId: string, payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) =>
      isEncrypted(payload) && scopeOfKeyId(keyIdOf(payload)) === tenantId ? this.#decrypt(payload) : payload,
    );
  }

  /** data = iv(12) | ciphertext | tag(16) */
  #encrypt(payload: Payload, scope: string): Payload {
    const keyId = `${this.activeKeyId}${scopeSeparator}${scope}`;
    const iv = randomBytes(ivLength);
    const cipher = createCipheriv('aes-256-gcm', this.#scopedKey(this.activeKeyId, scope), iv, { authTagLength: tagLength });
    cipher.setAAD(associatedData(keyId));
    const plaintext = ProtoPayload.encode(payload).finish();
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return {
      metadata: {
        [metadataKeys.encoding]: utf8(encryptedEncoding),
        [metadataKeys.keyId]: utf8(keyId),
        [metadataKeys.cipher]: utf8(payloadCipher),
      },
      data: Buffer.concat([iv, ciphertext, cipher.getAuthTag()]),
    };
  }

  #decrypt(payload: Payload): Payload {
    const keyId = keyIdOf(payload);
    const cipherBytes = payload.metadata?.[metadataKeys.cipher];
    if (cipherBytes && text(cipherBytes) !== payloadCipher) {
      throw new PayloadDecryptionError(`encrypted payload uses an unsupported cipher "${text(cipherBytes)}"`);
    }
    const [baseKeyId] = keyId.split(scopeSeparator, 1) as [string];
    const scope = scopeOfKeyId(keyId);
    if (!this.#keys.has(baseKeyId)) {
      throw new PayloadDecryptionError(
        `payload was encrypted under key id "${keyId}", whose key "${baseKeyId}" is not in the keyring (known: ${this.keyIds.join(', ')})`,
      );
    }
    // Payloads sealed before they were per tenant name the payload key itself.
    const key = scope === undefined ? this.#keys.get(baseKeyId)! : this.#scopedKey(baseKeyId, scope);
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < ivLength + tagLength) {
      throw new PayloadDecryptionError(`encrypted payload under key id "${keyId}" is too short`);
    }
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, ivLength), { authTagLength: tagLength });
    decipher.setAAD(associatedData(keyId));
    decipher.setAuthTag(data.subarray(data.length - tagLength));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(data.subarray(ivLength, data.length - tagLength)), decipher.final()]);
    } catch {
      // The crypto error says nothing useful and the cause is never worth keeping near key material.
      throw new PayloadDecryptionError(`encrypted payload under key id "${keyId}" failed authentication (altered or wrong key)`);
    }
    const original = ProtoPayload.decode(plaintext);
    return {
      metadata: { ...original.metadata },
      data: original.data,
      ...(original.externalPayloads.length > 0 ? { externalPayloads: original.externalPayloads } : {}),
    };
  }

  /** One key per payload key and scope; knowing one tells nothing of the payload key or another scope's. */
  #scopedKey(baseKeyId: string, scope: string): Buffer {
    const cacheKey = `${baseKeyId}${scopeSeparator}${scope}`;
    let key = this.#scopedKeys.get(cacheKey);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.#keys.get(baseKeyId)!, scopeDerivationSalt, utf8(scope), keyLength));
      this.#scopedKeys.set(cacheKey, key);
    }
    return key;
  }
}

function keyIdOf(payload: Payload): string {
  const keyIdBytes = payload.metadata?.[metadataKeys.keyId];
  if (!keyIdBytes) throw new PayloadDecryptionError('encrypted payload has no encryption-key-id');
  return text(keyIdBytes);
}

/** The tenant (or the service) a key id seals for; undefined for a payload key used directly, as before per-tenant keys. */
function scopeOfKeyId(keyId: string): string | undefined {
  const separator = keyId.indexOf(scopeSeparator);
  return separator < 0 ? undefined : keyId.slice(separator + 1);
}

/** The data converter that Client, Worker and test environments of one deployment must all share. */
/** Where the failure converter that encodes failure messages and stack traces lives (see that file). */
export const failureConverterPath = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

export function payloadDataConverter(keyring: PayloadKeyring): DataConverter {
  return { payloadCodecs: [new EncryptionCodec(keyring)], failureConverterPath };
}

export function isEncrypted(payload: Payload): boolean {
  const encoding = payload.metadata?.[metadataKeys.encoding];
  return encoding !== undefined && encoding !== null && text(encoding) === encryptedEncoding;
}

/**
 * Builds the keyring from configuration.
 * - `payloadKeys` (PAYLOAD_ENCRYPTION_KEYS): `id:base64,id:base64`, each a 32-byte key; the first is
 *   active. Production sets it; rotating means putting a new key first and keeping the old ones
 *   until no history that needs them is retained.
 * - `keyEncryptionKey`: the service's KEK (32 raw bytes). Without configured keys, the payload key is
 *   derived from it (HKDF-SHA256), so a fresh clone runs with no extra setting and every process of
 *   one deployment derives the same key. With configured keys it still provides the derived key for
 *   decoding, so history written under the default stays readable.
 */
export function loadPayloadKeyring(options: { payloadKeys?: string; keyEncryptionKey?: Uint8Array }): PayloadKeyring {
  const derived =
    options.keyEncryptionKey !== undefined
      ? new Map([[derivedPayloadKeyId, derivePayloadKey(options.keyEncryptionKey, derivedPayloadKeyId)]])
      : new Map<string, Uint8Array>();
  const configured = options.payloadKeys?.trim() ? parsePayloadKeys(options.payloadKeys) : undefined;
  if (configured) {
    return { activeKeyId: configured.activeKeyId, keys: new Map([...configured.keys, ...derived]) };
  }
  if (derived.size === 0) {
    throw new ConfigurationError('PAYLOAD_ENCRYPTION_KEYS: required when no key-encryption key is available');
  }
  return { activeKeyId: derivedPayloadKeyId, keys: derived };
}

/** `id:base64,id:base64`; the first entry is the active key. */
export function parsePayloadKeys(value: string): PayloadKeyring {
  const keys = new Map<string, Uint8Array>();
  const entries = value.split(',').map((entry) => entry.trim()).filter(Boolean);
  if (entries.length === 0) throw new ConfigurationError('PAYLOAD_ENCRYPTION_KEYS: no keys given');
  for (const [index, entry] of entries.entries()) {
    const separator = entry.indexOf(':');
    if (separator < 0) {
      throw new ConfigurationError(`PAYLOAD_ENCRYPTION_KEYS: entry ${index + 1} is not of the form id:base64-key`);
    }
    const id = entry.slice(0, separator).trim();
    checkKeyId(id, `PAYLOAD_ENCRYPTION_KEYS: entry ${index + 1}`);
    if (id === derivedPayloadKeyId) {
      throw new ConfigurationError(`PAYLOAD_ENCRYPTION_KEYS: "${id}" is reserved for the key derived from the key-encryption key`);
    }
    if (keys.has(id)) throw new ConfigurationError(`PAYLOAD_ENCRYPTION_KEYS: key id "${id}" appears twice`);
    keys.set(id, decodeKey(entry.slice(separator + 1).trim(), `PAYLOAD_ENCRYPTION_KEYS: key "${id}"`));
  }
  return { activeKeyId: keys.keys().next().value!, keys };
}

/** Domain-separated from every other use of the KEK by the salt; one key per id. */
export function derivePayloadKey(keyEncryptionKey: Uint8Array, keyId: string): Buffer {
  if (keyEncryptionKey.byteLength !== keyLength) {
    throw new ConfigurationError(`key-encryption key must be ${keyLength} bytes, got ${keyEncryptionKey.byteLength}`);
  }
  return Buffer.from(hkdfSync('sha256', keyEncryptionKey, derivationSalt, utf8(keyId), keyLength));
}

/** Binds the key id into the tag, so relabelling a payload with another id cannot go unnoticed. */
function associatedData(keyId: string): Buffer {
  return Buffer.from(`${associatedDataLabel}${keyId}`, 'utf8');
}

function checkKeyId(id: string, source: string): void {
  if (!keyIdPattern.test(id)) {
    throw new ConfigurationError(`${source}: key id must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

function decodeKey(encoded: string, source: string): Buffer {
  const key = Buffer.from(encoded, 'base64');
  // Buffer.from silently skips characters that are not base64; re-encoding catches that.
  if (key.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '') || key.length !== keyLength) {
    throw new ConfigurationError(`${source}: must be the base64 encoding of exactly ${keyLength} bytes`);
  }
  return key;
}

function utf8(value: string): Uint8Array {
  return Buffer.from(value, 'utf8');
}

function text(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
