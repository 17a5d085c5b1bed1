/**
 * Temporal's remote codec protocol (`POST .../encode`, `POST .../decode`, Payloads as protobuf
 * JSON), so authorised operators' Web UI and `temporal` CLI can read encrypted workflow history
 * without holding the payload keys. Mount it where the codec endpoint points, e.g. at `/codec`.
 *
 * A caller reads and seals its own tenant's payloads only: decoding opens the payloads sealed for
 * that tenant and leaves every other payload encoded; encoding seals for that tenant.
 *
 * The Web UI calls it from the browser: allowed origins get CORS with credentials; any other origin
 * is refused outright, so a page elsewhere cannot make an operator's browser decode history.
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import type { Payload } from '@temporalio/common';
import { PayloadDecryptionError } from '../custody/payload-codec';
import { ConfigurationError } from '../foundation/errors';
import { ForbiddenError, UnsupportedMediaTypeError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { parseOrThrow } from '../foundation/validation';
import { logger } from '../foundation/logger';
import { problemHandler, sendProblem } from './problem';

export type CodecOperation = 'encode' | 'decode';

/** The codec as the endpoint uses it: always on behalf of one tenant. */
export interface TenantPayloadCodec {
  encodeFor(tenantId: string, payloads: Payload[]): Promise<Payload[]>;
  /** Opens the tenant's payloads; others pass unchanged. */
  decodeFor(tenantId: string, payloads: Payload[]): Promise<Payload[]>;
}

export interface CodecServerOptions {
  codec: TenantPayloadCodec;
  /**
   * Resolves with the tenant whose payloads the caller may read or seal; throws
   * UnauthenticatedError (401) or ForbiddenError (403) otherwise. Called for encode as well:
   * encoding under a tenant's key lets a caller forge inputs that tenant's workers will trust.
   */
  authorise(req: Request, access: { operation: CodecOperation; namespace?: string }): Promise<{ tenantId: string }>;
  /** Web UI origins, e.g. `http://127.0.0.1:8233`; exact matches only. */
  allowedOrigins: readonly string[];
  /** Namespaces whose payloads this codec serves; requests naming another are refused. Unset: any. */
  namespaces?: readonly string[];
  /** Largest request body, in bytes or as `'4mb'`. */
  bodyLimit?: number | string;
  logger?: Logger;
}

const allowedHeaders = 'Authorization, Content-Type, X-Namespace';
const allowedMethods = 'POST, OPTIONS';

// Protobuf JSON encodes bytes as base64, standard or URL-safe, padded or not.
const base64 = z
  .string()
  .regex(/^[A-Za-z0-9+/_-]*={0,2}$/, 'must be base64')
  .refine((value) => value.replace(/=+$/, '').length % 4 !== 1, 'must be base64');

// Fields this codec has no use for are dropped rather than refused, so newer clients keep working.
const payloadsSchema = z.object({
  payloads: z.array(
    z.object({
      metadata: z.record(z.string(), base64).optional(),
      data: base64.optional(),
    }),
  ),
});

type PayloadsJson = z.infer<typeof payloadsSchema>;

