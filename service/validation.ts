/**
 * Turns zod issues into the service's field problems, so every validation error, from the API or
 * from the configuration engine, names the field the same way (`devices[0].macAddress`).
 */
import type { z } from 'zod';
import { ValidationError, type FieldProblem } from './errors';

export function fieldPath(path: ReadonlyArray<PropertyKey>, prefix = ''): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out && !out.endsWith(':') ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

export function fieldProblems(error: z.ZodError, prefix = ''): FieldProblem[] {
  return error.issues.map((issue) => ({ field: fieldPath(issue.path, prefix), reason: issue.message }));
}

/** Parses `value` or throws a ValidationError listing every offending field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string, prefix = ''): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const fields = fieldProblems(result.error, prefix);
  throw new ValidationError(`${what} is invalid: ${fields.map((f) => `${f.field}: ${f.reason}`).join('; ')}`, {
    fields,
  });
}
