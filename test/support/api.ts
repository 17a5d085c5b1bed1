/**
 * The HTTP API on a loopback port over a test service, with API keys per tenant and role, and a
 * client that checks every response against the served OpenAPI document: an undocumented status
 * or a body that does not match its schema fails the test that received it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Role } from '../../access/roles';
import { createServiceApi } from '../../service/api';
import type { TestService } from './service';
import { testLogger } from './service';

export interface ApiResponse {
  status: number;
  type: string;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface CallOptions {
  body?: unknown;
  raw?: string;
  /** A multipart upload (sets its own content type). */
  form?: FormData;
  headers?: Record<string, string>;
  /** An API key; `null` sends no credentials. Defaults to the API's default key. */
  key?: string | null;
}

interface DocumentedOperation {
  method: string;
  pattern: RegExp;
  pointer: string;
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

export interface TestApi {
  baseUrl: string;
  /** An API key for the tenant and role, created on first use. */
  keyFor(tenantId: string, role: Role): Promise<string>;
  call(method: string, path: string, options?: CallOptions): Promise<ApiResponse>;
  document: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  close(): Promise<void>;
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export async function startTestApi(service: TestService, options: { defaultTenant?: string } = {}): Promise<TestApi> {
  const app = createServiceApi(service.parts, { config: service.config, connection: service.env.connection, logger: testLogger });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // As the service does: certificates name this API as where CRLs, CA certificates and OCSP live.
  service.parts.publication.useBaseUrlIfUnset(baseUrl);

  const keys = new Map<string, string>();
  async function keyFor(tenantId: string, role: Role): Promise<string> {
    const id = `${tenantId}/${role}`;
    if (!keys.has(id)) {
      const created = await service.parts.apiKeys.create({ tenantId, role, name: `test ${role}`, createdBy: 'test' });
      keys.set(id, created.key);
    }
    return keys.get(id)!;
  }
  const defaultKey = await keyFor(options.defaultTenant ?? 'default', 'administrator');

  const document = (await (await fetch(`${baseUrl}/api/v1/openapi.json`)).json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(document, 'openapi');
  const operations: DocumentedOperation[] = [];
  for (const [path, methods] of Object.entries<Record<string, any>>(document.paths)) { // eslint-disable-line @typescript-eslint/no-explicit-any
    const pattern = new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\\{[^}]+\\\}|\{[^}]+\}/g, '[^/]+')}$`);
    for (const [method, spec] of Object.entries(methods)) {
      operations.push({ method: method.toUpperCase(), pattern, pointer: `#/paths/${escapePointer(path)}/${method}`, responses: spec.responses });
    }
  }

  function checkAgainstDocument(method: string, path: string, response: ApiResponse) {
    const pathname = new URL(path, baseUrl).pathname;
    const op = operations.find((candidate) => candidate.method === method && candidate.pattern.test(pathname));
    if (!op) {
      // A documented path answers other methods with 405 (and OPTIONS with 204), naming those it takes.
      const knownPath = operations.some((candidate) => candidate.pattern.test(pathname));
      if (knownPath && (response.status === 405 || (method === 'OPTIONS' && response.status === 204))) return;
      if (response.status !== 404) throw new Error(`${method} ${pathname} answered ${response.status} but is not in the OpenAPI document`);
      return;
    }
    const documented = op.responses[String(response.status)];
    if (!documented) throw new Error(`${method} ${pathname} answered ${response.status}, which its OpenAPI operation does not document`);
    if (!documented.content) return;
    const mediaType = response.type.split(';')[0].trim();
    const content = documented.content[mediaType];
    if (!content) {
      throw new Error(`${method} ${pathname} ${response.status} answered ${mediaType}, documented ${Object.keys(documented.content).join(', ')}`);
    }
    if (content.schema === undefined) return;
    const validate = ajv.getSchema(`openapi${op.pointer}/responses/${response.status}/content/${escapePointer(mediaType)}/schema`);
    if (validate && !validate(response.body)) {
      throw new Error(`${method} ${pathname} ${response.status} does not match its documented schema: ${ajv.errorsText(validate.errors)}`);
    }
  }

  async function call(method: string, path: string, callOptions: CallOptions = {}): Promise<ApiResponse> {
    const key = callOptions.key === undefined ? defaultKey : callOptions.key;
    const hasBody = callOptions.body !== undefined || callOptions.raw !== undefined;
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        ...(hasBody ? { 'content-type': 'application/json' } : {}),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...callOptions.headers,
      },
      body: callOptions.form ?? callOptions.raw ?? (callOptions.body === undefined ? undefined : JSON.stringify(callOptions.body)),
    });
    const text = await response.text();
    const type = response.headers.get('content-type') ?? '';
    const result = { status: response.status, type, headers: response.headers, body: type.includes('json') ? JSON.parse(text) : text };
    checkAgainstDocument(method, path, result);
    return result;
  }

  return {
    baseUrl,
    keyFor,
    call,
    document,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
