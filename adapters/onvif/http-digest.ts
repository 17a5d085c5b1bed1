/**
 * HTTP Digest access authentication (RFC 7616), the fallback ONVIF devices use when they turn
 * WS-Security away: they answer 401 with a `WWW-Authenticate: Digest` challenge.
 */
import { createHash, randomBytes } from 'node:crypto';

export interface DigestChallenge {
  realm: string;
  nonce: string;
  opaque?: string;
  algorithm: 'MD5' | 'SHA-256';
  qop?: 'auth';
}

/** The first Digest challenge we can answer among `WWW-Authenticate` values, if any. */
export function parseDigestChallenge(headers: string | string[] | undefined): DigestChallenge | undefined {
  for (const header of [headers ?? []].flat()) {
    // A header may hold several challenges; each starts with its scheme name.
    for (const challenge of header.split(/,?\s*(?=\b(?:Digest|Basic|Bearer|Negotiate)\s)/i)) {
      const match = /^Digest\s+(.*)$/is.exec(challenge.trim());
      if (!match) continue;
      const params = authParams(match[1]);
      const algorithm = (params.algorithm ?? 'MD5').toUpperCase();
      if ((algorithm !== 'MD5' && algorithm !== 'SHA-256') || !params.realm || !params.nonce) continue;
      const qops = (params.qop ?? '').split(',').map((q) => q.trim().toLowerCase());
      if (params.qop && !qops.includes('auth')) continue;
      return {
        realm: params.realm,
        nonce: params.nonce,
        ...(params.opaque ? { opaque: params.opaque } : {}),
        algorithm,
        ...(params.qop ? { qop: 'auth' as const } : {}),
      };
    }
  }
  return undefined;
}

export function digestAuthorization(
  challenge: DigestChallenge,
  request: { method: string; uri: string; username: string; password: string },
  nonceCount = 1,
  clientNonce = randomBytes(12).toString('hex'),
): string {
  const hash = (text: string) => createHash(challenge.algorithm === 'MD5' ? 'md5' : 'sha256').update(text, 'utf8').digest('hex');
  const ha1 = hash(`${request.username}:${challenge.realm}:${request.password}`);
  const ha2 = hash(`${request.method}:${request.uri}`);
  const nc = nonceCount.toString(16).padStart(8, '0');
  const response = challenge.qop
    ? hash(`${ha1}:${challenge.nonce}:${nc}:${clientNonce}:${challenge.qop}:${ha2}`)
    : hash(`${ha1}:${challenge.nonce}:${ha2}`);
  const fields = [
    `username=${quoted(request.username)}`,
    `realm=${quoted(challenge.realm)}`,
    `nonce=${quoted(challenge.nonce)}`,
    `uri=${quoted(request.uri)}`,
    `algorithm=${challenge.algorithm}`,
    `response="${response}"`,
    ...(challenge.opaque ? [`opaque=${quoted(challenge.opaque)}`] : []),
    ...(challenge.qop ? [`qop=${challenge.qop}`, `nc=${nc}`, `cnonce="${clientNonce}"`] : []),
  ];
  return `Digest ${fields.join(', ')}`;
}

/** `key=value` / `key="quoted value"` pairs of a challenge or credentials header. */
export function authParams(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  const pattern = /([a-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/gi;
  for (const match of text.matchAll(pattern)) {
    params[match[1].toLowerCase()] = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : match[3];
  }
  return params;
}

function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
