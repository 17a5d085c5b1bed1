/**
 * What the CA publishes to relying parties, at the URLs its certificates carry (pki/publication.ts):
 * CRLs, CA certificates and the OCSP responder (RFC 6960 over HTTP, RFC 5019 profile). Relying
 * parties have no credentials, so these routes are public: mount the router at `/pki` before the
 * API's authentication and rate limiter. It keeps its own limits instead: a small request body, a
 * few CertIDs per request, and optionally a per-address budget.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { CertificateAuthorityService } from '../pki/certificate-authority';
import { isCaCertificateType } from '../pki/certificate-store';
import type { CrlPublisher } from '../pki/crl';
import type { OcspAnswer, OcspResponder } from '../pki/ocsp-responder';
import { fromPem } from '../x509/pem';
import { NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { notFoundHandler, problemHandler, sendProblem } from './problem';
import { RateLimiter } from './rate-limit';
import { securityHeaders } from './security-headers';

export const pkiMountPath = '/pki';

export interface PkiPublicationOptions {
  ca: Pick<CertificateAuthorityService, 'getCertificate'>;
  crls: CrlPublisher;
  ocsp: OcspResponder;
  logger: Logger;
  /** Largest OCSP request accepted, POST body or decoded GET path. Default 16 KiB. */
  maxRequestBytes?: number;
  /** Requests per minute per client address; unset means no budget beyond the size limits. */
  perClientPerMinute?: number;
}

const mediaTypes = {
  crl: 'application/pkix-crl',
  certificate: 'application/pkix-cert',
  ocspRequest: 'application/ocsp-request',
  ocspResponse: 'application/ocsp-response',
} as const;

/** CA certificates never change under their id; a day keeps caches from holding a deleted one forever. */
const caCertificateMaxAgeSeconds = 24 * 60 * 60;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const maxRememberedPathLength = 1024;
const base64Pattern = /^[A-Za-z0-9+/_-]*={0,2}$/;

export function pkiPublicationRouter(options: PkiPublicationOptions): Router {
  const maxRequestBytes = options.maxRequestBytes ?? 16 * 1024;
  const router = express.Router();
  const limiter = options.perClientPerMinute ? new RateLimiter({ perMinute: options.perClientPerMinute }) : undefined;
  const readOcspRequest = express.raw({ type: mediaTypes.ocspRequest, limit: maxRequestBytes });

  if (limiter) {
    router.use((req, _res, next) => {
      limiter.take(`pki:${req.ip ?? req.socket.remoteAddress ?? 'unknown'}`);
      next();
    });
  }

  router.get('/crl/:caCertificateId.crl', async (req: Request, res: Response, next: NextFunction) => {
    try {
      const caCertificateId = idOf(String(req.params.caCertificateId), 'CRL');
      const crl = await options.crls.latest(caCertificateId);
      res.set({
        'Cache-Control': `public, no-transform, max-age=${secondsUntil(crl.nextUpdate)}`,
        'Last-Modified': crl.thisUpdate.toUTCString(),
        Expires: crl.nextUpdate.toUTCString(),
        ETag: `"${caCertificateId}-${crl.crlNumber}"`,
      });
      res.type(mediaTypes.crl).send(Buffer.from(crl.der));
    } catch (error) {
      next(error);
    }
  });

  router.get('/ca/:caCertificateId.cer', async (req: Request, res: Response, next: NextFunction) => {
    try {
      const caCertificateId = idOf(String(req.params.caCertificateId), 'CA certificate');
      const row = await options.ca.getCertificate(caCertificateId);
      if (!isCaCertificateType(row.certificateType)) throw new NotFoundError(`no CA certificate ${caCertificateId}`);
      const der = fromPem(row.pem, ['CERTIFICATE'])!;
      res.set({
        'Cache-Control': `public, no-transform, max-age=${caCertificateMaxAgeSeconds}`,
        'Last-Modified': row.issuedAt.toUTCString(),
        ETag: `"${row.fingerprint}"`,
      });
      res.type(mediaTypes.certificate).send(Buffer.from(der));
    } catch (error) {
      next(error);
    }
  });

  router.post('/ocsp', async (req: Request, res: Response, next: NextFunction) => {
    try {
      if (!req.is(mediaTypes.ocspRequest)) {
        throw new UnsupportedMediaTypeError(`an OCSP request must be sent as ${mediaTypes.ocspRequest}`, {
          fields: [{ field: 'header:Content-Type', reason: `must be ${mediaTypes.ocspRequest}` }],
        });
      }
      await new Promise<void>((resolve, reject) => readOcspRequest(req, res, (error?: unknown) => (error ? reject(error) : resolve())));
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      sendOcsp(req, res, await options.ocsp.respond(body), { httpCacheable: false });
    } catch (error) {
      next(error);
    }
  });

  // RFC 6960 appendix A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}.
  router.get('/ocsp/*request', async (req: Request, res: Response, next: NextFunction) => {
    try {
      const encoded = req.path.slice('/ocsp/'.length);
      // Base64 of the largest request; url-encoding may triple characters before decoding.
      const longestBase64 = Math.ceil(maxRequestBytes / 3) * 4;
      const request = encoded.length > 3 * longestBase64 ? undefined : decodeGetRequest(encoded);
      if (encoded.length > 3 * longestBase64 || (request && request.byteLength > maxRequestBytes)) {
        throw new PayloadTooLargeError(`an OCSP request may have at most ${maxRequestBytes} octets`);
      }
      // Known by its path too, so a repeated GET is answered before routing (withCachedOcspAnswers);
      // only short paths (an RFC 5019 request is about 100 octets), so the paths kept stay small.
      const alias = !limiter && req.originalUrl.length <= maxRememberedPathLength ? req.originalUrl : undefined;
      const answer = request ? await options.ocsp.respond(request, alias) : await options.ocsp.respond(new Uint8Array());
      sendOcsp(req, res, answer, { httpCacheable: true });
    } catch (error) {
      next(error);
    }
  });

  router.all(['/ocsp', '/ocsp/*request'], (req, res) => methodNotAllowed(req, res, 'GET, POST'));
  router.all(['/crl/:caCertificateId.crl', '/ca/:caCertificateId.cer'], (req, res) => methodNotAllowed(req, res, 'GET, HEAD'));

  // Anything else under /pki names nothing we publish: the same problem+json 404 wherever it is mounted.
  router.use(notFoundHandler);
  router.use(problemHandler(options.logger));
  return router;
}

