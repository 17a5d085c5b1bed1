import { describe, expect, it } from 'vitest';
import { normaliseMacAddress } from './mac-address';

describe('MAC address normalisation', () => {
  it.each(['AA:BB:CC:DD:EE:0F', 'aa-bb-cc-dd-ee-0f', 'aabb.ccdd.ee0f', 'AABBCCDDEE0F'])('normalises %s', (mac) => {
    expect(normaliseMacAddress(mac)).toBe('aa:bb:cc:dd:ee:0f');
  });

  it.each(['aa:bb:cc:dd:ee', 'aa:bb-cc:dd:ee:ff', 'gg:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff:00'])('rejects %s', (mac) => {
    expect(normaliseMacAddress(mac)).toBeUndefined();
  });
});
