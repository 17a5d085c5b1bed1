/**
 * The one canonical serialisation of configuration data: what configuration hashes and
 * configuration signatures are computed over, so the service, the device and a later read-back
 * all arrive at the same bytes for the same settings.
 *
 * The rules are those of the JSON Canonicalization Scheme (RFC 8785) for the values settings can
 * hold: object members sorted by the UTF-16 code units of their names, no whitespace, strings and
 * numbers as ECMAScript's JSON.stringify writes them. Anything JSON cannot carry faithfully (NaN,
 * Infinity, bigint, dates, class instances, lone surrogates, cycles) is refused rather than quietly
 * turned into something else, because a signature over a lossy rendering would prove nothing.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from './errors';

export function canonicalJson(value: unknown): string {
  return serialise(value, '$', new Set());
}

/** SHA-256 (lower-case hex) of the canonical JSON of `value`, as configuration hashes are given. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function serialise(value: unknown, path: string, ancestors: Set<object>): string {
  switch (typeof value) {
    case 'string':
      if (loneSurrogate.test(value)) refuse(path, 'is a string with an unpaired surrogate, which is not Unicode text');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) refuse(path, `is ${value}, which JSON has no number for`);
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      if (value === null) return 'null';
      break;
    default:
      refuse(path, value === undefined ? 'is undefined, which JSON cannot carry' : `is a ${typeof value}, which JSON cannot carry`);
  }

  const container = value as object;
  if (ancestors.has(container)) refuse(path, 'refers back to itself');
  ancestors.add(container);
  try {
    if (Array.isArray(container)) {
      return `[${container.map((item, index) => serialise(item, `${path}[${index}]`, ancestors)).join(',')}]`;
    }
    const prototype = Object.getPrototypeOf(container);
    if (prototype !== Object.prototype && prototype !== null) {
      refuse(path, `is a ${container.constructor?.name ?? 'non-plain object'}, not a plain JSON object`);
    }
    const members = Object.entries(container)
      // As in JSON.stringify: a member without a value is no member.
      .filter(([, member]) => member !== undefined)
      // Plain `<` on strings compares UTF-16 code units, the order RFC 8785 section 3.2.3 asks for.
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${members.map(([name, member]) => `${serialise(name, `${path}.${name}`, ancestors)}:${serialise(member, `${path}.${name}`, ancestors)}`).join(',')}}`;
  } finally {
    ancestors.delete(container);
  }
}

function refuse(path: string, reason: string): never {
  throw new ValidationError(`${path} cannot be put into canonical JSON: it ${reason}`, {
    fields: [{ field: path, reason }],
  });
}
