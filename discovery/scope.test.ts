import { describe, expect, it } from 'vitest';
import { testDeviceNetworks } from '../test/support/device-networks';
import { isAddressInScope, parseScanScope, scanScopeSchema, sweepAddresses, type ScopeInterface } from './scope';

function errorsOf(input: unknown) {
  const result = parseScanScope(input);
  if (result.ok) throw new Error('expected the scope to be refused');
  return result.errors;
}

describe('scan scope', () => {
  it('accepts interfaces, CIDRs and ports and fills in the defaults', () => {
    const result = parseScanScope({ interfaces: ['eth0'], ranges: ['10.20.0.0/24', '10.20.1.7'], ports: [80, 443] });
    expect(result).toEqual({
      ok: true,
      scope: { interfaces: ['eth0'], ranges: ['10.20.0.0/24', '10.20.1.7'], ports: [80, 443], allowLoopback: false, maxAddressesPerSweep: 1024 },
    });
  });

  it('refuses a range larger than a /20 with an error on that range', () => {
    expect(errorsOf({ interfaces: ['eth0'], ranges: ['10.20.0.0/24', '10.0.0.0/16'], maxAddressesPerSweep: 4096 })).toEqual([
      { field: 'ranges.1', message: expect.stringMatching(/10\.0\.0\.0\/16 is larger than a \/20/) },
    ]);
  });

  it('refuses ranges that together exceed the addresses allowed per sweep', () => {
    expect(errorsOf({ interfaces: ['eth0'], ranges: ['10.1.0.0/20', '10.2.0.0/21'], maxAddressesPerSweep: 4096 })).toEqual([
      { field: 'ranges', message: expect.stringMatching(/6144 addresses, more than maxAddressesPerSweep \(4096\)/) },
    ]);
    expect(errorsOf({ interfaces: ['eth0'], maxAddressesPerSweep: 100_000 })[0]!.field).toBe('maxAddressesPerSweep');
  });

  it('refuses multicast, broadcast, reserved and "this network" ranges', () => {
    const errors = errorsOf({ interfaces: ['eth0'], ranges: ['239.255.255.250', '224.0.0.0/24', '255.255.255.255/32', '240.0.0.0/24', '0.0.0.0/24'] });
    expect(errors.map((error) => error.field)).toEqual(['ranges.0', 'ranges.1', 'ranges.2', 'ranges.3', 'ranges.4']);
    expect(errors[0]!.message).toMatch(/multicast/);
    expect(errors[2]!.message).toMatch(/broadcast/);
  });

  it('refuses loopback ranges and interfaces unless allowLoopback is set', () => {
    expect(errorsOf({ interfaces: ['lo'], ranges: ['127.0.0.0/24'] })).toEqual([
      { field: 'ranges.0', message: expect.stringMatching(/loopback; set allowLoopback/) },
      { field: 'interfaces.0', message: expect.stringMatching(/loopback; set allowLoopback/) },
    ]);
    expect(parseScanScope({ interfaces: ['lo'], ranges: ['127.0.0.0/24'], allowLoopback: true }).ok).toBe(true);
  });

  it('names each malformed field: CIDR syntax, interface names, ports, unknown keys, no interface', () => {
    const fields = errorsOf({ interfaces: ['eth0; rm -rf', 'this-name-is-far-too-long'], ranges: ['10.0.0.0/33', 'ten.0.0.0/8'], ports: [0, 80, 80], mystery: 1 }).map(
      (error) => error.field,
    );
    expect(fields).toEqual(expect.arrayContaining(['interfaces.0', 'interfaces.1', 'ports.0', '']));
    expect(errorsOf({ interfaces: [] })).toEqual([{ field: 'interfaces', message: 'name at least one interface' }]);
    expect(errorsOf({ interfaces: ['eth0'], ranges: ['10.0.0.0/33', 'ten.0.0.0/8'], ports: [80, 80] }).map((error) => error.field)).toEqual([
      'ranges.0',
      'ranges.1',
      'ports',
    ]);
  });

  it('sweeps host addresses only, skipping network and broadcast addresses', () => {
    const scope = scanScopeSchema.parse({ interfaces: ['eth0'], ranges: ['10.9.0.0/30', '10.9.1.0/24'], maxAddressesPerSweep: 260 });
    const addresses = [...sweepAddresses(scope, testDeviceNetworks)];
    expect(addresses).toHaveLength(256);
    expect(addresses.slice(0, 3)).toEqual(['10.9.0.1', '10.9.0.2', '10.9.1.1']);
    expect(addresses.at(-1)).toBe('10.9.1.254');
    const single = scanScopeSchema.parse({ interfaces: ['eth0'], ranges: ['10.9.0.7/32', '10.9.0.8/31'] });
    expect([...sweepAddresses(single, testDeviceNetworks)]).toEqual(['10.9.0.7', '10.9.0.8', '10.9.0.9']);
  });

  it('keeps answers from inside the ranges, or from the interfaces\' networks when no range is set', () => {
    const lan: ScopeInterface = { name: 'eth0', address: '10.5.0.1', network: { cidr: '10.5.0.0/24', first: 0x0a050000, last: 0x0a0500ff, prefixLength: 24 } };
    const ranged = scanScopeSchema.parse({ interfaces: ['eth0'], ranges: ['10.5.0.0/25'] });
    expect(isAddressInScope(ranged, '10.5.0.20', [lan])).toBe(true);
    expect(isAddressInScope(ranged, '10.5.0.200', [lan])).toBe(false);
    expect(isAddressInScope(ranged, '::ffff:10.5.0.20', [lan])).toBe(true);
    const unranged = scanScopeSchema.parse({ interfaces: ['eth0'] });
    expect(isAddressInScope(unranged, '10.5.0.200', [lan])).toBe(true);
    expect(isAddressInScope(unranged, '10.6.0.1', [lan])).toBe(false);
    expect(isAddressInScope(unranged, 'fe80::1', [lan])).toBe(false);
  });
});
