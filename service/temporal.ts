/**
 * Connecting to Temporal: routing the SDK's own logs into ours, waiting for the server at start,
 * and registering the custom search attributes operators filter provisioning runs by.
 */
import { Connection } from '@temporalio/client';
import { IllegalStateError, SearchAttributeType } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { workerRuntimeTelemetry } from '../observability/runtime-metrics';
import proto from '@temporalio/proto';
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { allSearchAttributeKeys } from '../contracts/provisioning';
import type { Logger } from '../foundation/logger';
import { environmentMismatch } from '../foundation/installation-environment';

// A CommonJS module: its namespaces are only reachable through the default export under Node's ESM.
const { IndexedValueType } = proto.temporal.api.enums.v1;

const indexedValueTypes: Record<string, number> = {
  [SearchAttributeType.KEYWORD]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  [SearchAttributeType.TEXT]: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
  [SearchAttributeType.INT]: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  [SearchAttributeType.DOUBLE]: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
  [SearchAttributeType.BOOL]: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
  [SearchAttributeType.DATETIME]: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  [SearchAttributeType.KEYWORD_LIST]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
};

let runtimeInstalled = false;

/** Sends the worker runtime's logs through the service logger; once per process. */
export function installTemporalRuntime(logger: Logger, options: { metricsBindAddress?: string } = {}): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const levels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
    TRACE: 'trace',
    DEBUG: 'debug',
    INFO: 'info',
    WARN: 'warn',
    ERROR: 'error',
  };
  const temporalLogger = logger.child({ component: 'temporal-sdk' });
  try {
    Runtime.install({
      // The service stops in its own order on SIGINT/SIGTERM (API, then worker, then Temporal);
      // the runtime's own handlers would start draining the worker first.
      shutdownSignals: [],
      logger: new DefaultLogger('WARN', ({ level, message, meta }) => {
        temporalLogger[levels[level]](meta ?? {}, message);
      }),
      ...(options.metricsBindAddress ? { telemetryOptions: workerRuntimeTelemetry(options.metricsBindAddress) } : {}),
    });
  } catch (error) {
    // Only "already installed" (e.g. by a test environment) is expected; a taken metrics port is not.
    if (!(error instanceof IllegalStateError)) throw error;
  }
}

/** Connects, retrying while the server is still starting. */
export async function connectWhenReady(address: string, timeoutMs = 60_000): Promise<Connection> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await Connection.connect({ address, connectTimeout: 2_000 });
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`Temporal at ${address} did not answer within ${timeoutMs / 1000} s`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

export async function ensureSearchAttributes(
  connection: Connection,
  namespace: string,
  keys: ReadonlyArray<{ name: string; type: SearchAttributeType }> = allSearchAttributeKeys,
): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = keys.filter((key) => !(key.name in (customAttributes ?? {})));
  if (missing.length > 0) {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, indexedValueTypes[key.type]])),
    });
  }
  return missing.map((key) => key.name);
}

/**
 * Sets how long Temporal keeps a closed run's history in the namespace, when it differs. Runs'
 * records are archived in the database, so retention bounds only what the Web UI and CLI can show.
 * Returns the retention found before, in days.
 */
export async function ensureNamespaceRetention(connection: Connection, namespace: string, days: number): Promise<number | undefined> {
  const seconds = days * 24 * 3600;
  const described = await connection.workflowService.describeNamespace({ namespace });
  const current = described.config?.workflowExecutionRetentionTtl?.seconds;
  const before = current === undefined || current === null ? undefined : Number(current) / (24 * 3600);
  if (Number(current ?? 0) === seconds) return before;
  await connection.workflowService.updateNamespace({
    namespace,
    config: { workflowExecutionRetentionTtl: msToTs(seconds * 1000) },
  });
  return before;
}

/** The key of the namespace's data under which the installation's environment is recorded. */
export const namespaceEnvironmentKey = 'environment';

/**
 * Records the installation's environment in the namespace's data at the first start and refuses a
 * namespace recorded for another environment. Returns whether it recorded it now.
 */
export async function claimNamespaceEnvironment(connection: Connection, namespace: string, environment: string): Promise<boolean> {
  const described = await connection.workflowService.describeNamespace({ namespace });
  const recorded = described.namespaceInfo?.data?.[namespaceEnvironmentKey];
  if (recorded === environment) return false;
  if (recorded) throw environmentMismatch({ kind: 'namespace', name: namespace }, recorded, environment);
  await connection.workflowService.updateNamespace({ namespace, updateInfo: { data: { [namespaceEnvironmentKey]: environment } } });
  return true;
}
