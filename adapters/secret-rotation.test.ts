import { describe, expect, it } from 'vitest';
import { memoryDeviceSecrets } from '../custody/device-secrets';
import { ConflictError } from '../foundation/errors';
import { pendingPurpose, rotateDeviceSecrets, type SecretPair } from './secret-rotation';

const pair = [
  { purpose: 'auth', bytes: 16 },
  { purpose: 'priv', bytes: 16 },
];
const octets = (fill: number) => new Uint8Array(16).fill(fill);

describe('rotating per-device secrets through a pending copy', () => {
  it('seals the new secrets before the device is changed, promotes them after, and forgets the pending copies last', async () => {
    const secrets = memoryDeviceSecrets(new Map([['auth', octets(1)], ['priv', octets(2)]]));
    let seen: SecretPair | undefined;
    await rotateDeviceSecrets(secrets, pair, 'keys', async (given) => {
      seen = given;
      // What the device is given is already in the vault when the device is changed.
      expect(secrets.store.get(pendingPurpose('auth'))).toEqual(given.next[0]);
    });
    expect(seen!.current).toEqual([octets(1), octets(2)]);
    expect(secrets.store.get('auth')).toEqual(seen!.next[0]);
    expect(secrets.store.get('priv')).toEqual(seen!.next[1]);
    expect([...secrets.store.keys()].sort()).toEqual(['auth', 'priv']);
  });

  it('keeps both the held and the pending secrets when the device change fails, and offers the same pending ones again', async () => {
    const secrets = memoryDeviceSecrets(new Map([['auth', octets(1)], ['priv', octets(2)]]));
    let first: SecretPair | undefined;
    await expect(
      rotateDeviceSecrets(secrets, pair, 'keys', async (given) => {
        first = given;
        throw new Error('the device went away');
      }),
    ).rejects.toThrow('the device went away');
    expect(secrets.store.get('auth')).toEqual(octets(1));
    await rotateDeviceSecrets(secrets, pair, 'keys', async (given) => expect(given.next).toEqual(first!.next));
    expect(secrets.store.get('auth')).toEqual(first!.next[0]);
  });

  it('finishes a promotion that stopped half-way, without making new secrets', async () => {
    // One secret promoted, the other not yet, both still pending: the crash fell between the writes.
    const secrets = memoryDeviceSecrets(
      new Map([['auth', octets(9)], ['priv', octets(2)], [pendingPurpose('auth'), octets(9)], [pendingPurpose('priv'), octets(8)]]),
    );
    await rotateDeviceSecrets(secrets, pair, 'keys', async (given) => expect(given.next).toEqual([octets(9), octets(8)]));
    expect(secrets.store.get('priv')).toEqual(octets(8));
  });

  it('makes new secrets when the pending copies are left over from a rotation that completed', async () => {
    const secrets = memoryDeviceSecrets(
      new Map([['auth', octets(9)], ['priv', octets(8)], [pendingPurpose('auth'), octets(9)], [pendingPurpose('priv'), octets(8)]]),
    );
    await rotateDeviceSecrets(secrets, pair, 'keys', async (given) => expect(given.next[0]).not.toEqual(octets(9)));
    expect(secrets.store.get('auth')).not.toEqual(octets(9));
  });

  it('refuses to rotate what was never provisioned', async () => {
    const secrets = memoryDeviceSecrets(new Map([['auth', octets(1)]]));
    await expect(rotateDeviceSecrets(secrets, pair, 'keys', async () => {})).rejects.toBeInstanceOf(ConflictError);
    expect(secrets.store.has(pendingPurpose('auth'))).toBe(false);
  });
});
