/**
 * Who is calling: an API key or a bearer token from the identity provider, both presented as
 * `Authorization: Bearer ...`. Failures are reported to `onFailure` (the audit trail) and answered
 * 401 without saying which part was wrong.
 */
import type { Request } from 'express';
import { looksLikeApiKey, type ApiKeyStore } from '../access/api-keys';
import type { BearerTokenVerifier } from '../access/bearer-tokens';
import type { Principal } from '../access/roles';
import { UnauthenticatedError } from '../foundation/errors';

export interface AuthenticationFailure {
  reason: string;
  method: 'api-key' | 'bearer-token' | 'none';
  address?: string;
  path: string;
}

export function createAuthenticator(deps: {
  apiKeys: ApiKeyStore;
  bearerTokens?: BearerTokenVerifier;
  onFailure(failure: AuthenticationFailure): Promise<void> | void;
}): (req: Request) => Promise<Principal> {
  return async (req) => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    const fail = async (reason: string, method: AuthenticationFailure['method']): Promise<never> => {
      await deps.onFailure({ reason, method, address: req.ip, path: req.originalUrl });
      throw new UnauthenticatedError('valid credentials are required: Authorization: Bearer <API key or token>');
    };
    if (!match) return fail(header ? 'malformed Authorization header' : 'no credentials', 'none');
    const token = match[1];
    if (looksLikeApiKey(token)) {
      return (await deps.apiKeys.authenticate(token)) ?? fail('unknown, revoked or expired API key', 'api-key');
    }
    if (!deps.bearerTokens) return fail('bearer tokens are not configured', 'bearer-token');
    const { principal, reason } = await deps.bearerTokens.verify(token);
    return principal ?? fail(reason ?? 'invalid token', 'bearer-token');
  };
}
