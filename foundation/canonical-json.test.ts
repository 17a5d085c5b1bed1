import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ValidationError } from './errors';
import { canonicalHash, canonicalJson } from './canonical-json';

describe('canonicalJson', () => {
  it('sorts object members at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [{ d: true, c: null }], 'a-': { z: 'x', y: [] } })).toBe(
      '{"a":[{"c":null,"d":true}],"a-":{"y":[],"z":"x"},"b":1}',
    );
  });

  it('gives the same text for the same data whatever order its members were written in', () => {
    const one = { hostname: 'cam-1', ntp: { servers: ['a', 'b'] }, management: { httpEnabled: false, passwordLogin: true } };
    const other = { management: { passwordLogin: true, httpEnabled: false }, ntp: { servers: ['a', 'b'] }, hostname: 'cam-1' };
    expect(canonicalJson(one)).toBe(canonicalJson(other));
    expect(canonicalHash(one)).toBe(canonicalHash(other));
  });

  it('keeps array order, since the order of list settings matters', () => {
    expect(canonicalJson({ servers: ['b', 'a'] })).not.toBe(canonicalJson({ servers: ['a', 'b'] }));
  });

  it('orders member names by UTF-16 code units, as RFC 8785 does', () => {
    // U+20AC (euro) sorts before U+1F600 (a surrogate pair starting 0xD83D) by code units, but
    // after it by code points; capitals sort before lower case; "10" before "9".
    expect(canonicalJson({ '\u{1F600}': 1, '\u20AC': 2, a: 3, B: 4, '9': 5, '10': 6 })).toBe(
      '{"10":6,"9":5,"B":4,"a":3,"\u20AC":2,"\u{1F600}":1}',
    );
  });

  it('writes numbers and strings the way JSON.stringify does (RFC 8785 serialisation)', () => {
    expect(canonicalJson([1.0, -0, 1e21, 0.000001, 1e-7, 123456789012345680000, 'tab\there', 'quote"\\', '\u0001', 'é'])).toBe(
      '[1,0,1e+21,0.000001,1e-7,123456789012345680000,"tab\\there","quote\\"\\\\","\\u0001","é"]',
    );
  });

  it('leaves out members whose value is undefined, as JSON does', () => {
    expect(canonicalJson({ a: 1, syslog: undefined })).toBe('{"a":1}');
  });

  it('hashes as SHA-256 over the UTF-8 of the canonical text', () => {
    const settings = { site: 'Zürich', version: 2 };
    expect(canonicalHash(settings)).toBe(createHash('sha256').update(Buffer.from('{"site":"Zürich","version":2}', 'utf8')).digest('hex'));
  });

  it.each([
    ['NaN', { a: Number.NaN }, '$.a'],
    ['Infinity', { a: [1, Number.POSITIVE_INFINITY] }, '$.a[1]'],
    ['a bigint', { a: 1n }, '$.a'],
    ['a date', { when: new Date(0) }, '$.when'],
    ['a map', { m: new Map() }, '$.m'],
    ['a function', { f: () => 1 }, '$.f'],
    ['undefined in an array', { list: [1, undefined] }, '$.list[1]'],
    ['an unpaired surrogate', { s: 'bad\uD800' }, '$.s'],
  ])('refuses %s rather than writing something JSON cannot carry faithfully', (_, value, field) => {
    const error = (() => {
      try {
        canonicalJson(value);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).fields[0]?.field).toBe(field);
  });

  it('refuses cycles but accepts the same object in two places', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/refers back to itself/);
  });

  it('accepts objects without a prototype, as parsers of untrusted input make them', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { b: 2, a: 1 });
    expect(canonicalJson(bare)).toBe('{"a":1,"b":2}');
  });
});
