/**
 * MAC addresses as the registry keeps them: lower-case `aa:bb:cc:dd:ee:ff`, whichever spelling a
 * person or a device used (colons, hyphens, Cisco dots or bare hex).
 */
const spellings = [
  /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i,
  /^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i,
  /^[0-9a-f]{12}$/i,
];

/** Undefined when `value` is not a 48-bit MAC address. */
export function normaliseMacAddress(value: string): string | undefined {
  const text = value.trim();
  if (!spellings.some((spelling) => spelling.test(text))) return undefined;
  return text.replace(/[^0-9a-f]/gi, '').toLowerCase().match(/../g)!.join(':');
}
