/**
 * IP addresses as iPAddress GeneralNames carry them (4 or 16 octets) and as text, in one canonical
 * form (RFC 5952 for IPv6) so that equal addresses always compare equal.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The octets of an IPv4 or IPv6 address (zone index ignored), or undefined when it is neither. */
export function ipAddressBytes(text: string): Uint8Array | undefined {
  const address = text.replace(/%.*$/, '');
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  if (!isIPv6(address)) return undefined;

  let words: number[];
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const parse = (part: string | undefined): number[] => {
    if (!part) return [];
    return part.split(':').flatMap((group) => {
      if (!group.includes('.')) return [parseInt(group, 16)];
      const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const first = parse(head);
  if (tail === undefined) {
    words = first;
  } else {
    const last = parse(tail);
    words = [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  }
  const bytes = new Uint8Array(16);
  words.forEach((word, index) => {
    bytes[index * 2] = word >> 8;
    bytes[index * 2 + 1] = word & 0xff;
  });
  return bytes;
}

/** Text of 4 or 16 address octets: dotted quad, or RFC 5952 compressed lower-case IPv6. */
export function formatIpAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new Error(`an IP address has 4 or 16 octets, not ${bytes.length}`);
  const words = Array.from({ length: 8 }, (_, index) => (bytes[index * 2]! << 8) | bytes[index * 2 + 1]!);

  // The longest run of two or more zero words (the first of equal runs) becomes "::".
  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8; ) {
    if (words[start] !== 0) {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && words[end] === 0) end += 1;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = (list: number[]) => list.map((word) => word.toString(16)).join(':');
  if (bestLength < 2) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/** Canonical text of an address, or undefined when `text` is not an IP address. */
export function canonicalIpAddress(text: string): string | undefined {
  const bytes = ipAddressBytes(text);
  return bytes && formatIpAddress(bytes);
}
