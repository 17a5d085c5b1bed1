/**
 * The HTTP API: thin operations over the provisioning service, the CA, the template catalog and
 * access control, each declared once (see operation.ts) and described at /api/v1/openapi.json.
 */
import express, { type Express } from 'express';
import { roleAllows } from '../access/roles';
import type { ApiKeyStore, BreakGlassUse } from '../access/api-keys';
import type { BearerTokenVerifier } from '../access/bearer-tokens';
import type { TemplateCatalog } from '../configuration/templates';
import type { CaHierarchy, CertificateAuthorityService } from '../pki/certificate-authority';
import type { CertificateInventory } from '../pki/certificate-inventory';
import type { AlertStore } from '../alerts/alert-store';
import type { BulkImporter } from '../bulk/bulk-import';
import type { BulkJobs } from '../bulk/bulk-jobs';
import type { AuditLog } from '../audit/audit-log';
import type { ApprovalPolicies } from '../provisioning/approval-policies';
import type { ProvisioningService } from '../provisioning/provisioning-service';
import type { DeviceRegistry } from '../registry/device-registry';
import { ForbiddenError, UnsupportedMediaTypeError } from '../foundation/errors';
import { codecOpenApiPaths, codecServerRouter, type TenantPayloadCodec } from './codec-server';
import { securityHeaders } from './security-headers';
import { pkiMountPath, pkiOpenApiPaths, pkiPublicationRouter } from './pki-publication';
import type { CrlPublisher } from '../pki/crl';
import type { OcspResponder } from '../pki/ocsp-responder';
import type { Logger } from '../foundation/logger';
import { createAuthenticator, type AuthenticationFailure } from './authentication';
import { openApiDocument } from './openapi';
import { methodNotAllowedHandler, mountOperations, operation, type AnyOperation, type OperationRecord } from './operation';
import { notFoundHandler, problemHandler } from './problem';
import { RateLimiter } from './rate-limit';
import { accessOperations } from './routes/access';
import { alertOperations } from './routes/alerts';
import { approvalOperations } from './routes/approvals';
import { bulkOperations } from './routes/bulk';
import { auditOperations } from './routes/audit';
import { certificateOperations } from './routes/certificates';
import { healthOperations, type HealthCheck } from './routes/health';
import { provisioningOperations } from './routes/provisioning';
import { templateOperations } from './routes/templates';
import { pagesMountPath, pagesOpenApiPaths, pagesRouter } from './pages';

/** Express's `trust proxy`: whose X-Forwarded-For names the client (rate limits, audit, throttles). */
export type TrustedProxies = boolean | number | string[];

export interface ApiDependencies {
  provisioning: ProvisioningService;
  protocols: string[];
  ca: CertificateAuthorityService & CaHierarchy;
  inventory: CertificateInventory;
  registry: DeviceRegistry;
  templates: TemplateCatalog;
  apiKeys: ApiKeyStore;
  approvals: ApprovalPolicies;
  audit: AuditLog;
  alerts: AlertStore;
  bearerTokens?: BearerTokenVerifier;
  onAuthenticationFailure(failure: AuthenticationFailure): Promise<void> | void;
  /** Alerts and audits each presentation of a break-glass key; without it such keys are refused. */
  onBreakGlassUse?(use: BreakGlassUse): Promise<void>;
  /** Puts every change made through the API, and every refused attempt, on record. */
  recordOperation?(entry: OperationRecord): Promise<void>;
  healthChecks: HealthCheck[];
  rateLimitPerMinute: number;
  /** Which proxies' X-Forwarded-For names the client address (Express's `trust proxy`); none when unset. */
  trustProxy?: TrustedProxies;
  /** Further operations (declared the same way) that other parts of the service contribute. */
  extraOperations?: AnyOperation[];
  bulk?: { importer: BulkImporter; jobs: BulkJobs; concurrentUploads: number };
  /** CRLs, CA certificates and the OCSP responder, served at the URLs certificates carry. */
  pki?: { crls: CrlPublisher; ocsp: OcspResponder };
  /** Temporal's remote codec protocol at /codec, for operators' Web UI and CLI to read history. */
  codec?: {
    codec: TenantPayloadCodec;
    allowedOrigins: string[];
    namespaces: string[];
    /**
     * The one tenant whose payloads the embedded dev server's Web UI (which cannot log in) may
     * decode from loopback without credentials; development only, never set in production.
     */
    uiDecodeTenant?: string;
  };
  version?: string;
  logger: Logger;
}

