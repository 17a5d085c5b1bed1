/**
 * One error hierarchy for the whole service. Each error knows its HTTP status (for problem+json
 * answers) and whether retrying could ever help (for activity retry policies), so neither the API
 * nor the activities decide that case by case.
 */

export interface FieldProblem {
  /** JSON path of the offending field, e.g. `devices[0].macAddress`. */
  field: string;
  reason: string;
  /** For problems in an uploaded file: where, as a spreadsheet user sees it. */
  line?: number;
  column?: string;
}

export abstract class ServiceError extends Error {
  abstract readonly status: number;
  /** Whether the same call may succeed later (device offline, HSM busy). */
  abstract readonly retryable: boolean;
  readonly fields: FieldProblem[];

  constructor(message: string, options: { fields?: FieldProblem[]; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.fields = options.fields ?? [];
  }

  /** Stable machine-readable kind; also the Temporal failure type. */
  get type(): string {
    return this.name;
  }
}

function errorClass(name: string, status: number, retryable: boolean) {
  return class extends ServiceError {
    override readonly name = name;
    readonly status = status;
    readonly retryable = retryable;
  };
}

/** Input that can never be accepted as given. */
export class ValidationError extends errorClass('ValidationError', 400, false) {}
/** No acceptable credentials were presented. */
export class UnauthenticatedError extends errorClass('UnauthenticatedError', 401, false) {}
/** The caller is known but its role does not allow the operation. */
export class ForbiddenError extends errorClass('ForbiddenError', 403, false) {}
export class TooManyRequestsError extends errorClass('TooManyRequestsError', 429, true) {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
export class NotFoundError extends errorClass('NotFoundError', 404, false) {}
/** The path exists, but not for this method. */
export class MethodNotAllowedError extends errorClass('MethodNotAllowedError', 405, false) {
  constructor(
    message: string,
    readonly allowedMethods: string[],
  ) {
    super(message);
  }
}
/** The request clashes with existing state (duplicate device, already provisioned). */
export class ConflictError extends errorClass('ConflictError', 409, false) {}
export class UnsupportedMediaTypeError extends errorClass('UnsupportedMediaTypeError', 415, false) {}
export class PayloadTooLargeError extends errorClass('PayloadTooLargeError', 413, false) {}
/** A certificate signing request that must not be signed (bad signature, weak key, wrong names). */
export class BadCsrError extends errorClass('BadCsrError', 422, false) {}
/** The device is not the one we were asked to provision. */
export class IdentityMismatchError extends errorClass('IdentityMismatchError', 422, false) {}
/** The device refused the credentials we hold for it; retrying would only risk a lock-out. */
export class AuthenticationFailedError extends errorClass('AuthenticationFailedError', 422, false) {}
/** A security policy forbids the action. */
export class PolicyViolationError extends errorClass('PolicyViolationError', 422, false) {}
/** The configuration breaks a compliance rule of the tenant's policy and no approver has made an exception. */
export class ComplianceViolationError extends errorClass('ComplianceViolationError', 422, false) {}
/** The device rejected the configuration as invalid. */
export class ConfigurationRejectedError extends errorClass('ConfigurationRejectedError', 422, false) {}
/**
 * A configuration signed centrally for a site's worker to push is no longer fit to send (its
 * signature expired while the worker was away, or it is gone): it must be prepared and signed again.
 */
export class PreparedConfigurationExpiredError extends errorClass('PreparedConfigurationExpiredError', 410, false) {}
/** The device answered its self-test with failures; it may still be settling, so retry a little. */
export class SelfTestFailedError extends errorClass('SelfTestFailedError', 502, true) {}
/** The device cannot be reached or answered with a transient error. */
export class DeviceUnavailableError extends errorClass('DeviceUnavailableError', 503, true) {}
/** The service is at a limit it keeps on purpose (uploads read at once); the caller may try again shortly. */
export class ServiceBusyError extends errorClass('ServiceBusyError', 503, true) {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
/** A dependency of the service (database, Temporal, HSM) is not available right now. */
export class DependencyUnavailableError extends errorClass('DependencyUnavailableError', 503, true) {}
export class NotImplementedError extends errorClass('NotImplementedError', 501, false) {}

/** Failure types that activity retry policies must never retry. */
export const nonRetryableErrorTypes = [
  'ValidationError',
  'NotFoundError',
  'ConflictError',
  'BadCsrError',
  'IdentityMismatchError',
  'AuthenticationFailedError',
  'PolicyViolationError',
  'ComplianceViolationError',
  'ConfigurationRejectedError',
  'PreparedConfigurationExpiredError',
  'NotImplementedError',
];

/** The installation's settings are wrong: found at start, before anything runs. */
export class ConfigurationError extends Error {
  override name = 'ConfigurationError';
}
