/**
 * The OpenAPI 3.1 description of the API, generated from the operation declarations so it cannot
 * drift from what is mounted. Named schemas (`.meta({ id })`) become components.
 */
import { z } from 'zod';
import type { AnyOperation, ResponseDeclaration } from './operation';
import { problemSchema } from './schemas';

type JsonSchema = Record<string, unknown>;

const errorResponses: Record<number, string> = {
  400: 'The request is invalid; `errors` names each field and why',
  401: 'No valid credentials',
  403: 'The role does not allow this operation',
  404: 'Not found (also for objects of another tenant)',
  413: 'The request body is too large',
  415: 'The request body is not JSON',
  429: 'Too many requests; see Retry-After',
  500: 'Unexpected error',
  503: 'A dependency (database, Temporal, HSM) is unavailable; try again',
};

class SchemaCollector {
  readonly components: Record<string, JsonSchema> = {};

  /** JSON Schema for `schema`, its named parts moved to components and referenced from there. */
  convert(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
    const converted = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
    const defs = (converted.$defs ?? {}) as Record<string, JsonSchema>;
    delete converted.$defs;
    for (const [name, definition] of Object.entries(defs)) this.components[name] ??= this.rewrite(definition);
    const id = (converted as { id?: string }).id;
    const result = this.rewrite(converted);
    if (typeof id === 'string') {
      this.components[id] ??= result;
      return { $ref: `#/components/schemas/${id}` };
    }
    return result;
  }

  private rewrite(value: JsonSchema): JsonSchema {
    const text = JSON.stringify(value, (key, inner) => (key === '$schema' ? undefined : inner));
    return JSON.parse(text.replaceAll('"#/$defs/', '"#/components/schemas/'));
  }
}

function parametersOf(op: AnyOperation, collector: SchemaCollector) {
  const parameters: JsonSchema[] = [];
  for (const [location, schema] of [
    ['path', op.params],
    ['query', op.query],
  ] as const) {
    if (!schema) continue;
    const converted = collector.convert(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, property] of Object.entries(converted.properties ?? {})) {
      parameters.push({
        name,
        in: location,
        required: location === 'path' || (converted.required ?? []).includes(name),
        schema: property,
      });
    }
  }
  // Path parameters without a declared schema are still parameters.
  for (const [, name] of op.path.matchAll(/\{([A-Za-z0-9_]+)\}/g)) {
    if (!parameters.some((p) => p.name === name && p.in === 'path')) {
      parameters.push({ name, in: 'path', required: true, schema: { type: 'string' } });
    }
  }
  return parameters;
}

function responseOf(declaration: ResponseDeclaration, collector: SchemaCollector): JsonSchema {
  if (!declaration.schema && !declaration.contentType) return { description: declaration.description };
  const contentType = declaration.contentType ?? 'application/json';
  const schema = declaration.schema ? collector.convert(declaration.schema, 'output') : {};
  const alternatives = Object.fromEntries((declaration.alsoAs ?? []).map((type) => [type, { schema: { type: 'string' } }]));
  return { description: declaration.description, content: { [contentType]: { schema }, ...alternatives } };
}

export function openApiDocument(
  operations: AnyOperation[],
  info: { version: string },
  /** Paths served by something other than declared operations, described by hand. */
  extraPaths: Record<string, Record<string, JsonSchema>> = {},
): JsonSchema {
  const collector = new SchemaCollector();
  const problemRef = collector.convert(problemSchema, 'output');
  const paths: Record<string, Record<string, JsonSchema>> = {};

  for (const op of operations) {
    const responses: Record<string, JsonSchema> = {};
    for (const [status, declaration] of Object.entries(op.responses)) {
      responses[status] =
        Number(status) >= 400 && !declaration.schema
          ? { description: declaration.description, content: { 'application/problem+json': { schema: problemRef } } }
          : responseOf(declaration, collector);
    }
    const standardErrors = [
      400,
      ...(op.permission === 'public' ? [] : [401, 403, 404]),
      ...(op.body || op.upload ? [413, 415] : []),
      429,
      500,
      503,
    ];
    for (const status of standardErrors) {
      responses[String(status)] ??= {
        description: errorResponses[status],
        content: { 'application/problem+json': { schema: problemRef } },
      };
    }
    paths[op.path] ??= {};
    paths[op.path][op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      tags: [op.tag],
      security: op.permission === 'public' ? [] : [{ bearer: [] }],
      ...(op.permission === 'public' ? {} : { 'x-permission': op.permission }),
      parameters: parametersOf(op, collector),
      ...(op.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: collector.convert(op.body, 'input') } } } }
        : {}),
      ...(op.upload ? { requestBody: { required: true, content: { [op.upload.contentType]: { schema: op.upload.schema } } } } : {}),
      responses,
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Device provisioning service',
      version: info.version,
      description:
        'Provisions physical-security devices: identity, certificates from the organisation CA, configuration, activation.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: { ...paths, ...extraPaths },
    components: {
      schemas: collector.components,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key (`dps_...`) or a JWT from the configured identity provider',
        },
      },
    },
  };
}
