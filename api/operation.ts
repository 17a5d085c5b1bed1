/**
 * Every API operation is declared once: its path, the permission it needs, its input schemas and
 * its documented responses. Mounting checks authentication, permission and input before the
 * handler runs; the OpenAPI document is generated from the same declarations.
 */
import type { Request, RequestHandler, Response, Router } from 'express';
import type { z } from 'zod';
import { roleAllows, type Permission, type Principal } from '../access/roles';
import { ForbiddenError, MethodNotAllowedError, ServiceError } from '../foundation/errors';
import { parseOrThrow, refuseUnstorableText, storableText } from '../foundation/validation';

export interface ResponseDeclaration {
  description: string;
  schema?: z.ZodType;
  /** Defaults to application/json. */
  contentType?: string;
  /** Other media types the same answer may come as (e.g. text/csv), chosen by a query parameter. */
  alsoAs?: string[];
}

export interface OperationContext<P, Q, B> {
  req: Request;
  res: Response;
  principal: Principal;
  tenantId: string;
  params: P;
  query: Q;
  body: B;
}

export interface Operation<P = Record<string, string>, Q = Record<string, unknown>, B = unknown> {
  operationId: string;
  method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI path template, e.g. `/api/v1/provisioning/templates/{templateId}`. */
  path: string;
  summary: string;
  tag: string;
  /** `public` operations need no credentials (health, the API description). */
  permission: Permission | 'public';
  /** Health probes must see the service as it is, however busy the prober's address is otherwise. */
  exemptFromRateLimit?: boolean;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** For bodies that are not JSON (file uploads): the handler reads the request itself. */
  upload?: { contentType: 'multipart/form-data'; schema: Record<string, unknown> };
  responses: Record<number, ResponseDeclaration>;
  handle(context: OperationContext<P, Q, B>): Promise<void> | void;
}

/** Keeps the generic parameters inferred from the schemas at each declaration. */
export function operation<P = Record<string, string>, Q = Record<string, unknown>, B = unknown>(
  declaration: Operation<P, Q, B>,
): Operation<P, Q, B> {
  return declaration;
}

/** Operations of different input types side by side, as mounted and documented together. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyOperation = Operation<any, any, any>;

export function expressPath(path: string): string {
  return path.replace(/\{([A-Za-z0-9_]+)\}/g, ':$1');
}

export interface OperationRecord {
  principal: Principal;
  operationId: string;
  method: string;
  path: string;
  params: Record<string, string>;
  outcome: 'success' | 'failure';
  status: number;
  error?: string;
}

export interface MountOptions {
  authenticate(req: Request): Promise<Principal>;
  /** Throws TooManyRequestsError when the caller is over its budget. */
  limit(key: string): void;
  /** Called after every authenticated operation that changes something (any method but GET). */
  record?(entry: OperationRecord): Promise<void>;
}

const anonymous: Principal = { subject: 'anonymous', credential: 'anonymous', kind: 'user', tenantId: '', role: 'viewer', name: 'anonymous' };

/**
 * The operation's input as declared, read from the request. Text the database cannot store is
 * refused first, in path, query and body alike, so no operation has to think of it.
 */
function inputOf(op: AnyOperation, req: Request): Pick<OperationContext<unknown, unknown, unknown>, 'params' | 'query' | 'body'> {
  refuseUnstorableText(req.params, 'path', 'path:');
  refuseUnstorableText(req.query, 'query', 'query:');
  refuseUnstorableText(req.body, 'request body');
  return {
    params: op.params ? parseOrThrow(op.params, req.params, 'path', 'path:') : req.params,
    query: op.query ? parseOrThrow(op.query, req.query, 'query', 'query:') : req.query,
    body: op.body ? parseOrThrow(op.body, req.body, 'request body') : req.body,
  };
}

export function mountOperations(
  router: Pick<Router, 'get' | 'post' | 'put' | 'delete'>,
  operations: AnyOperation[],
  options: MountOptions,
): void {
  for (const op of operations) {
    router[op.method](expressPath(op.path), async (req: Request, res: Response) => {
      if (op.permission === 'public') {
        if (!op.exemptFromRateLimit) options.limit(`ip:${req.ip}`);
        await op.handle({ req, res, principal: anonymous, tenantId: '', ...inputOf(op, req) });
        return;
      }
      const principal = await options.authenticate(req);
      // Each credential has its own budget, even where one person holds several.
      options.limit(principal.credential);
      // Changes, and refused attempts at them, go on record; reads do not. What the caller sent is
      // recorded as sent, with what the database cannot store escaped, so refusals of it are on record too.
      const record = (outcome: OperationRecord['outcome'], status: number, error?: string) =>
        op.method !== 'get' && options.record
          ? options.record({
              principal,
              operationId: op.operationId,
              method: op.method.toUpperCase(),
              path: req.originalUrl,
              params: Object.fromEntries(
                Object.entries(req.params as Record<string, string>).map(([name, value]) => [name, storableText(value)]),
              ),
              outcome,
              status,
              ...(error === undefined ? {} : { error: storableText(error) }),
            })
          : Promise.resolve();
      try {
        if (!roleAllows(principal.role, op.permission)) {
          throw new ForbiddenError(`the ${principal.role} role may not ${op.summary.toLowerCase()}`);
        }
        await op.handle({ req, res, principal, tenantId: principal.tenantId, ...inputOf(op, req) });
      } catch (error) {
        const status = error instanceof ServiceError ? error.status : 500;
        await record('failure', status, error instanceof Error ? error.message : String(error));
        throw error;
      }
      await record('success', res.statusCode);
    });
  }
}

/**
 * Answers a method no operation of a known path takes with 405 and the methods it does take;
 * mount after the operations. Unknown paths are left to the not-found handler.
 */
export function methodNotAllowedHandler(operations: AnyOperation[]): RequestHandler {
  const paths = new Map<string, { pattern: RegExp; methods: Set<string> }>();
  for (const op of operations) {
    const source = op.path
      .split(/\{[A-Za-z0-9_]+\}/)
      .map((literal) => literal.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
      .join('[^/]+');
    const entry = paths.get(op.path) ?? { pattern: new RegExp(`^${source}/?$`, 'i'), methods: new Set<string>() };
    entry.methods.add(op.method.toUpperCase());
    paths.set(op.path, entry);
  }
  return (req, res, next) => {
    const allowed = new Set<string>();
    for (const { pattern, methods } of paths.values()) if (pattern.test(req.path)) for (const method of methods) allowed.add(method);
    if (allowed.size === 0 || allowed.has(req.method)) {
      next();
      return;
    }
    if (allowed.has('GET')) allowed.add('HEAD');
    const methods = [...allowed].sort();
    if (req.method === 'OPTIONS') {
      res.set('Allow', [...methods, 'OPTIONS'].join(', ')).status(204).end();
      return;
    }
    next(new MethodNotAllowedError(`${req.method} is not supported on ${req.path}; use ${methods.join(', ')}`, methods));
  };
}