export function codecServerRouter(options: CodecServerOptions): Router {
  const origins = new Set(options.allowedOrigins.map(normaliseOrigin));
  const namespaces = options.namespaces ? new Set(options.namespaces) : undefined;
  const router = express.Router();
  const parseJson = express.json({ limit: options.bodyLimit ?? '4mb', type: () => true });

  // Every answer, errors included, carries CORS for allowed origins so the UI can read the problem.
  router.use((req, res, next) => {
    const origin = req.get('origin');
    res.vary('Origin');
    if (origin === undefined) return next();
    if (!origins.has(origin)) {
      throw new ForbiddenError(`origin ${origin} may not use the codec endpoint`);
    }
    res.set({ 'Access-Control-Allow-Origin': origin, 'Access-Control-Allow-Credentials': 'true' });
    next();
  });

  router.options(['/encode', '/decode'], (req, res) => {
    res.set({
      Allow: allowedMethods,
      'Access-Control-Allow-Methods': allowedMethods,
      'Access-Control-Allow-Headers': allowedHeaders,
      'Access-Control-Max-Age': '600',
    });
    // Browsers ask before a public page reaches a private address (a UI calling a codec on loopback).
    if (req.get('access-control-request-private-network') === 'true') {
      res.set('Access-Control-Allow-Private-Network', 'true');
    }
    res.status(204).end();
  });

  for (const operation of ['encode', 'decode'] as const) {
    router.post(`/${operation}`, async (req: Request, res: Response, next: NextFunction) => {
      try {
        const namespace = req.get('x-namespace')?.trim() || undefined;
        const { tenantId } = await options.authorise(req, { operation, namespace });
        if (namespace !== undefined && namespaces && !namespaces.has(namespace)) {
          throw new ValidationError(`this codec does not serve namespace "${namespace}"`, {
            fields: [{ field: 'header:X-Namespace', reason: `must be one of ${[...namespaces].join(', ')}` }],
          });
        }
        if (!req.is('application/json')) {
          throw new UnsupportedMediaTypeError('the request body must be JSON', {
            fields: [{ field: 'header:Content-Type', reason: 'must be application/json' }],
          });
        }
        await new Promise<void>((resolve, reject) => parseJson(req, res, (error?: unknown) => (error ? reject(error) : resolve())));
        const body = parseOrThrow(payloadsSchema, req.body, 'the Payloads body');
        const input = fromJson(body);
        let output: Payload[];
        try {
          output = await (operation === 'encode' ? options.codec.encodeFor(tenantId, input) : options.codec.decodeFor(tenantId, input));
        } catch (error) {
          // The protocol answers a payload the codec cannot handle with 400.
          if (error instanceof PayloadDecryptionError) throw new ValidationError(error.message);
          throw error;
        }
        res.type('application/json').send(JSON.stringify(toJson(output)));
      } catch (error) {
        next(error);
      }
    });
  }

  router.all(['/encode', '/decode'], (req, res) => {
    res.set('Allow', allowedMethods);
    sendProblem(res, {
      type: 'urn:problem-type:method-not-allowed',
      title: 'Method Not Allowed',
      status: 405,
      detail: `${req.method} is not supported here; use POST`,
      instance: req.originalUrl,
    });
  });

  router.use(problemHandler(options.logger ?? logger));

  return router;
}

function fromJson(body: PayloadsJson): Payload[] {
  return body.payloads.map((payload) => ({
    metadata: Object.fromEntries(
      Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]),
    ),
    data: Buffer.from(payload.data ?? '', 'base64'),
  }));
}

function toJson(payloads: Payload[]): PayloadsJson {
  return {
    payloads: payloads.map((payload) => ({
      metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, base64Of(value)])),
      data: base64Of(payload.data ?? new Uint8Array()),
    })),
  };
}

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function normaliseOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    throw new ConfigurationError(`codec server: allowed origin "${origin}" is not a URL origin such as http://127.0.0.1:8233`);
  }
}

const codecPayloads = {
  type: 'object',
  required: ['payloads'],
  properties: {
    payloads: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          metadata: { type: 'object', additionalProperties: { type: 'string', contentEncoding: 'base64' } },
          data: { type: 'string', contentEncoding: 'base64' },
        },
      },
    },
  },
};

function codecPath(operation: CodecOperation) {
  return {
    post: {
      operationId: `codec${operation[0].toUpperCase()}${operation.slice(1)}`,
      summary: `${operation === 'decode' ? "Decrypt the caller's tenant's" : "Encrypt, for the caller's tenant,"} Temporal payloads (Temporal remote codec protocol)`,
      tags: ['operations'],
      security: [{ bearer: [] }],
      'x-permission': 'history:decode',
      parameters: [{ name: 'X-Namespace', in: 'header', required: false, schema: { type: 'string' } }],
      requestBody: { required: true, content: { 'application/json': { schema: codecPayloads } } },
      responses: {
        200: { description: 'The payloads, transformed', content: { 'application/json': { schema: codecPayloads } } },
        ...Object.fromEntries(
          [400, 401, 403, 413, 415].map((status) => [
            status,
            { description: 'Refused', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } },
          ]),
        ),
      },
    },
  };
}

/** The codec endpoints as OpenAPI paths, for the API's document (they are not declared operations). */
export const codecOpenApiPaths = {
  '/codec/encode': codecPath('encode'),
  '/codec/decode': codecPath('decode'),
};
