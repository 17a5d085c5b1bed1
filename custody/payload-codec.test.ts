import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter, type Payload, type SerializationContext } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { driftCheckPrefix, driftScheduleId } from '../configuration/drift-policies';
import { discoveryScheduleId } from '../discovery/sweep-schedule';
import { sweepWorkflowPrefix } from '../discovery/sweeps';
import { ConfigurationError } from '../foundation/errors';
import { bulkWorkflowId } from '../contracts/bulk';
import { renewalWorkflowId, rotationWorkflowId } from '../contracts/certificates';
import { rolloutWorkflowId } from '../contracts/configuration';
import { provisioningWorkflowId } from '../contracts/provisioning';
import { zeroTouchWorkflowId } from '../contracts/zero-touch';
import {
  derivedPayloadKeyId,
  EncryptionCodec,
  loadPayloadKeyring,
  parsePayloadKeys,
  PayloadDecryptionError,
  tenantOfWorkflowId,
  type PayloadKeyring,
} from './payload-codec';

const marker = 'device-password-7f3c9a';
const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');

function keyring(...ids: string[]): PayloadKeyring & { keys: Map<string, Uint8Array> } {
  return { activeKeyId: ids[0], keys: new Map(ids.map((id) => [id, randomBytes(32)])) };
}

function original(): Payload {
  return defaultPayloadConverter.toPayload({ username: 'admin', password: marker });
}

async function encodeOne(codec: EncryptionCodec, payload: Payload): Promise<Payload> {
  const encoded = await codec.encode([payload]);
  expect(encoded).toHaveLength(1);
  return encoded[0];
}

describe('EncryptionCodec', () => {
  it('round-trips a payload, metadata included, with nothing of it readable in the encrypted form', async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const encrypted = await encodeOne(codec, original());

    expect(text(encrypted.metadata?.encoding)).toBe('binary/encrypted');
    expect(text(encrypted.metadata?.['encryption-key-id'])).toBe('k1/_service');
    expect(text(encrypted.metadata?.['encryption-cipher'])).toBe('AES-256-GCM');
    const stored = Buffer.from(encrypted.data!);
    expect(stored.includes(marker)).toBe(false);
    expect(stored.includes('json/plain')).toBe(false);

    const [decoded] = await codec.decode([encrypted]);
    expect(text(decoded.metadata?.encoding)).toBe('json/plain');
    expect(defaultPayloadConverter.fromPayload(decoded)).toEqual({ username: 'admin', password: marker });
  });

  it('encodes one payload per input, each under a fresh IV', async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const encoded = await codec.encode([original(), original(), original()]);
    expect(encoded).toHaveLength(3);
    expect(new Set(encoded.map((p) => Buffer.from(p.data!).toString('hex'))).size).toBe(3);
    expect(await codec.encode([])).toEqual([]);
  });

  it('refuses a payload whose ciphertext, IV or tag was altered', async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const encrypted = await encodeOne(codec, original());
    for (const position of [0, 20, encrypted.data!.length - 1]) {
      const data = Buffer.from(encrypted.data!);
      data[position] ^= 0x01;
      await expect(codec.decode([{ ...encrypted, data }])).rejects.toThrow(/k1.*failed authentication/);
    }
  });

  it('refuses a payload relabelled with another key id of the keyring', async () => {
    const ring = keyring('k1', 'k2');
    const codec = new EncryptionCodec(ring);
    const encrypted = await encodeOne(codec, original());
    const relabelled = { ...encrypted, metadata: { ...encrypted.metadata, 'encryption-key-id': Buffer.from('k2/_service') } };
    await expect(codec.decode([relabelled])).rejects.toBeInstanceOf(PayloadDecryptionError);
  });

  it('after rotation decodes payloads written under the old key and writes new ones under the new key', async () => {
    const before = keyring('k1');
    const underK1 = await encodeOne(new EncryptionCodec(before), original());

    const k2 = randomBytes(32);
    const rotated = new EncryptionCodec({ activeKeyId: 'k2', keys: new Map([['k2', k2], ...before.keys]) });
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([underK1]))[0])).toMatchObject({ password: marker });

    const underK2 = await encodeOne(rotated, original());
    expect(text(underK2.metadata?.['encryption-key-id'])).toBe('k2/_service');
    // Only k2 is needed for what is written after the rotation.
    const k2Only = new EncryptionCodec({ activeKeyId: 'k2', keys: new Map([['k2', k2]]) });
    expect(defaultPayloadConverter.fromPayload((await k2Only.decode([underK2]))[0])).toMatchObject({ password: marker });
  });

  it('names an unknown key id in its error and never any key material', async () => {
    const old = keyring('k1');
    const encrypted = await encodeOne(new EncryptionCodec(old), original());
    const current = keyring('k2');
    const error = await new EncryptionCodec(current).decode([encrypted]).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PayloadDecryptionError);
    const message = String((error as Error).message) + String((error as Error).stack);
    expect(message).toContain('"k1"');
    for (const key of [...old.keys.values(), ...current.keys.values()]) {
      const bytes = Buffer.from(key);
      for (const encoding of ['base64', 'base64url', 'hex'] as const) {
        expect(message).not.toContain(bytes.toString(encoding));
      }
    }
  });

  it('passes payloads that are not encrypted through unchanged, so earlier history stays readable', async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const plain = original();
    const binary: Payload = { metadata: { encoding: Buffer.from('binary/plain') }, data: Buffer.from([1, 2, 3]) };
    const empty: Payload = {};
    const decoded = await codec.decode([plain, binary, empty]);
    expect(decoded[0]).toBe(plain);
    expect(decoded[1]).toBe(binary);
    expect(decoded[2]).toBe(empty);
  });

  it('refuses a keyring whose active key is missing or whose keys are not 32 bytes', () => {
    expect(() => new EncryptionCodec({ activeKeyId: 'k9', keys: new Map([['k1', randomBytes(32)]]) })).toThrow(
      ConfigurationError,
    );
    expect(() => new EncryptionCodec({ activeKeyId: 'k1', keys: new Map([['k1', randomBytes(16)]]) })).toThrow(
      /k1.*32 bytes/,
    );
  });
});

