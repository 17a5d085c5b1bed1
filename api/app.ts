/**
 * The HTTP API: thin operations over the provisioning service, the CA, the template catalog and
 * access control, each declared once (see operation.ts) and described at /api/v1/openapi.json.
 */
import express, { type Express, type Router } from 'express';
import type { ApiKeyStore } from '../access/api-keys';
import type { BearerTokenVerifier } from '../access/bearer-tokens';
import type { TemplateCatalog } from '../configuration/templates';
import type { CertificateAuthority } from '../pki/certificate-authority';
import type { ProvisioningService } from '../provisioning/provisioning-service';
import type { DeviceRegistry } from '../registry/device-registry';
import { UnsupportedMediaTypeError } from '../service/errors';
import type { Logger } from '../service/logger';
import { createAuthenticator, type AuthenticationFailure } from './authentication';
import { openApiDocument } from './openapi';
import { mountOperations, operation, type AnyOperation } from './operation';
import { notFoundHandler, problemHandler } from './problem';
import { RateLimiter } from './rate-limit';
import { accessOperations } from './routes/access';
import { certificateOperations } from './routes/certificates';
import { healthOperations, type HealthCheck } from './routes/health';
import { provisioningOperations } from './routes/provisioning';
import { templateOperations } from './routes/templates';

export interface ApiDependencies {
  provisioning: ProvisioningService;
  protocols: string[];
  ca: CertificateAuthority;
  registry: DeviceRegistry;
  templates: TemplateCatalog;
  apiKeys: ApiKeyStore;
  bearerTokens?: BearerTokenVerifier;
  onAuthenticationFailure(failure: AuthenticationFailure): Promise<void> | void;
  healthChecks: HealthCheck[];
  rateLimitPerMinute: number;
  /** Further operations (declared the same way) that other parts of the service contribute. */
  extraOperations?: AnyOperation[];
  /** Routers with their own protocol (e.g. the payload codec), mounted as they are. */
  extraRouters?: Array<{ path: string; router: Router }>;
  version?: string;
  logger: Logger;
}

const jsonTypes = ['application/json', 'application/*+json'];

export function apiOperations(deps: ApiDependencies): AnyOperation[] {
  const operations: AnyOperation[] = [
    ...healthOperations(deps.healthChecks),
    ...provisioningOperations(deps.provisioning, deps.protocols),
    ...certificateOperations(deps.ca, deps.registry),
    ...templateOperations(deps.templates),
    ...accessOperations(deps.apiKeys),
    ...(deps.extraOperations ?? []),
  ];
  let document: Record<string, unknown> | undefined;
  operations.push(
    operation({
      operationId: 'openApiDocument',
      method: 'get',
      path: '/api/v1/openapi.json',
      summary: 'This API described in OpenAPI 3.1',
      tag: 'operations',
      permission: 'public',
      responses: { 200: { description: 'The OpenAPI document', contentType: 'application/json' } },
      handle({ res }) {
        document ??= openApiDocument(operations, { version: deps.version ?? '0.1.0' });
        res.json(document);
      },
    }),
  );
  return operations;
}

export function createApp(deps: ApiDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use((_req, res, next) => {
    res.set({
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-store',
      'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
      'Referrer-Policy': 'no-referrer',
      'Strict-Transport-Security': 'max-age=63072000; includeSubDomains',
      'Cross-Origin-Resource-Policy': 'same-origin',
    });
    next();
  });
  for (const { path, router } of deps.extraRouters ?? []) app.use(path, router);

  app.use(express.json({ limit: '1mb', type: jsonTypes }));
  app.use((req, _res, next) => {
    const hasBody = ['POST', 'PUT', 'PATCH'].includes(req.method) && Number(req.get('content-length') ?? 0) > 0;
    if (hasBody && !req.is(jsonTypes)) {
      next(
        new UnsupportedMediaTypeError('the request body must be JSON', {
          fields: [{ field: 'header:Content-Type', reason: 'must be application/json' }],
        }),
      );
      return;
    }
    next();
  });

  const limiter = new RateLimiter({ perMinute: deps.rateLimitPerMinute });
  mountOperations(app, apiOperations(deps), {
    authenticate: createAuthenticator({
      apiKeys: deps.apiKeys,
      bearerTokens: deps.bearerTokens,
      onFailure: deps.onAuthenticationFailure,
    }),
    limit: (key) => limiter.take(key),
  });

  app.use(notFoundHandler);
  app.use(problemHandler(deps.logger));
  return app;
}