const jsonTypes = ['application/json', 'application/*+json'];

export function apiOperations(deps: ApiDependencies): AnyOperation[] {
  const operations: AnyOperation[] = [
    ...healthOperations(deps.healthChecks),
    ...provisioningOperations(deps.provisioning, deps.protocols),
    ...(deps.bulk ? bulkOperations(deps.bulk) : []),
    ...certificateOperations(deps.ca, deps.registry, deps.inventory, deps.audit),
    ...templateOperations(deps.templates),
    ...approvalOperations(deps.provisioning, deps.approvals),
    ...accessOperations(deps.apiKeys),
    ...auditOperations(deps.audit),
    ...alertOperations(deps.alerts),
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
        document ??= openApiDocument(
          operations,
          { version: deps.version ?? '0.1.0' },
          { ...(deps.codec ? codecOpenApiPaths : {}), ...(deps.pki ? pkiOpenApiPaths : {}), ...pagesOpenApiPaths },
        );
        res.json(document);
      },
    }),
  );
  return operations;
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

export function createApp(deps: ApiDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  // Client addresses key the per-address limits, throttles and audit records; only proxies named
  // here may say who the client is.
  app.set('trust proxy', deps.trustProxy ?? false);
  app.set('query parser', 'simple');
  app.use((_req, res, next) => {
    res.set(securityHeaders);
    next();
  });
  // The wizard and the enrolment page: static, public, and only ever calling this API.
  app.use(pagesMountPath, pagesRouter());
  // What the CA publishes is public: relying parties fetch CRLs and ask OCSP without credentials.
  if (deps.pki) {
    app.use(pkiMountPath, pkiPublicationRouter({ ca: deps.ca, crls: deps.pki.crls, ocsp: deps.pki.ocsp, logger: deps.logger }));
  }
  const authenticate = createAuthenticator({
    apiKeys: deps.apiKeys,
    bearerTokens: deps.bearerTokens,
    onFailure: deps.onAuthenticationFailure,
    onBreakGlassUse: deps.onBreakGlassUse,
  });
  if (deps.codec) {
    const { allowedOrigins, uiDecodeTenant } = deps.codec;
    app.use(
      '/codec',
      codecServerRouter({
        codec: deps.codec.codec,
        allowedOrigins,
        namespaces: deps.codec.namespaces,
        logger: deps.logger,
        async authorise(req, { operation }) {
          const origin = req.get('origin');
          // Decoding only, never encoding: sealing lets a caller forge inputs the workers trust.
          const asUi = operation === 'decode' && !req.get('authorization') && origin && allowedOrigins.includes(origin);
          if (uiDecodeTenant && asUi && isLoopback(req.socket.remoteAddress)) return { tenantId: uiDecodeTenant };
          const principal = await authenticate(req);
          if (!roleAllows(principal.role, 'history:decode')) {
            throw new ForbiddenError(`the ${principal.role} role may not read workflow history`);
          }
          return { tenantId: principal.tenantId };
        },
      }),
    );
  }

  app.use(express.json({ limit: '1mb', type: jsonTypes }));
  app.use((req, _res, next) => {
    const hasBody = ['POST', 'PUT', 'PATCH'].includes(req.method) && Number(req.get('content-length') ?? 0) > 0;
    // JSON everywhere; file uploads are multipart and read by the operation that takes them.
    if (hasBody && !req.is([...jsonTypes, 'multipart/form-data'])) {
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
  const operations = apiOperations(deps);
  mountOperations(app, operations, {
    authenticate,
    limit: (key) => limiter.take(key),
    record: deps.recordOperation,
  });

  app.use(methodNotAllowedHandler(operations));
  app.use(notFoundHandler);
  app.use(problemHandler(deps.logger));
  return app;
}
