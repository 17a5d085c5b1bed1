/**
 * Failures in workflow history keep their message and stack trace in an encoded payload, which the
 * payload codec encrypts like any other: an error that quotes a device's answer or an address is
 * not left readable in history. CommonJS because the worker loads it with require(), outside any
 * TypeScript loader, and bundles it into the workflow sandbox as well.
 */
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
