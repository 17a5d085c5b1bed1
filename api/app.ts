/**
 * The HTTP API: thin routes over the provisioning service, the CA and the template catalog.
 */
import express, { type Express } from 'express';
import type { TemplateCatalog } from '../configuration/templates';
import type { CertificateAuthority } from '../pki/certificate-authority';
import type { ProvisioningService } from '../provisioning/provisioning-service';
import type { DeviceRegistry } from '../registry/device-registry';
import { UnsupportedMediaTypeError } from '../service/errors';
import type { Logger } from '../service/logger';
import { notFoundHandler, problemHandler } from './problem';
import { certificateRoutes } from './routes/certificates';
import { healthRoutes, type HealthCheck } from './routes/health';
import { provisioningRoutes } from './routes/provisioning';
import { templateRoutes } from './routes/templates';

export interface ApiDependencies {
  provisioning: ProvisioningService;
  ca: CertificateAuthority;
  registry: DeviceRegistry;
  templates: TemplateCatalog;
  healthChecks: HealthCheck[];
  logger: Logger;
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
    });
    next();
  });
  app.use(healthRoutes(deps.healthChecks));

  const api = express.Router();
  api.use(express.json({ limit: '1mb', type: ['application/json', 'application/*+json'] }));
  api.use((req, _res, next) => {
    const hasBody = ['POST', 'PUT', 'PATCH'].includes(req.method) && Number(req.get('content-length') ?? 0) > 0;
    if (hasBody && !req.is(['application/json', 'application/*+json'])) {
      next(
        new UnsupportedMediaTypeError('the request body must be JSON', {
          fields: [{ field: 'header:Content-Type', reason: 'must be application/json' }],
        }),
      );
      return;
    }
    next();
  });
  api.use(provisioningRoutes(deps.provisioning));
  api.use(certificateRoutes(deps.ca, deps.registry));
  api.use(templateRoutes(deps.templates));
  app.use('/api/v1/provisioning', api);

  app.use(notFoundHandler);
  app.use(problemHandler(deps.logger));
  return app;
}
