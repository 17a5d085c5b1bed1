/**
 * Template parameters: what a template declares it takes per device (`{{params.ntpServer}}`,
 * `{{secret.adminPassword}}`), the values a device has for them, and how the two meet at render
 * time. Secret values are only ever named here; their plaintext lives sealed in the vault.
 */
import { z } from 'zod';
import type { FieldProblem } from '../foundation/errors';

export const parameterNamePattern = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const parameterName = z.string().regex(parameterNamePattern, 'must be a letter followed by up to 63 letters, digits or "_"');

export const parameterTypes = ['string', 'integer', 'boolean', 'list', 'secret'] as const;
export type ParameterType = (typeof parameterTypes)[number];

export type ParameterValue = string | number | boolean | string[];

const stringValue = z.string().max(1024);
const listValue = z.array(z.string().max(253)).max(32);
export const parameterValueSchema = z.union([stringValue, z.number(), z.boolean(), listValue]);

export const parameterDeclarationSchema = z
  .object({
    type: z.enum(parameterTypes),
    description: z.string().max(500).optional(),
    /** Used for devices that have no value of their own; secrets have none. */
    default: parameterValueSchema.optional(),
    /** Bounds of an integer parameter. */
    minimum: z.number().int().optional(),
    maximum: z.number().int().optional(),
  })
  .strict()
  .superRefine((declaration, context) => {
    if (declaration.default === undefined) return;
    if (declaration.type === 'secret') {
      context.addIssue({ code: 'custom', path: ['default'], message: 'a secret has no default: each device gets its own' });
      return;
    }
    const problem = typeProblem(declaration, declaration.default);
    if (problem) context.addIssue({ code: 'custom', path: ['default'], message: problem });
  });
export type ParameterDeclaration = z.infer<typeof parameterDeclarationSchema>;

export const parameterDeclarationsSchema = z.record(parameterName, parameterDeclarationSchema).refine(
  (declarations) => Object.keys(declarations).length <= 64,
  'at most 64 parameters',
);
export type ParameterDeclarations = Record<string, ParameterDeclaration>;

/** Why `value` does not fit the declaration, or undefined when it does. */
export function typeProblem(declaration: ParameterDeclaration, value: unknown): string | undefined {
  switch (declaration.type) {
    case 'string':
    case 'secret':
      return typeof value === 'string' ? undefined : 'must be a string';
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'must be true or false';
    case 'list':
      return Array.isArray(value) && value.every((item) => typeof item === 'string') ? undefined : 'must be a list of strings';
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return 'must be an integer';
      if (declaration.minimum !== undefined && value < declaration.minimum) return `must be at least ${declaration.minimum}`;
      if (declaration.maximum !== undefined && value > declaration.maximum) return `must be at most ${declaration.maximum}`;
      return undefined;
  }
}

/**
 * What stands in for a secret wherever its plaintext must not be (previews, validation, hashes,
 * reports). Printable ASCII and long enough to pass the schemas a real password would pass.
 */
export function sealedMarker(name: string): string {
  return `[sealed:${name}]`;
}

/** Per-device values as written through the API: plain ones stored as given, secret ones sealed. */
export const deviceParametersInputSchema = z
  .object({
    values: z.record(parameterName, parameterValueSchema).default({}),
    /** Name → new plaintext, or null to remove it; names not given keep what they have. */
    secrets: z.record(parameterName, z.string().min(1).max(256).nullable()).default({}),
  })
  .strict()
  .superRefine((input, context) => {
    if (Object.keys(input.values).length > 64) context.addIssue({ code: 'custom', path: ['values'], message: 'at most 64 values' });
    if (Object.keys(input.secrets).length > 32) context.addIssue({ code: 'custom', path: ['secrets'], message: 'at most 32 secrets' });
    for (const name of Object.keys(input.values)) {
      if (looksLikeCredential(name)) {
        context.addIssue({
          code: 'custom',
          path: ['values', name],
          message: 'looks like a credential: give it under secrets, so it is sealed and never shown again',
        });
      }
      if (name in input.secrets) {
        context.addIssue({ code: 'custom', path: ['values', name], message: 'is also given as a secret; a name is one or the other' });
      }
    }
  });
export type DeviceParametersInput = z.infer<typeof deviceParametersInputSchema>;

/** Setting names that hold credentials, wherever they appear in a configuration. */
const credentialName = /(password|passwd|passphrase|secret|psk|privatekey|community)$|^(pin|pass)$/i;

export function looksLikeCredential(name: string): boolean {
  return credentialName.test(name.replace(/[^A-Za-z0-9]/g, ''));
}

export interface ResolvedParameters {
  params: Record<string, ParameterValue>;
  /** Names of the secrets the template declares. */
  secretNames: string[];
  problems: FieldProblem[];
}

/**
 * Each declared plain parameter gets the device's value, else the default; a value of the wrong
 * type, or none at all, is a problem named `params.<name>`. Values the template does not declare
 * are ignored: a device may carry values for other templates too.
 */
export function resolveParameters(declarations: ParameterDeclarations, values: Record<string, unknown>): ResolvedParameters {
  const params: Record<string, ParameterValue> = {};
  const secretNames: string[] = [];
  const problems: FieldProblem[] = [];
  for (const [name, declaration] of Object.entries(declarations)) {
    if (declaration.type === 'secret') {
      secretNames.push(name);
      continue;
    }
    const value = values[name] ?? declaration.default;
    if (value === undefined) {
      problems.push({ field: `params.${name}`, reason: 'no value for this device and no default in the template' });
      continue;
    }
    const problem = typeProblem(declaration, value);
    if (problem) problems.push({ field: `params.${name}`, reason: problem });
    else params[name] = value as ParameterValue;
  }
  return { params, secretNames, problems };
}

/** Values to check a template with when it is saved, before any device has values: defaults, else plausible samples. */
export function sampleParameters(declarations: ParameterDeclarations): { params: Record<string, ParameterValue>; secret: Record<string, string> } {
  const params: Record<string, ParameterValue> = {};
  const secret: Record<string, string> = {};
  for (const [name, declaration] of Object.entries(declarations)) {
    if (declaration.type === 'secret') {
      secret[name] = sealedMarker(name);
      continue;
    }
    params[name] =
      declaration.default ??
      (declaration.type === 'integer'
        ? (declaration.minimum ?? Math.min(1, declaration.maximum ?? 1))
        : declaration.type === 'boolean'
          ? false
          : declaration.type === 'list'
            ? ['sample']
            : 'sample');
  }
  return { params, secret };
}
