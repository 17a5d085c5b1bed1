/**
 * Key locations as PKCS#11 URIs (RFC 7512), e.g. `pkcs11:token=ca;object=root-ca;id=%01%02`, so
 * they mean the same to us as to p11tool, OpenSSL's pkcs11 provider and the HSM vendor's tools.
 */

export interface Pkcs11Uri {
  token?: string;
  object?: string;
  id?: Buffer;
}

export function formatPkcs11Uri(uri: { token: string; object: string; id: Uint8Array }): string {
  const id = Array.from(uri.id, (byte) => `%${byte.toString(16).padStart(2, '0')}`).join('');
  return `pkcs11:token=${encode(uri.token)};object=${encode(uri.object)};id=${id}`;
}

/** Undefined when `value` is not a PKCS#11 URI; unknown attributes and the query part are ignored. */
export function parsePkcs11Uri(value: string): Pkcs11Uri | undefined {
  if (!value.startsWith('pkcs11:')) return undefined;
  const path = value.slice('pkcs11:'.length).split('?')[0]!;
  const uri: Pkcs11Uri = {};
  for (const attribute of path.split(';')) {
    if (attribute === '') continue;
    const separator = attribute.indexOf('=');
    if (separator < 0) return undefined;
    const name = attribute.slice(0, separator);
    const bytes = decode(attribute.slice(separator + 1));
    if (!bytes) return undefined;
    if (name === 'token') uri.token = bytes.toString('utf8');
    else if (name === 'object') uri.object = bytes.toString('utf8');
    else if (name === 'id') uri.id = bytes;
  }
  return uri;
}

/** Percent-encodes everything but RFC 3986 unreserved characters, which is always valid here. */
function encode(text: string): string {
  return Array.from(Buffer.from(text, 'utf8'), (byte) => {
    const char = String.fromCharCode(byte);
    return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).padStart(2, '0')}`;
  }).join('');
}

function decode(text: string): Buffer | undefined {
  if (/%(?![0-9a-fA-F]{2})/.test(text)) return undefined;
  // Every % now starts a valid escape, so the split's odd parts are exactly the escapes.
  const parts = text.split(/(%[0-9a-fA-F]{2})/);
  return Buffer.concat(
    parts.map((part, index) => (index % 2 === 1 ? Buffer.of(parseInt(part.slice(1), 16)) : Buffer.from(part, 'utf8'))),
  );
}