/** The CA id in `<uuid><suffix>`; NotFoundError for anything else, so bad input is a 404, never a 500. */
function idOf(id: string, what: string): string {
  if (!uuidPattern.test(id)) throw new NotFoundError(`no ${what} for ${id}`);
  return id.toLowerCase();
}

/** The request DER from a GET path, or undefined when it is not url-encoded base64 (answered malformedRequest). */
function decodeGetRequest(encoded: string): Uint8Array | undefined {
  let base64: string;
  try {
    base64 = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  // Some clients leave the base64 unencoded, others encode it; both are read the same.
  if (base64 === '' || !base64Pattern.test(base64)) return undefined;
  return new Uint8Array(Buffer.from(base64, base64.includes('-') || base64.includes('_') ? 'base64url' : 'base64'));
}

/**
 * Answers a GET whose OCSP request the responder has a pre-produced answer to before Express sees
 * it: one map look-up by the raw path and one write of headers made ahead. Everything else (a first
 * request, a conditional one, POST, CRLs, the API) goes on to `next`. Routes mounted with a
 * per-address budget never register paths, so their requests always reach the limiter.
 */
export function withCachedOcspAnswers(next: RequestListener, ocsp: Pick<OcspResponder, 'cachedAnswer'>): RequestListener {
  const prefix = `${pkiMountPath}/ocsp/`;
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url!;
    if (req.method === 'GET' && url.startsWith(prefix) && req.headers['if-none-match'] === undefined && req.headers['if-modified-since'] === undefined) {
      const answer = ocsp.cachedAnswer(url);
      if (answer?.cacheable) {
        const ready = prepared(answer, answer.cacheable);
        ready.head[1] = cacheControl(ready);
        res.writeHead(200, ready.head);
        res.end(ready.body);
        return;
      }
    }
    next(req, res);
  };
}

/** What a cacheable answer sends besides its max-age: made once per pre-produced answer, not per request. */
interface PreparedOcspAnswer {
  body: Buffer;
  refreshAtMs: number;
  lastModified: string;
  expires: string;
  etag: string;
  /** Name, value, name, value...: the whole header of a 200, Cache-Control's value (index 1) set per request. */
  head: string[];
}

const securityHeadersButCaching = Object.entries(securityHeaders)
  .filter(([name]) => name !== 'Cache-Control')
  .flat();

const preparedAnswers = new WeakMap<OcspAnswer, PreparedOcspAnswer>();

function prepared(answer: OcspAnswer, cacheable: NonNullable<OcspAnswer['cacheable']>): PreparedOcspAnswer {
  let ready = preparedAnswers.get(answer);
  if (!ready) {
    const body = Buffer.from(answer.der.buffer, answer.der.byteOffset, answer.der.byteLength);
    const lastModified = cacheable.producedAt.toUTCString();
    const expires = cacheable.nextUpdate.toUTCString();
    ready = {
      body,
      refreshAtMs: cacheable.refreshAt.getTime(),
      lastModified,
      expires,
      etag: cacheable.etag,
      head: [
        'Cache-Control',
        '',
        ...securityHeadersButCaching,
        'Content-Type',
        mediaTypes.ocspResponse,
        'Last-Modified',
        lastModified,
        'Expires',
        expires,
        'ETag',
        cacheable.etag,
        'Content-Length',
        String(body.length),
      ],
    };
    preparedAnswers.set(answer, ready);
  }
  return ready;
}