describe('per-tenant payload keys', () => {
  const workflow = (workflowId: string): SerializationContext => ({ type: 'workflow', namespace: 'default', workflowId });

  it('reads the tenant from every workflow id the service gives a tenant\'s work, schedules\' runs included', () => {
    const ids = [
      provisioningWorkflowId('acme-east', 'CAM-1'),
      renewalWorkflowId('acme-east', 'CAM-1'),
      zeroTouchWorkflowId('acme-east', 'CAM-1'),
      bulkWorkflowId('acme-east', 'job-1'),
      rolloutWorkflowId('acme-east', 'r-1.rollback'),
      rotationWorkflowId('acme-east', 'rot-1'),
      `${sweepWorkflowPrefix('acme-east')}hq:1`,
      `${driftCheckPrefix('acme-east')}c-1`,
      discoveryScheduleId('acme-east', 'hq'),
      `${discoveryScheduleId('acme-east', 'hq')}-2026-05-01T10:00:00Z`,
      driftScheduleId('acme-east'),
      `${driftScheduleId('acme-east')}-2026-05-01T10:00:00Z`,
    ];
    for (const id of ids) expect(tenantOfWorkflowId(id), id).toBe('acme-east');
    for (const id of ['alert-evaluation-2026-05-01T10:00:00Z', 'crl-publication', 'ca-backup-2026-05-01T10:00:00Z', 'encrypted-history-1']) {
      expect(tenantOfWorkflowId(id), id).toBeUndefined();
    }
  });

  it("seals a workflow's payloads, and its activities', under its tenant's key; the service's own work under the service's", async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const keyIdOf = async (context?: SerializationContext) => text((await codec.encode([original()], context))[0].metadata?.['encryption-key-id']);
    expect(await keyIdOf(workflow('provision:acme:CAM-1'))).toBe('k1/acme');
    expect(await keyIdOf({ type: 'activity', namespace: 'default', workflowId: 'provision:globex:CAM-1', isLocal: false })).toBe('k1/globex');
    expect(await keyIdOf(workflow('alert-evaluation-2026-05-01T10:00:00Z'))).toBe('k1/_service');
    expect(await keyIdOf()).toBe('k1/_service');
  });

  it("opens for a tenant only that tenant's payloads, leaving other tenants', the service's and older history encoded", async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const [ofAcme] = await codec.encode([original()], workflow('provision:acme:CAM-1'));
    const [ofGlobex] = await codec.encode([original()], workflow('provision:globex:CAM-1'));
    const [ofService] = await codec.encode([original()]);
    const plain = original();
    const [acme, globex, service, unencrypted] = await codec.decodeFor('acme', [ofAcme, ofGlobex, ofService, plain]);
    expect(defaultPayloadConverter.fromPayload(acme)).toMatchObject({ password: marker });
    expect([globex, service, unencrypted]).toEqual([ofGlobex, ofService, plain]);
    // The service itself reads all of it.
    for (const opened of await codec.decode([ofAcme, ofGlobex, ofService])) {
      expect(defaultPayloadConverter.fromPayload(opened)).toMatchObject({ password: marker });
    }
  });

  it("refuses a tenant's payload relabelled as another tenant's: each tenant has a key of its own", async () => {
    const codec = new EncryptionCodec(keyring('k1'));
    const [ofGlobex] = await codec.encode([original()], workflow('provision:globex:CAM-1'));
    const relabelled = { ...ofGlobex, metadata: { ...ofGlobex.metadata, 'encryption-key-id': Buffer.from('k1/acme') } };
    await expect(codec.decodeFor('acme', [relabelled])).rejects.toThrow(/k1\/acme.*failed authentication/);
  });
});

