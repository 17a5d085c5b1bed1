/**
 * PEM (RFC 7468) to DER and back, and certificate fingerprints.
 */
import { createHash } from 'node:crypto';

export interface PemBlock {
  label: string;
  der: Uint8Array;
}

export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const base64 = Buffer.from(der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const blockPattern = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order; text around the blocks (explanatory text) is ignored. */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(blockPattern)) {
    const body = match[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) continue;
    blocks.push({ label: match[1]!, der: new Uint8Array(Buffer.from(body, 'base64')) });
  }
  return blocks;
}

/** The DER of the first block with one of `labels`, or undefined when there is none. */
export function fromPem(text: string, labels: readonly string[]): Uint8Array | undefined {
  return pemBlocks(text).find((block) => labels.includes(block.label))?.der;
}

/** SHA-256 over the DER, lower-case hex: what devices and the API use to pin a certificate. */
export function fingerprintOf(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}
