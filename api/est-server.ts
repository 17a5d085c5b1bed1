/**
 * The EST server (RFC 7030): HTTPS only, on its own listener because it authenticates devices by
 * TLS client certificate, under `/.well-known/est/[<label>/]<operation>`.
 *
 * Tenancy. The label is `<tenant>` or `<tenant>~<site>`; without one, the tenant is the one the
 * TLS server name selected. Server certificates are per tenant, from the tenant's root (devices
 * trust only that root, RFC 7030 section 3.6), and chosen by SNI: the server name
 * `<tenant>.<host name>` selects that tenant's certificate (for tenants whose id is a DNS label and
 * that have a CA); the bare host name, an IP address or no server name at all get the default
 * tenant's. A label naming another tenant than an explicit `<tenant>.<host name>` is refused.
 *
 * Client certificates are requested but not required at the TLS layer: which roots apply depends
 * on the label, known only once the request arrives, so `EstEnrolment` verifies them per request.
 */
import https from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { CaHierarchy, ServiceIdentities } from '../pki/certificate-authority';
import {
  base64Lines,
  certsOnly,
  csrAttributes,
  csrPemOfBody,
  EstEnrolment,
  estLabelSiteSeparator,
  estPathPrefix,
  maximumCsrBodyBytes,
  parseEstLabel,
  type EstEnrolmentDependencies,
  type EstEnrolmentOperation,
  type EstLabel,
  type FailedAuthenticationLimits,
} from '../pki/est';
import { fromPem } from '../x509/pem';
import {
  BadCsrError,
  ForbiddenError,
  NotFoundError,
  PayloadTooLargeError,
  ServiceError,
  TooManyRequestsError,
  UnauthenticatedError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { problemOf, sendProblem } from './problem';

/** What enrolment needs, and what the listener itself serves with; it adds the audit chain and throttling from its options. */
export type EstServerDependencies = Omit<EstEnrolmentDependencies, 'systemAuditTenant' | 'failedAuthentications' | 'ca'> & {
  ca: EstEnrolmentDependencies['ca'] & Pick<ServiceIdentities, 'ensureEstServerIdentity'> & Pick<CaHierarchy, 'trustAnchorsPem'>;
};

export interface EstServerOptions {
  /** Address to listen on (loopback in tests); port 0 picks a free one. */
  host: string;
  port: number;
  /** Names devices use to reach the server (EST_HOST_NAME); server certificates carry them. */
  hostNames: readonly string[];
  /** Addresses devices use; defaults to `host` when that is a specific IP address. */
  ipAddresses?: readonly string[];
  /** Tenant of requests without a label on the bare host name, and of the default certificate. */
  defaultTenantId: string;
  /** The service's system audit chain (`systemAuditTenant`), for failures against unknown tenants. */
  systemAuditTenant?: string;
  failedAuthentications?: FailedAuthenticationLimits;
}

export interface EstServer {
  /** `https://<host>:<port>`, without the EST path. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const certsOnlyType = 'application/pkcs7-mime; smime-type=certs-only';
const csrAttributesType = 'application/csrattrs';
/** How often the default certificate's renewal time is checked. */
const renewalCheckIntervalMs = 60 * 60 * 1000;
const dnsLabelPattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Which tenant the TLS server name selects, if it selects one: `<tenant>.<host name>`. */
export function tenantOfServerName(serverName: string | undefined, hostNames: readonly string[]): string | undefined {
  if (!serverName) return undefined;
  const name = serverName.toLowerCase().replace(/\.$/, '');
  for (const hostName of hostNames) {
    const suffix = `.${hostName.toLowerCase()}`;
    if (name.endsWith(suffix)) {
      const label = name.slice(0, -suffix.length);
      if (dnsLabelPattern.test(label)) return label;
    }
  }
  return undefined;
}

export interface EstRouterOptions {
  enrolment: EstEnrolment;
  defaultTenantId: string;
  hostNames: readonly string[];
  logger: Logger;
}

/** The EST endpoints; mount at `/.well-known/est` on a TLS listener that requests client certificates. */
export function estRouter(options: EstRouterOptions): Router {
  const { enrolment } = options;
  const router = express.Router();
  const readBody = express.raw({ type: () => true, limit: maximumCsrBodyBytes });

  const labelOf = (req: Request): EstLabel => {
    const serverName = (req.socket as TLSSocket).servername || undefined;
    const nameTenant = tenantOfServerName(serverName, options.hostNames);
    const raw = req.params.label as string | undefined;
    if (raw === undefined) return { tenantId: nameTenant ?? options.defaultTenantId };
    const label = parseEstLabel(raw);
    if (!label) {
      throw new NotFoundError(`"${raw}" is not an EST label: use <tenant> or <tenant>${estLabelSiteSeparator}<site>`);
    }
    if (nameTenant !== undefined && nameTenant !== label.tenantId) {
      throw new ForbiddenError(`this connection is to tenant ${nameTenant}'s EST host, but the path names tenant ${label.tenantId}`);
    }
    return label;
  };

  const handle =
    (work: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) =>
      work(req, res).catch(next);

  router.get(
    ['/cacerts', '/:label/cacerts'],
    handle(async (req, res) => {
      const label = labelOf(req);
      sendCertsOnly(res, await enrolment.caCertificates(label));
    }),
  );

  router.get(
    ['/csrattrs', '/:label/csrattrs'],
    handle(async (req, res) => {
      // The same attributes for every tenant, so they are given without asking whether it exists.
      labelOf(req);
      res.status(200).set({ 'Content-Type': csrAttributesType, 'Content-Transfer-Encoding': 'base64' });
      res.end(Buffer.from(base64Lines(csrAttributes()), 'latin1'));
    }),
  );

  for (const operation of ['simpleenroll', 'simplereenroll'] as const satisfies EstEnrolmentOperation[]) {
    router.post(
      [`/${operation}`, `/:label/${operation}`],
      handle(async (req, res) => {
        const label = labelOf(req);
        // The realm names the tenant, so a client holding several credentials can pick.
        res.locals.estRealm = label.tenantId;
        const client = await enrolment.authenticate(label, operation, credentialsOf(req));
        if (!req.is('application/pkcs10')) {
          throw new UnsupportedMediaTypeError('the request body must be a PKCS#10 CSR sent as application/pkcs10');
        }
        await new Promise<void>((resolve, reject) =>
          readBody(req, res, (error?: unknown) => (error ? reject(bodyError(error)) : resolve())),
        );
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const { certificate } = await enrolment.enroll({ label, operation, client, csrPem: csrPemOfBody(body) });
        sendCertsOnly(res, [fromPem(certificate.pem, ['CERTIFICATE'])!]);
      }),
    );
  }

  router.all(['/:operation', '/:label/:operation'], (req, res, next) => {
    const allowed = { cacerts: 'GET', csrattrs: 'GET', simpleenroll: 'POST', simplereenroll: 'POST' }[req.params.operation as string];
    if (!allowed) return next();
    res.set('Allow', allowed);
    sendProblem(res, {
      type: 'urn:problem-type:method-not-allowed',
      title: 'Method Not Allowed',
      status: 405,
      detail: `${req.method} is not supported here; use ${allowed}`,
      instance: req.originalUrl,
    });
  });

  router.use((req, res) => {
    sendProblem(res, {
      type: 'urn:problem-type:not-found',
      title: 'Not Found',
      status: 404,
      detail: `no EST operation at ${req.path}; the operations are cacerts, simpleenroll, simplereenroll and csrattrs`,
      instance: req.originalUrl,
    });
  });

  router.use((error: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    const problem = { ...problemOf(error), instance: req.originalUrl };
    // RFC 7030 answers every request it cannot accept with 400; the service calls a bad CSR 422.
    if (error instanceof BadCsrError || error instanceof ValidationError) problem.status = 400;
    problem.title = { 400: 'Bad Request' }[problem.status] ?? problem.title;
    if (error instanceof UnauthenticatedError) {
      const realm = (res.locals.estRealm as string | undefined) ?? options.defaultTenantId;
      res.set('WWW-Authenticate', `Basic realm="EST ${realm}", charset="UTF-8"`);
    }
    if (error instanceof TooManyRequestsError) res.set('Retry-After', String(error.retryAfterSeconds));
    if (problem.status >= 500) options.logger.error({ err: error, path: req.originalUrl }, 'EST request failed');
    sendProblem(res, problem);
  });

  return router;
}

/** Starts the EST listener; resolves once it accepts connections. */
export async function createEstServer(deps: EstServerDependencies, options: EstServerOptions): Promise<EstServer> {
  const { ca, logger } = deps;
  if (options.hostNames.length === 0) throw new ValidationError('the EST server needs at least one host name (EST_HOST_NAME)');
  const enrolment = new EstEnrolment({
    ...deps,
    systemAuditTenant: options.systemAuditTenant,
    failedAuthentications: options.failedAuthentications,
  });
  const ipAddresses = options.ipAddresses ?? (isIP(options.host) && !/^(0\.0\.0\.0|::)$/.test(options.host) ? [options.host] : []);

  const namesFor = (tenantId: string) => ({
    dns: [
      ...options.hostNames,
      ...(dnsLabelPattern.test(tenantId) ? options.hostNames.map((hostName) => `${tenantId}.${hostName}`) : []),
    ],
    ip: [...ipAddresses],
  });
  const contextOptionsFor = async (tenantId: string) => {
    const identity = await ca.ensureEstServerIdentity(tenantId, namesFor(tenantId));
    return {
      renewAt: identity.renewAt.getTime(),
      options: {
        key: identity.privateKeyPem,
        // With its issuer, so devices holding only the tenant's root can build the path.
        cert: [identity.certificatePem, ...identity.chainPem].join('\n'),
        // Sent as the acceptable CA names of the CertificateRequest, so clients pick the right certificate.
        ca: await ca.trustAnchorsPem(tenantId),
      },
    };
  };

  const contexts = new Map<string, { context: SecureContext; renewAt: number }>();
  const contextFor = async (tenantId: string): Promise<SecureContext | undefined> => {
    const cached = contexts.get(tenantId);
    if (cached && Date.now() < cached.renewAt) return cached.context;
    if (!(await enrolment.tenantHasCa(tenantId))) return undefined;
    const { options: contextOptions, renewAt } = await contextOptionsFor(tenantId);
    const context = tls.createSecureContext(contextOptions);
    contexts.set(tenantId, { context, renewAt });
    return context;
  };

  let defaultContext = await contextOptionsFor(options.defaultTenantId);
  const app = express();
  app.disable('x-powered-by');
  app.use(estPathPrefix, estRouter({ enrolment, defaultTenantId: options.defaultTenantId, hostNames: options.hostNames, logger }));
  app.use((req, res) => {
    sendProblem(res, { type: 'urn:problem-type:not-found', title: 'Not Found', status: 404, detail: `no route for ${req.method} ${req.path}` });
  });

  const server = https.createServer(
    {
      ...defaultContext.options,
      minVersion: 'TLSv1.2',
      requestCert: true,
      rejectUnauthorized: false,
      SNICallback: (serverName, callback) => {
        const tenantId = tenantOfServerName(serverName, options.hostNames);
        if (tenantId === undefined || tenantId === options.defaultTenantId) return callback(null, undefined);
        contextFor(tenantId).then(
          (context) => callback(null, context),
          (error: unknown) => {
            logger.error({ err: error, tenantId }, 'could not prepare the EST server certificate');
            callback(null, undefined);
          },
        );
      },
    },
    app,
  );

  const renewal = setInterval(() => {
    if (Date.now() < defaultContext.renewAt) return;
    contextOptionsFor(options.defaultTenantId).then(
      (renewed) => {
        defaultContext = renewed;
        server.setSecureContext(renewed.options);
        logger.info({ tenantId: options.defaultTenantId }, 'renewed the EST server certificate');
      },
      (error: unknown) => logger.error({ err: error }, 'could not renew the EST server certificate'),
    );
  }, renewalCheckIntervalMs);
  renewal.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
  logger.info({ host: options.host, port, hostNames: options.hostNames }, 'EST server listening');
  return {
    url: `https://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        clearInterval(renewal);
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function credentialsOf(req: Request): { address: string; clientCertificateDer?: Uint8Array; basic?: { username: string; password: string } } {
  const socket = req.socket as TLSSocket;
  const peer = socket.getPeerCertificate?.(false);
  const clientCertificateDer = peer && peer.raw ? new Uint8Array(peer.raw) : undefined;
  const header = req.get('authorization');
  let basic: { username: string; password: string } | undefined;
  const match = header ? /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header) : null;
  if (match) {
    const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) basic = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return { address: socket.remoteAddress ?? 'unknown', clientCertificateDer, basic };
}

function sendCertsOnly(res: Response, certificatesDer: Uint8Array[]) {
  res.status(200).set({ 'Content-Type': certsOnlyType, 'Content-Transfer-Encoding': 'base64' });
  // A Buffer, so express adds no charset to the media type.
  res.end(Buffer.from(base64Lines(certsOnly(certificatesDer)), 'latin1'));
}

function bodyError(error: unknown): ServiceError {
  const http = error as { type?: string };
  if (http.type === 'entity.too.large') return new PayloadTooLargeError(`a CSR body is at most ${maximumCsrBodyBytes} bytes`);
  return new BadCsrError('the request body could not be read');
}

const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});
const labelParameter = {
  name: 'label',
  in: 'path',
  required: true,
  description: `Tenant, or tenant and site: <tenant> or <tenant>${estLabelSiteSeparator}<site>`,
  schema: { type: 'string' },
};
const base64Body = (mediaType: string, description: string) => ({
  description,
  headers: { 'Content-Transfer-Encoding': { schema: { type: 'string', enum: ['base64'] } } },
  content: { [mediaType]: { schema: { type: 'string', contentEncoding: 'base64' } } },
});

function estPaths(labelled: boolean) {
  const parameters = labelled ? [labelParameter] : [];
  const suffix = labelled ? 'ForLabel' : '';
  const enrol = (operation: EstEnrolmentOperation, summary: string) => ({
    post: {
      operationId: `est${operation === 'simpleenroll' ? 'SimpleEnroll' : 'SimpleReenroll'}${suffix}`,
      summary,
      tags: ['est'],
      security: operation === 'simpleenroll' ? [{ estClientCertificate: [] }, { estBasic: [] }] : [{ estClientCertificate: [] }],
      parameters,
      requestBody: {
        required: true,
        content: { 'application/pkcs10': { schema: { type: 'string', contentEncoding: 'base64', description: 'DER PKCS#10 CSR' } } },
      },
      responses: {
        200: base64Body(certsOnlyType, 'The issued certificate, as a CMS certs-only message'),
        400: problemResponse('The CSR is malformed or asks for what this device may not have'),
        401: problemResponse('No (valid) client authentication; WWW-Authenticate: Basic'),
        403: problemResponse('Authenticated, but not allowed this operation'),
        413: problemResponse('The body is too large'),
        415: problemResponse('The body is not application/pkcs10'),
        429: problemResponse('Too many failed authentications; Retry-After'),
      },
    },
  });
  const base = labelled ? '/.well-known/est/{label}' : '/.well-known/est';
  return {
    [`${base}/cacerts`]: {
      get: {
        operationId: `estCaCertificates${suffix}`,
        summary: 'CA certificates of the tenant (RFC 7030 section 4.1)',
        tags: ['est'],
        security: [],
        parameters,
        responses: {
          200: base64Body(certsOnlyType, 'Site intermediates and roots, as a CMS certs-only message'),
          404: problemResponse('The tenant or site has no CA'),
        },
      },
    },
    [`${base}/simpleenroll`]: enrol('simpleenroll', 'Enrol: a first certificate for the device (RFC 7030 section 4.2.1)'),
    [`${base}/simplereenroll`]: enrol('simplereenroll', 'Re-enrol: renew or rekey the current certificate (RFC 7030 section 4.2.2)'),
    [`${base}/csrattrs`]: {
      get: {
        operationId: `estCsrAttributes${suffix}`,
        summary: 'What the CSR should contain (RFC 7030 section 4.5)',
        tags: ['est'],
        security: [],
        parameters,
        responses: {
          200: base64Body(csrAttributesType, 'CsrAttrs: ecdsa-with-SHA256 and an EC P-256 key'),
          404: problemResponse('The tenant has no CA'),
        },
      },
    },
  };
}

/** The EST endpoints as OpenAPI paths, for the API's document (served by the EST listener, not the API). */
export const estOpenApiPaths = { ...estPaths(false), ...estPaths(true) };