describe('loadPayloadKeyring', () => {
  const kek = randomBytes(32);

  it('with nothing configured derives the same key from the same key-encryption key in every process', async () => {
    const first = loadPayloadKeyring({ keyEncryptionKey: kek });
    const second = loadPayloadKeyring({ keyEncryptionKey: Buffer.from(kek) });
    expect(first.activeKeyId).toBe(derivedPayloadKeyId);
    expect(Buffer.from(first.keys.get(derivedPayloadKeyId)!).equals(Buffer.from(second.keys.get(derivedPayloadKeyId)!))).toBe(true);
    // Domain-separated: never the KEK itself, and another KEK gives another key.
    expect(Buffer.from(first.keys.get(derivedPayloadKeyId)!).equals(kek)).toBe(false);
    const other = loadPayloadKeyring({ keyEncryptionKey: randomBytes(32) });
    expect(Buffer.from(other.keys.get(derivedPayloadKeyId)!).equals(Buffer.from(first.keys.get(derivedPayloadKeyId)!))).toBe(false);

    const encrypted = await encodeOne(new EncryptionCodec(first), original());
    expect(defaultPayloadConverter.fromPayload((await new EncryptionCodec(second).decode([encrypted]))[0])).toMatchObject({
      password: marker,
    });
  });

  it('uses the first configured key as the active one and keeps the derived key for reading older history', async () => {
    const k2 = randomBytes(32).toString('base64');
    const k1 = randomBytes(32).toString('base64');
    const underDefault = await encodeOne(new EncryptionCodec(loadPayloadKeyring({ keyEncryptionKey: kek })), original());

    const ring = loadPayloadKeyring({ payloadKeys: ` k2:${k2} , k1:${k1}`, keyEncryptionKey: kek });
    expect(ring.activeKeyId).toBe('k2');
    expect([...ring.keys.keys()]).toEqual(['k2', 'k1', derivedPayloadKeyId]);
    const codec = new EncryptionCodec(ring);
    expect(defaultPayloadConverter.fromPayload((await codec.decode([underDefault]))[0])).toMatchObject({ password: marker });
  });

  it('rejects malformed key lists without echoing the key material', () => {
    const key = randomBytes(32).toString('base64');
    const attempts = [
      `k1${key}`, // no separator
      `k1:${key.slice(0, -4)}`, // too short
      `k1:${key}!`, // not base64
      `k1:${key},k1:${key}`, // duplicate id
      `bad id:${key}`,
      `${derivedPayloadKeyId}:${key}`,
    ];
    for (const payloadKeys of attempts) {
      const error = (() => {
        try {
          parsePayloadKeys(payloadKeys);
        } catch (e) {
          return e as Error;
        }
      })();
      expect(error, payloadKeys).toBeInstanceOf(ConfigurationError);
      expect(error!.message).not.toContain(key.slice(0, 16));
    }
    expect(() => loadPayloadKeyring({})).toThrow(/PAYLOAD_ENCRYPTION_KEYS/);
  });
});
