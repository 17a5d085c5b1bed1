/**
 * Turns zod issues into the service's field problems, so every validation error, from the API or
 * from the configuration engine, names the field the same way (`devices[0].macAddress`); finds
 * text the database cannot store, wherever it comes from; and recognises the database's own
 * refusal of a value.
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
  throw invalid(what, fieldProblems(result.error, prefix));
}

function invalid(what: string, fields: FieldProblem[]): ValidationError {
  return new ValidationError(`${what} is invalid: ${fields.map((f) => `${f.field}: ${f.reason}`).join('; ')}`, { fields });
}

/**
 * NUL, and UTF-16 surrogates without their other half: PostgreSQL stores neither in text or jsonb
 * (the driver would refuse NUL and silently replace a lone surrogate, breaking audit hashes).
 */
const unstorableCharacter = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorableCharacters = new RegExp(unstorableCharacter.source, 'g');
export const unstorableTextReason = 'contains NUL or an unpaired UTF-16 surrogate, which cannot be stored';
/** Enough to show what is wrong without echoing a hostile body back in full. */
const maximumTextProblems = 20;

/** The text with each character PostgreSQL cannot store written as its `\uXXXX` escape. */
export function storableText(text: string): string {
  return text.replace(unstorableCharacters, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A copy of a JSON value whose every string and key is `storableText`: what a record keeps of text it did not choose. */
export function storableValue<T>(value: T): T {
  if (typeof value === 'string') return storableText(value) as T;
  if (Array.isArray(value)) return value.map((item) => storableValue(item)) as T;
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [storableText(key), storableValue(inner)])) as T;
  }
  return value;
}

interface PathNode {
  parent?: PathNode;
  key: PropertyKey;
}

/** Fields nested deeper than this are named by their first levels only. */
const maximumNamedDepth = 16;

function pathOf(node: PathNode | undefined): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let at = node; at; at = at.parent) path.push(at.key);
  path.reverse();
  return path.length > maximumNamedDepth ? [...path.slice(0, maximumNamedDepth), '…'] : path;
}

/**
 * Every string in a JSON-like value (member names included) that cannot be stored, by field. Walks
 * without recursion and without copying paths: a body of 1 MiB may nest deeper than the stack.
 */
export function unstorableTextProblems(value: unknown, prefix = ''): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const pending: { value: unknown; at?: PathNode }[] = [{ value }];
  while (pending.length > 0 && problems.length < maximumTextProblems) {
    const { value: current, at } = pending.pop()!;
    if (typeof current === 'string') {
      if (unstorableCharacter.test(current)) problems.push({ field: fieldPath(pathOf(at), prefix), reason: unstorableTextReason });
    } else if (Array.isArray(current)) {
      for (let index = current.length - 1; index >= 0; index--) pending.push({ value: current[index], at: { parent: at, key: index } });
    } else if (current !== null && typeof current === 'object') {
      for (const [key, inner] of Object.entries(current).reverse()) {
        if (unstorableCharacter.test(key)) {
          const field = fieldPath(pathOf({ parent: at, key: storableText(key) }), prefix);
          problems.push({ field, reason: `its name ${unstorableTextReason}` });
        } else {
          pending.push({ value: inner, at: { parent: at, key } });
        }
      }
    }
  }
  return problems;
}

/** Throws a ValidationError naming each field of `value` whose text cannot be stored. */
export function refuseUnstorableText(value: unknown, what: string, prefix = ''): void {
  const fields = unstorableTextProblems(value, prefix);
  if (fields.length > 0) throw invalid(what, fields);
}

/**
 * A PostgreSQL data exception (SQLSTATE class 22: text it cannot store, a number out of range, a
 * malformed value), however the driver wraps it. The same input fails the same way every time.
 */
export function isDataException(error: unknown): boolean {
  for (let current = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code)) return true;
  }
  return false;
}
