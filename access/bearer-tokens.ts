/**
 * Bearer tokens (JWT) from the organisation's identity provider, verified against its configured
 * public key, issuer and audience. The token names the tenant and the role; nothing else is trusted.
 */
import { importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import { z } from 'zod';
import { roles, type Principal } from './roles';

export interface BearerTokenSettings {
  issuer: string;
  audience: string;
  /** PEM SubjectPublicKeyInfo of the issuer's signing key. */
  publicKeyPem: string;
  algorithms: string[];
}

const claims = z.object({
  sub: z.string().min(1),
  tenant: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
  role: z.enum(roles),
  name: z.string().optional(),
});

export class BearerTokenVerifier {
  private key?: Promise<CryptoKey>;

  constructor(private readonly settings: BearerTokenSettings) {}

  /** The principal, or undefined with the reason when the token is not acceptable. */
  async verify(token: string): Promise<{ principal?: Principal; reason?: string }> {
    this.key ??= importKeyForAny(this.settings.publicKeyPem, this.settings.algorithms);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.key, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        algorithms: this.settings.algorithms,
        clockTolerance: 30,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      return { reason: (error as { code?: string }).code ?? 'invalid token' };
    }
    const parsed = claims.safeParse(payload);
    if (!parsed.success) return { reason: 'token lacks a valid sub, tenant or role claim' };
    const { sub, tenant, role, name } = parsed.data;
    return { principal: { subject: `user:${sub}`, credential: `user:${sub}`, kind: 'user', tenantId: tenant, role, name: name ?? sub } };
  }
}

async function importKeyForAny(pem: string, algorithms: string[]): Promise<CryptoKey> {
  let lastError: unknown;
  // The key type decides which of the allowed algorithms it can be imported for.
  for (const algorithm of algorithms) {
    try {
      return await importSPKI(pem, algorithm);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`the bearer token public key suits none of ${algorithms.join(', ')}`, { cause: lastError });
}
