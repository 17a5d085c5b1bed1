/**
 * Every error leaves the API as RFC 9457 problem+json, mapped here and nowhere else. Unexpected
 * errors are logged with their stack and answered without internals.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import {
  MethodNotAllowedError,
  ServiceBusyError,
  ServiceError,
  TooManyRequestsError,
  UnauthenticatedError,
  type FieldProblem,
} from '../foundation/errors';
import type { Logger } from '../foundation/logger';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldProblem[];
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function kebab(name: string): string {
  return name.replace(/Error$/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

export function problemOf(error: unknown): Problem {
  if (error instanceof ServiceError) {
    return {
      type: `urn:problem-type:${kebab(error.name)}`,
      title: titles[error.status] ?? error.name,
      status: error.status,
      detail: error.message,
      ...(error.fields.length > 0 ? { errors: error.fields } : {}),
    };
  }
  // Errors raised by express' own body parsing carry an HTTP status and a type.
  const http = error as { status?: number; type?: string; message?: string };
  if (typeof http.status === 'number' && http.status >= 400 && http.status < 500) {
    const reasons: Record<string, string> = {
      'entity.parse.failed': 'the request body is not valid JSON',
      'entity.too.large': 'the request body is too large',
      'encoding.unsupported': 'the request body encoding is not supported',
      'charset.unsupported': 'the request body charset is not supported',
    };
    return {
      type: `urn:problem-type:${http.type ? http.type.replace(/\./g, '-') : 'bad-request'}`,
      title: titles[http.status] ?? 'Bad Request',
      status: http.status,
      detail: (http.type && reasons[http.type]) ?? 'the request could not be read',
      ...(http.type === 'entity.parse.failed' ? { errors: [{ field: '(body)', reason: 'not valid JSON' }] } : {}),
    };
  }
  return {
    type: 'urn:problem-type:internal',
    title: titles[500],
    status: 500,
    detail: 'an unexpected error occurred; it has been logged',
  };
}

export function sendProblem(res: Parameters<RequestHandler>[1], problem: Problem): void {
  res.status(problem.status).type('application/problem+json').send(JSON.stringify(problem));
}

export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error);
    const problem = { ...problemOf(error), instance: req.originalUrl };
    if (error instanceof UnauthenticatedError) res.set('WWW-Authenticate', 'Bearer realm="device-provisioning"');
    if (error instanceof TooManyRequestsError || error instanceof ServiceBusyError) res.set('Retry-After', String(error.retryAfterSeconds));
    if (error instanceof MethodNotAllowedError) res.set('Allow', error.allowedMethods.join(', '));
    if (problem.status >= 500) logger.error({ err: error, path: req.originalUrl }, 'request failed');
    sendProblem(res, problem);
  };
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendProblem(res, {
    type: 'urn:problem-type:not-found',
    title: titles[404],
    status: 404,
    detail: `no route for ${req.method} ${req.path}`,
    instance: req.originalUrl,
  });
};
