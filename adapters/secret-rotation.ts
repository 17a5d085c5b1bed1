/**
 * Rotating per-device management secrets so that a crash at any moment loses neither the old
 * secret nor the new one. The new secret is sealed first, under a pending purpose, and only then
 * given to the device; it replaces the old one in the vault once a fresh login with it worked, and
 * the pending copy is forgotten last. A retry after a crash finds the same pending secret and asks
 * the device which of the two it holds, so it never locks us out and never rotates twice.
 */
import { ConflictError } from '../foundation/errors';
import type { DeviceSecrets } from '../custody/device-secrets';

/** Where a secret waits while the device is being changed to it. */
export function pendingPurpose(purpose: string): string {
  return `${purpose}:pending`;
}

export interface RotatedSecret {
  purpose: string;
  /** Length of a new random secret, in octets. */
  bytes: number;
}

/** The secrets of one rotation, in the order of `RotatedSecret`s given. */
export interface SecretPair {
  current: Uint8Array[];
  next: Uint8Array[];
}

/**
 * Rotates `rotated` together. `change` must make the device take `next` (unless it already holds
 * them: a retry after a crash) and prove them by a fresh login before it returns; anything it
 * throws leaves the vault holding both, so the next attempt can tell which the device has.
 */
export async function rotateDeviceSecrets(
  secrets: DeviceSecrets,
  rotated: readonly RotatedSecret[],
  what: string,
  change: (pair: SecretPair) => Promise<void>,
): Promise<void> {
  const current: Uint8Array[] = [];
  for (const { purpose } of rotated) {
    const held = await secrets.read(purpose);
    if (!held) throw new ConflictError(`no ${what} is held for this device: it was not provisioned with one, so there is nothing to rotate`);
    current.push(held);
  }
  let next = await pendingSecrets(secrets, rotated);
  if (next.every((value, i) => sameOctets(value, current[i]!))) {
    // A rotation promoted its secrets but stopped before forgetting the pending copies.
    for (const { purpose } of rotated) await secrets.remove(pendingPurpose(purpose));
    next = await pendingSecrets(secrets, rotated);
  }
  await change({ current, next });
  for (const [i, { purpose }] of rotated.entries()) await secrets.write(purpose, next[i]!);
  for (const { purpose } of rotated) await secrets.remove(pendingPurpose(purpose));
}

async function pendingSecrets(secrets: DeviceSecrets, rotated: readonly RotatedSecret[]): Promise<Uint8Array[]> {
  const next: Uint8Array[] = [];
  for (const { purpose, bytes } of rotated) next.push(await secrets.ensure(pendingPurpose(purpose), bytes));
  return next;
}

function sameOctets(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((octet, i) => octet === b[i]);
}
