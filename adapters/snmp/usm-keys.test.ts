import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSnmpTool, startSnmpd, type RunningSnmpd } from '../../scripts/simulators/snmp-agent';
import {
  decodeKeyChange,
  encodeKeyChange,
  localizedKeyFromPassphrase,
  localizeKey,
  passphraseToKey,
  sha256Aes128Keys,
} from './usm-keys';

const rfcEngineId = Buffer.from('000000000000000000000002', 'hex');

describe('USM password-to-key', () => {
  it('derives the RFC 3414 A.3.2 SHA-1 vector for "maplesyrup"', () => {
    const ku = passphraseToKey('sha1', 'maplesyrup');
    expect(ku.toString('hex')).toBe('9fb5cc0381497b3793528939ff788d5d79145211');
    expect(localizeKey('sha1', ku, rfcEngineId).toString('hex')).toBe('6695febc9288e36282235fc7151f128497b38f3f');
  });

  it('localizes SHA-256 keys to 32 octets and truncates the AES-128 privacy key to 16', () => {
    const keys = sha256Aes128Keys('maplesyrup', 'maplesyrup', rfcEngineId);
    expect(keys.authKey).toHaveLength(32);
    expect(keys.privKey).toEqual(localizedKeyFromPassphrase('sha256', 'maplesyrup', rfcEngineId).subarray(0, 16));
  });
});

describe('USM KeyChange', () => {
  const oldKey = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const newKey = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex');
  const random = Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex');

  it('encodes a key no longer than one digest as random || (H(old || random) XOR new), per RFC 3414 section 5', () => {
    const digest = createHash('sha256').update(oldKey).update(random).digest();
    const delta = Buffer.from(newKey.map((octet, i) => octet ^ digest[i]));
    expect(encodeKeyChange('sha256', oldKey, newKey, random)).toEqual(Buffer.concat([random, delta]));
  });

  it('chains digests for keys longer than one digest (a 32-octet key under SHA-1)', () => {
    const old32 = Buffer.alloc(32, 0xa5);
    const new32 = Buffer.alloc(32, 0x3c);
    const random32 = Buffer.alloc(32, 0x01);
    const first = createHash('sha1').update(old32).update(random32).digest();
    const second = createHash('sha1').update(first).update(random32).digest();
    const chain = Buffer.concat([first, second]).subarray(0, 32);
    const delta = Buffer.from(new32.map((octet, i) => octet ^ chain[i]));
    expect(encodeKeyChange('sha1', old32, new32, random32)).toEqual(Buffer.concat([random32, delta]));
    expect(decodeKeyChange('sha1', old32, Buffer.concat([random32, delta]))).toEqual(new32);
  });

  it('decodes back to the new key only with the old key', () => {
    const keyChange = encodeKeyChange('sha256', oldKey, newKey);
    expect(decodeKeyChange('sha256', oldKey, keyChange)).toEqual(newKey);
    expect(decodeKeyChange('sha256', Buffer.alloc(16), keyChange)).not.toEqual(newKey);
  });

  it('uses fresh random octets each time, so two KeyChanges for the same keys differ', () => {
    expect(encodeKeyChange('sha256', oldKey, newKey)).not.toEqual(encodeKeyChange('sha256', oldKey, newKey));
  });
});

describe('KeyChange compared with snmpusm', () => {
  // An auth-only admin, so the tool's datagrams are readable in its packet dump.
  const clerk = { userName: 'clerkadmin', authPassphrase: 'clerk-admin-pass', privPassphrase: 'unused-priv-pass' };
  let snmpd: RunningSnmpd;

  beforeAll(async () => {
    snmpd = await startSnmpd({
      sysDescr: 'KeyChange reference',
      sysObjectID: '1.3.6.1.4.1.8072.3.2.10',
      admin: { userName: 'provadmin', authPassphrase: 'factory-auth-1', privPassphrase: 'factory-priv-1' },
      extraConfig: [`createUser ${clerk.userName} SHA-256 ${clerk.authPassphrase}`, `rwuser ${clerk.userName} auth`, 'rwuser clerkclone auth'],
    });
  });

  afterAll(async () => {
    await snmpd?.close();
  });

  it('decodes the KeyChange snmpusm sends to the key of the new passphrase, and re-encodes it bit for bit', () => {
    const auth = ['-v3', '-l', 'authNoPriv', '-u', clerk.userName, '-a', 'SHA-256', '-A', clerk.authPassphrase, snmpd.address];
    const created = runSnmpTool('snmpusm', [...auth, 'create', 'clerkclone', clerk.userName]);
    expect(created.status, created.stderr).toBe(0);

    const changed = runSnmpTool('snmpusm', ['-d', ...auth, '-Ca', 'passwd', clerk.authPassphrase, 'new-clone-pass', 'clerkclone']);
    expect(changed.status, changed.stderr).toBe(0);
    const sent = sentKeyChange(changed.stdout + changed.stderr);

    const engineId = Buffer.from(
      runSnmpTool('snmpget', [...auth, '-Oqv', '-Ox', '1.3.6.1.6.3.10.2.1.1.0']).stdout.replace(/[^0-9a-f]/gi, ''),
      'hex',
    );
    const oldKey = localizedKeyFromPassphrase('sha256', clerk.authPassphrase, engineId);
    const newKey = localizedKeyFromPassphrase('sha256', 'new-clone-pass', engineId);
    expect(decodeKeyChange('sha256', oldKey, sent)).toEqual(newKey);
    expect(encodeKeyChange('sha256', oldKey, newKey, sent.subarray(0, 32))).toEqual(sent);

    const read = runSnmpTool('snmpget', ['-v3', '-l', 'authNoPriv', '-u', 'clerkclone', '-a', 'SHA-256', '-A', 'new-clone-pass', snmpd.address, '1.3.6.1.2.1.1.1.0']);
    expect(read.stdout).toContain('KeyChange reference');
  });
});

/** The usmUserAuthKeyChange value in the first SetRequest of an `snmpusm -d` packet dump. */
function sentKeyChange(dump: string): Buffer {
  const sending = dump.split(/\n(?=Sending|Received)/).filter((block) => block.startsWith('Sending'));
  for (const block of sending) {
    const hex = block
      .split('\n')
      .slice(1)
      .map((line) => line.replace(/^\d{4}: /, '').slice(0, 52))
      .join('')
      .replace(/[^0-9A-Fa-f]/g, '')
      .toLowerCase();
    // usmUserAuthKeyChange column: 1.3.6.1.6.3.15.1.2.2.1.6, BER-encoded.
    const column = hex.indexOf('2b060106030f0102020106');
    if (column < 0) continue;
    const value = hex.indexOf('0440', column);
    if (value >= 0) return Buffer.from(hex.slice(value + 4, value + 4 + 128), 'hex');
  }
  throw new Error('no usmUserAuthKeyChange in the snmpusm packet dump');
}