/** RFC 5019 section 6.2: max-age runs until this responder would re-sign the answer. */
function cacheControl(ready: PreparedOcspAnswer): string {
  return `max-age=${Math.max(0, Math.floor((ready.refreshAtMs - Date.now()) / 1000))}, public, no-transform, must-revalidate`;
}

/**
 * OCSP answers are HTTP 200 whatever their OCSP status, as clients expect. Cacheable GET answers
 * carry the RFC 5019 section 6.2 headers, with max-age ending when this responder would re-sign;
 * a revalidating cache naming the current ETag (or a Last-Modified not older) gets 304. Written
 * straight to the response: the cached path is the responder's hot path.
 */
function sendOcsp(req: Request, res: Response, answer: OcspAnswer, options: { httpCacheable: boolean }): void {
  const cacheable = options.httpCacheable ? answer.cacheable : undefined;
  res.statusCode = 200;
  res.setHeader('Content-Type', mediaTypes.ocspResponse);
  if (!cacheable) {
    const body = Buffer.from(answer.der.buffer, answer.der.byteOffset, answer.der.byteLength);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Length', body.length);
    res.end(body);
    return;
  }
  const ready = prepared(answer, cacheable);
  res.setHeader('Cache-Control', cacheControl(ready));
  res.setHeader('Last-Modified', ready.lastModified);
  res.setHeader('Expires', ready.expires);
  res.setHeader('ETag', ready.etag);
  // Express decides freshness as it would for res.send: only asked when the request is conditional.
  if ((req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) && req.fresh) {
    res.statusCode = 304;
    res.removeHeader('Content-Type');
    res.end();
    return;
  }
  res.setHeader('Content-Length', ready.body.length);
  res.end(ready.body);
}

function secondsUntil(date: Date): number {
  return Math.max(0, Math.floor((date.getTime() - Date.now()) / 1000));
}

function methodNotAllowed(req: Request, res: Response, allow: string): void {
  res.set('Allow', allow);
  sendProblem(res, {
    type: 'urn:problem-type:method-not-allowed',
    title: 'Method Not Allowed',
    status: 405,
    detail: `${req.method} is not supported here; use ${allow.replace(', ', ' or ')}`,
    instance: req.originalUrl,
  });
}

const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});
const caIdParameter = {
  name: 'caCertificateId',
  in: 'path',
  required: true,
  schema: { type: 'string', format: 'uuid' },
};
const binary = (mediaType: string) => ({ [mediaType]: { schema: { type: 'string', contentMediaType: mediaType } } });

/** The publication endpoints as OpenAPI paths, for the API's document (they are not declared operations). */
export const pkiOpenApiPaths = {
  '/pki/crl/{caCertificateId}.crl': {
    get: {
      operationId: 'getCertificateRevocationList',
      summary: "The CA's current CRL (RFC 5280), DER; re-signed before its nextUpdate",
      tags: ['pki'],
      security: [],
      parameters: [caIdParameter],
      responses: {
        200: { description: 'The CRL; cacheable until its nextUpdate', content: binary(mediaTypes.crl) },
        404: problemResponse('No such CA'),
        429: problemResponse('Too many requests from this address'),
      },
    },
  },
  '/pki/ca/{caCertificateId}.cer': {
    get: {
      operationId: 'getCaCertificate',
      summary: 'A CA certificate, DER (the caIssuers location of the certificates it issued)',
      tags: ['pki'],
      security: [],
      parameters: [caIdParameter],
      responses: {
        200: { description: 'The certificate', content: binary(mediaTypes.certificate) },
        404: problemResponse('No such CA'),
        429: problemResponse('Too many requests from this address'),
      },
    },
  },
  '/pki/ocsp': {
    post: {
      operationId: 'ocspPost',
      summary: 'OCSP (RFC 6960, RFC 5019 profile): certificate status, signed by the issuing CA\'s delegated responder',
      tags: ['pki'],
      security: [],
      requestBody: { required: true, content: binary(mediaTypes.ocspRequest) },
      responses: {
        200: {
          description: 'An OCSPResponse: successful, malformedRequest, unauthorized or internalError',
          content: binary(mediaTypes.ocspResponse),
        },
        413: problemResponse('The request is larger than 16 KiB'),
        415: problemResponse('The body is not application/ocsp-request'),
        429: problemResponse('Too many requests from this address'),
      },
    },
  },
  '/pki/ocsp/{request}': {
    get: {
      operationId: 'ocspGet',
      summary: 'OCSP over GET: the url-encoded base64 of the DER OCSPRequest; cacheable answers carry RFC 5019 headers',
      tags: ['pki'],
      security: [],
      parameters: [{ name: 'request', in: 'path', required: true, schema: { type: 'string' } }],
      responses: {
        200: { description: 'An OCSPResponse', content: binary(mediaTypes.ocspResponse) },
        413: problemResponse('The request is larger than 16 KiB'),
        429: problemResponse('Too many requests from this address'),
      },
    },
  },
};
