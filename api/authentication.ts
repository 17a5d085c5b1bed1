/**
 * Who is calling: an API key or a bearer token from the identity provider, both presented as
 * `Authorization: Bearer ...`. Failures are reported to `onFailure` (the audit trail) and answered
 * 401 without saying which part was wrong. A break-glass key is taken only with a reason in
 * `X-Break-Glass-Reason`, and each use is reported to `onBreakGlassUse` (alert and audit) before the
 * request goes on; without that report it is not taken at all.
 */
import type { Request } from 'express';
import { breakGlassReasonHeader, looksLikeApiKey, maximumBreakGlassReasonLength, type ApiKeyStore, type BreakGlassUse } from '../access/api-keys';
import type { BearerTokenVerifier } from '../access/bearer-tokens';
import type { Principal } from '../access/roles';
import { ForbiddenError, UnauthenticatedError } from '../foundation/errors';
import { unstorableTextProblems } from '../foundation/validation';

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
  onBreakGlassUse?(use: BreakGlassUse): Promise<void>;
}): (req: Request) => Promise<Principal> {
  const breakGlass = async (req: Request, principal: Principal): Promise<Principal> => {
    const use = { principal, method: req.method, path: req.originalUrl, address: req.ip };
    const refuse = async (reason: string): Promise<never> => {
      await deps.onBreakGlassUse?.({ ...use, outcome: 'refused', reason });
      throw new ForbiddenError(`a break-glass key is accepted only with a reason: ${reason}`, {
        fields: [{ field: `header:${breakGlassReasonHeader}`, reason }],
      });
    };
    if (!deps.onBreakGlassUse) return refuse('this endpoint cannot record break-glass use');
    const stated = req.get(breakGlassReasonHeader)?.trim() ?? '';
    if (stated === '') return refuse(`state why in ${breakGlassReasonHeader}`);
    if (stated.length > maximumBreakGlassReasonLength) return refuse(`must be at most ${maximumBreakGlassReasonLength} characters`);
    if (unstorableTextProblems(stated).length > 0) return refuse('must be plain text');
    await deps.onBreakGlassUse({ ...use, outcome: 'accepted', reason: stated });
    return { ...principal, breakGlassReason: stated };
  };

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
      const principal = (await deps.apiKeys.authenticate(token)) ?? (await fail('unknown, revoked or expired API key', 'api-key'));
      return principal.breakGlass ? breakGlass(req, principal) : principal;
    }
    if (!deps.bearerTokens) return fail('bearer tokens are not configured', 'bearer-token');
    const { principal, reason } = await deps.bearerTokens.verify(token);
    return principal ?? fail(reason ?? 'invalid token', 'bearer-token');
  };
}
