/**
 * The installation's environment (`production`, `test`, `staging`, ...): which Temporal namespace
 * it uses by default, what its CA names say, and which database and namespace it may start
 * against. Each records the environment at the first start and keeps any other one out.
 */
import { ConfigurationError } from './errors';

/** Lower-case letters, digits and hyphens: it becomes part of a namespace name and of CA names. */
export const environmentNamePattern = /^[a-z][a-z0-9-]{0,31}$/;

export const productionEnvironment = 'production';

/**
 * The refusal when a database or namespace belongs to another environment: starting anyway would
 * mix one environment's devices, certificates or runs into the other's.
 */
export function environmentMismatch(
  target: { kind: 'database' | 'namespace'; name?: string },
  recorded: string,
  configured: string,
): ConfigurationError {
  const what = target.name ? `the ${target.kind} ${target.name}` : `the ${target.kind}`;
  return new ConfigurationError(
    `ENVIRONMENT: ${what} belongs to the ${recorded} environment, but this installation is configured as ${configured}; ` +
      `use a ${target.kind} of the ${configured} environment, or set ENVIRONMENT=${recorded} if this is the ${recorded} installation`,
  );
}
