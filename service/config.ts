/**
 * The one place configuration is read. Every setting comes from the environment, has an embedded
 * default that lets `npm start` run on a fresh clone, and is documented in the README.
 */
import type { FleetPolicyInput } from '../fleet/fleet-policies';
import { ConfigurationError } from '../foundation/errors';
import { environmentNamePattern, productionEnvironment } from '../foundation/installation-environment';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import type { Duration } from '@temporalio/common';
import type { AlertSettings } from '../alerts/rules';
import type { AlertWebhookSettings } from '../alerts/webhook';
import type { TrustedProxies } from '../api/app';
import { DeviceNetworks } from '../adapters/device-networks';
import type { KeyCustodySettings } from '../custody';
import type { CertificateAuthoritySettings } from '../pki/certificate-authority';
import type { ScheduledCaBackupSettings } from '../pki/ca-backup-schedule';
import { defaultWorkerSiteTenant, type WorkerSite } from '../contracts/site-workers';
import { identifierPattern, identifierReason } from '../registry/identifiers';

const port = z.coerce.number().int().min(0).max(65535);
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim()));

const environmentSchema = z.object({
  PORT: port.default(3000),
  HOST: z.string().default('127.0.0.1'),
  DATA_DIR: z.string().default('.data'),
  DATABASE_URL: optionalText,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SERVICE_ROLES: z.string().default('api,worker'),
  SERVICE_ENVIRONMENT: z.enum(['development', 'production']).default('production'),
  ENVIRONMENT: z.string().regex(environmentNamePattern, 'lower-case letters, digits and hyphens, such as production, test or staging').default(productionEnvironment),
  DEVICE_NETWORKS: optionalText,

  TEMPORAL_ADDRESS: optionalText,
  TEMPORAL_NAMESPACE: optionalText,
  TEMPORAL_TASK_QUEUE: z.string().default('device-provisioning'),
  TEMPORAL_PORT: port.default(7233),
  TEMPORAL_UI_PORT: port.default(8233),
  TEMPORAL_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),

  HSM_MODULE: optionalText,
  HSM_TOKEN_LABEL: optionalText,
  HSM_SLOT: z.coerce.number().int().min(0).optional(),
  HSM_PIN: optionalText,
  KEY_ENCRYPTION_KEY: optionalText,

  AUTH_JWT_ISSUER: optionalText,
  AUTH_JWT_AUDIENCE: z.string().default('device-provisioning'),
  AUTH_JWT_PUBLIC_KEY: optionalText,
  AUTH_JWT_ALGORITHMS: z.string().default('ES256,ES384,RS256,EdDSA'),
  PAYLOAD_ENCRYPTION_KEYS: optionalText,
  CODEC_ALLOWED_ORIGINS: optionalText,
  CODEC_UI_DECODE_TENANT: optionalText,
  WORKER_METRICS_ADDRESS: z.string().default('127.0.0.1:9464'),
  METRICS_HOST: z.string().default('127.0.0.1'),
  METRICS_PORT: port.default(9465),
  ALERT_WEBHOOK_URL: optionalText,
  ALERT_WEBHOOK_SECRET: optionalText,
  ALERT_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  ALERT_DELIVERY_RETRY_INITIAL_SECONDS: z.coerce.number().int().positive().default(60),
  ALERT_DELIVERY_RETRY_MAX_SECONDS: z.coerce.number().int().positive().default(3600),
  ALERT_EVALUATION_INTERVAL: z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 5m').default('5m'),
  ALERT_CERT_WARNING_DAYS: z.coerce.number().int().positive().default(30),
  ALERT_CERT_CRITICAL_DAYS: z.coerce.number().int().positive().default(7),
  ALERT_FAILURE_RATE_THRESHOLD: z.coerce.number().gt(0).lte(1).default(0.25),
  ALERT_FAILURE_RATE_MIN_RUNS: z.coerce.number().int().positive().default(5),
  ALERT_FAILURE_RATE_WINDOW_MINUTES: z.coerce.number().int().positive().default(60),
  WORKER_MAX_CONCURRENT_ACTIVITIES: z.coerce.number().int().positive().default(200),
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: z.coerce.number().int().positive().default(100),
  WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES: z.coerce.number().int().positive().default(100),
  UNATTENDED_STEPS: z.enum(['local-first', 'activities']).default('local-first'),
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().positive().default(2000),
  WORKER_SITES: optionalText,
  ALERT_SITE_WORKER_STALE_SECONDS: z.coerce.number().int().positive().default(150),
  API_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().positive().default(1200),
  TRUST_PROXY: optionalText,
  ZERO_TOUCH_FAILED_TOKEN_BURST: z.coerce.number().int().positive().default(10),
  ZERO_TOUCH_FAILED_TOKEN_PER_MINUTE: z.coerce.number().int().positive().default(5),
  BULK_MAX_CONCURRENT_UPLOADS: z.coerce.number().int().positive().default(2),
  HEALTH_CHECK_INTERVAL: z.string().regex(/^\d+(s|m|h)$/, 'a duration such as 5m').default('5m'),
  HEALTH_OFFLINE_AFTER_FAILURES: z.coerce.number().int().min(1).max(100).default(3),
  HEALTH_PROBE_CONCURRENCY: z.coerce.number().int().min(1).max(200).default(20),
  FIRMWARE_UNKNOWN_ACTION: z.enum(['block', 'approve', 'alert']).default('alert'),
  FIRMWARE_KNOWN_BAD_ACTION: z.enum(['block', 'approve', 'alert']).default('block'),
  CREDENTIAL_ROTATION_DAYS: z.coerce.number().int().min(0).max(3650).default(0),

  CA_ROOT_VALIDITY_DAYS: z.coerce.number().int().positive().default(7300),
  CA_INTERMEDIATE_VALIDITY_DAYS: z.coerce.number().int().positive().default(1825),
  DEVICE_CERT_VALIDITY_DAYS: z.coerce.number().int().positive().default(365),
  CA_KEY_ALGORITHM: z.enum(['P-256', 'P-384', 'RSA-3072']).default('P-384'),
  EST_PORT: port.default(8443),
  EST_HOST: z.string().optional(),
  EST_HOST_NAME: z.string().default('localhost'),
  EST_IP_ADDRESSES: z.string().optional(),
  EST_DEFAULT_TENANT: z.string().min(1).default('default'),
  EST_FAILED_AUTH_BURST: z.coerce.number().int().positive().default(10),
  EST_FAILED_AUTH_PER_MINUTE: z.coerce.number().int().positive().default(5),
  PKI_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
  CRL_VALIDITY_HOURS: z.coerce.number().int().positive().max(24 * 30).default(24),
  CRL_PUBLISH_INTERVAL_MINUTES: z.coerce.number().int().positive().default(360),
  CA_ROOT_CRL_VALIDITY_DAYS: z.coerce.number().int().min(3).max(3650).default(180),
  CA_BACKUP_DIRECTORY: optionalText,
  CA_BACKUP_INTERVAL_HOURS: z.coerce.number().int().min(1).max(24 * 7).default(24),
  CA_BACKUP_KEEP: z.coerce.number().int().min(1).max(1000).default(14),
  CA_BACKUP_PASSPHRASE_FILE: optionalText,
  CA_BACKUP_PASSPHRASE: optionalText,
  OCSP_RESPONSE_VALIDITY_MINUTES: z.coerce.number().int().positive().max(7 * 24 * 60).default(60),
  CERT_RENEWAL_AT_FRACTION: z.coerce.number().gt(0).lt(1).default(2 / 3),
  DISCOVERY_SCAN_SECONDS: z.coerce.number().int().min(1).max(60).default(10),
  DISCOVERY_SNMP_COMMUNITIES: z.string().optional(),
});

/** `site-worker`: only the device-facing activities of the sites in `WORKER_SITES` (an edge worker). */
export type ServiceRole = 'api' | 'worker' | 'site-worker';
const serviceRoles: readonly ServiceRole[] = ['api', 'worker', 'site-worker'];

export interface ServiceConfig {
  /**
   * The installation's environment (ENVIRONMENT: `production`, `test`, ...): it picks the default
   * Temporal namespace, is named in every CA's subject outside production, and is recorded in the
   * database and the namespace at the first start; a start against another environment's refuses.
   */
  installationEnvironment: string;
  /** `development` lets the service reach devices on loopback and the embedded Web UI decode without credentials; `production` neither. */
  environment: 'development' | 'production';
  /** Where devices may be reached (DEVICE_NETWORKS, and loopback in development); nothing outside is contacted on a device's behalf. */
  deviceNetworks: DeviceNetworks;
  http: { port: number; host: string; trustProxy: TrustedProxies };
  /** Bulk files this process reads at once; each may take a few hundred MiB while it is read. */
  bulk: { concurrentUploads: number };
  /** What a tenant without a fleet policy of its own gets (health probes, firmware verdicts, credential rotation). */
  fleet: FleetPolicyInput;
  /** RFC 7030 enrolment over its own TLS listener; port 0 turns it off. */
  est: {
    host: string;
    port: number;
    /** Names devices reach it by; its server certificates carry them (and `<tenant>.<name>`). */
    hostNames: string[];
    ipAddresses?: string[];
    defaultTenantId: string;
    failedAuthentications: { burst: number; perMinute: number };
  };
  dataDir: string;
  database: { url?: string; embeddedDir: string };
  logLevel: z.infer<typeof environmentSchema>['LOG_LEVEL'];
  roles: ServiceRole[];
  temporal: {
    /** Set when an existing cluster is used; unset means the embedded dev server is started. */
    address?: string;
    namespace: string;
    taskQueue: string;
    /** How long Temporal keeps a closed run's history; the run's record is archived in the database for good. */
    retentionDays: number;
    devServer: { port: number; uiPort: number; dbFile: string };
  };
  keyCustody: KeyCustodySettings;
  authentication: {
    /** Set when bearer tokens from an identity provider are accepted besides API keys. */
    bearerTokens?: { issuer: string; audience: string; publicKeyPem: string; algorithms: string[] };
    rateLimitPerMinute: number;
    /** Wrong enrolment tokens a client address may present, like failed EST logins. */
    failedEnrolmentTokens: { burst: number; perMinute: number };
  };
  /** Whether bulk and zero-touch runs try their steps as local activities first (see ProvisionDeviceInput). */
  unattendedStepsLocalFirst: boolean;
  worker: {
    activities: number;
    localActivities: number;
    workflowTasks: number;
    cachedWorkflows: number;
    /** Sites whose own task queues this process's worker polls too (device-facing activities only). */
    sites: WorkerSite[];
  };
  alerts: {
    /** Unset: alerts are raised and audited but not delivered. */
    webhook?: AlertWebhookSettings;
    /** How often the alert rules run (a Temporal Schedule). */
    evaluationInterval: Duration;
    settings: AlertSettings;
  };
  metrics: {
    /** Where the worker runtime's own Prometheus exporter binds; unset turns it off. */
    workerAddress?: string;
    /** The /metrics listener, kept off the public API port because it spans every tenant; port 0 turns it off. */
    host: string;
    port: number;
  };
  payloadEncryption: {
    /** `id:base64,...`, the first active; unset means one key derived from the key-encryption key. */
    keys?: string;
    /** Web UI origins allowed to call the codec endpoint. */
    allowedOrigins: string[];
    /**
     * The embedded dev server's Web UI cannot present credentials. Only in development, and only
     * when this names a tenant, the codec decodes that one tenant's payloads for requests from
     * loopback that come from that UI's origin. It never encodes without credentials.
     */
    uiDecodeTenant?: string;
  };
  /** Base64 of a 32-byte AES-256 key; unset means one is generated once under DATA_DIR. */
  keyEncryptionKey?: string;
  /** Scheduled, encrypted CA backups into a directory; absent when CA_BACKUP_DIRECTORY is unset. */
  caBackup?: ScheduledCaBackupSettings;
  discovery: {
    /** How long each scanner of a sweep listens and probes. */
    scanTimeoutMs: number;
    /** v2c read communities a sweep tries, in order; none means SNMPv3 engine discovery only. */
    snmpCommunities: string[];
  };
  ca: CertificateAuthoritySettings;
}

/** Secrets may come from files (`NAME_FILE`), as container secrets are mounted, instead of the environment. */
const fileBackedSecrets = ['KEY_ENCRYPTION_KEY', 'HSM_PIN', 'DATABASE_URL', 'AUTH_JWT_PUBLIC_KEY', 'PAYLOAD_ENCRYPTION_KEYS', 'ALERT_WEBHOOK_SECRET'] as const;

function withFileSecrets(environment: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const resolved = { ...environment };
  for (const name of fileBackedSecrets) {
    const file = environment[`${name}_FILE`];
    if (!file || environment[name]) continue;
    try {
      resolved[name] = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw new ConfigurationError(`${name}_FILE: cannot read ${file}: ${(error as Error).message}`);
    }
  }
  return resolved;
}

function caBackupSettings(env: z.infer<typeof environmentSchema>, directory: string): ScheduledCaBackupSettings {
  const passphrase = env.CA_BACKUP_PASSPHRASE_FILE
    ? { file: env.CA_BACKUP_PASSPHRASE_FILE }
    : env.CA_BACKUP_PASSPHRASE
      ? { value: env.CA_BACKUP_PASSPHRASE }
      : undefined;
  if (!passphrase) throw new ConfigurationError('CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE: one is required when CA_BACKUP_DIRECTORY is set');
  return { directory, intervalHours: env.CA_BACKUP_INTERVAL_HOURS, keep: env.CA_BACKUP_KEEP, passphrase };
}

/** Whether only this machine can reach a listener bound to `host`. */
function isLoopbackHost(host: string): boolean {
  const address = host.replace(/^\[|\]$/g, '');
  if (address === 'localhost') return true;
  if (isIP(address) === 4) return address.startsWith('127.');
  return address === '::1';
}

const proxyKeywords = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** TRUST_PROXY as Express takes it: true/false, a number of hops, or addresses, subnets and keywords. */
function trustedProxies(value: string | undefined): TrustedProxies {
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return Number(value);
  const entries = list(value);
  for (const entry of entries) {
    const [address, prefix, ...rest] = entry.split('/');
    const valid = proxyKeywords.has(entry) || (isIP(address!) !== 0 && rest.length === 0 && (prefix === undefined || /^\d{1,3}$/.test(prefix)));
    if (!valid) throw new ConfigurationError(`TRUST_PROXY: "${entry}" is not an address, subnet, loopback, linklocal or uniquelocal`);
  }
  return entries;
}

/** A comma-separated setting as its trimmed, non-empty items. */
/** `90s`, `5m`, `2h` in seconds, at least `minimum`. */
function durationSeconds(value: string, name: string, minimum: number): number {
  const amount = Number(value.slice(0, -1));
  const seconds = amount * { s: 1, m: 60, h: 3600 }[value.slice(-1) as 's' | 'm' | 'h'];
  if (seconds < minimum) throw new ConfigurationError(`${name}: at least ${minimum}s`);
  return seconds;
}

function list(value: string): string[] {
  return value.split(',').map((item) => item.trim()).filter(Boolean);
}

/**
 * Production keeps the namespace it has always used, so an upgrade leaves its runs where they are;
 * every other environment gets one of its own.
 */
export function defaultNamespace(environment: string): string {
  return environment === productionEnvironment ? 'default' : `provisioning-${environment}`;
}

export function loadConfig(environment: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const parsed = environmentSchema.safeParse(withFileSecrets(environment));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigurationError(`invalid configuration: ${problems.join('; ')}`);
  }
  const env = parsed.data;
  const dataDir = path.resolve(env.DATA_DIR);

  const roles = env.SERVICE_ROLES.split(',').map((role) => role.trim()).filter(Boolean);
  for (const role of roles) {
    if (!serviceRoles.includes(role as ServiceRole)) {
      throw new ConfigurationError(`SERVICE_ROLES: unknown role "${role}" (expected api, worker and/or site-worker)`);
    }
  }
  const workerSites = parseWorkerSites(env.WORKER_SITES);
  if (roles.includes('site-worker') && workerSites.length === 0) {
    throw new ConfigurationError('WORKER_SITES: required for the site-worker role (e.g. north,south or acme/north)');
  }

  let keyCustody: KeyCustodySettings = { kind: 'software' };
  if (env.HSM_MODULE) {
    if (!env.HSM_PIN) throw new ConfigurationError('HSM_PIN: required when HSM_MODULE is set');
    if (!env.HSM_TOKEN_LABEL && env.HSM_SLOT === undefined) {
      throw new ConfigurationError('HSM_TOKEN_LABEL or HSM_SLOT: one is required when HSM_MODULE is set');
    }
    keyCustody = {
      kind: 'pkcs11',
      module: env.HSM_MODULE,
      tokenLabel: env.HSM_TOKEN_LABEL,
      slot: env.HSM_SLOT,
      pin: env.HSM_PIN,
    };
  }

  if (env.ALERT_WEBHOOK_URL && (env.ALERT_WEBHOOK_SECRET ?? '').length < 16) {
    throw new ConfigurationError('ALERT_WEBHOOK_SECRET: at least 16 characters are required when ALERT_WEBHOOK_URL is set');
  }
  if (env.ALERT_CERT_CRITICAL_DAYS >= env.ALERT_CERT_WARNING_DAYS) {
    throw new ConfigurationError('ALERT_CERT_CRITICAL_DAYS: must be less than ALERT_CERT_WARNING_DAYS');
  }
  // Every certificate carries the CRL and OCSP URLs for its lifetime: off this machine the API's
  // own URL is a guess (a bind address, a container name) that devices may never reach.
  if (!env.PKI_PUBLIC_URL && !isLoopbackHost(env.HOST)) {
    throw new ConfigurationError(
      `PKI_PUBLIC_URL: required when HOST (${env.HOST}) is not a loopback address; set it to the base URL devices and verifiers reach /pki at`,
    );
  }
  if (Boolean(env.AUTH_JWT_ISSUER) !== Boolean(env.AUTH_JWT_PUBLIC_KEY)) {
    throw new ConfigurationError('AUTH_JWT_ISSUER and AUTH_JWT_PUBLIC_KEY: set both to accept bearer tokens, or neither');
  }

  if (env.CODEC_UI_DECODE_TENANT && env.SERVICE_ENVIRONMENT !== 'development') {
    throw new ConfigurationError('CODEC_UI_DECODE_TENANT: only a development installation (SERVICE_ENVIRONMENT=development) decodes history without credentials');
  }
  if (env.CODEC_UI_DECODE_TENANT && env.TEMPORAL_ADDRESS) {
    throw new ConfigurationError('CODEC_UI_DECODE_TENANT: only the embedded dev server\'s Web UI decodes without credentials; unset TEMPORAL_ADDRESS or this');
  }
  let deviceNetworks: DeviceNetworks;
  try {
    deviceNetworks = DeviceNetworks.of(env.DEVICE_NETWORKS ? list(env.DEVICE_NETWORKS) : [], { loopback: env.SERVICE_ENVIRONMENT === 'development' });
  } catch (error) {
    throw new ConfigurationError(`DEVICE_NETWORKS: ${(error as Error).message}`);
  }

  const embeddedUiOrigins = env.TEMPORAL_ADDRESS
    ? []
    : [`http://127.0.0.1:${env.TEMPORAL_UI_PORT}`, `http://localhost:${env.TEMPORAL_UI_PORT}`];

  return {
    installationEnvironment: env.ENVIRONMENT,
    environment: env.SERVICE_ENVIRONMENT,
    deviceNetworks,
    http: { port: env.PORT, host: env.HOST, trustProxy: trustedProxies(env.TRUST_PROXY) },
    bulk: { concurrentUploads: env.BULK_MAX_CONCURRENT_UPLOADS },
    fleet: {
      healthChecksEnabled: true,
      healthCheckIntervalSeconds: durationSeconds(env.HEALTH_CHECK_INTERVAL, 'HEALTH_CHECK_INTERVAL', 30),
      offlineAfterFailures: env.HEALTH_OFFLINE_AFTER_FAILURES,
      healthProbeConcurrency: env.HEALTH_PROBE_CONCURRENCY,
      firmwareUnknown: env.FIRMWARE_UNKNOWN_ACTION,
      firmwareKnownBad: env.FIRMWARE_KNOWN_BAD_ACTION,
      credentialRotationDays: env.CREDENTIAL_ROTATION_DAYS === 0 ? null : env.CREDENTIAL_ROTATION_DAYS,
    },
    est: {
      host: env.EST_HOST ?? env.HOST,
      port: env.EST_PORT,
      hostNames: list(env.EST_HOST_NAME),
      ...(env.EST_IP_ADDRESSES ? { ipAddresses: list(env.EST_IP_ADDRESSES) } : {}),
      defaultTenantId: env.EST_DEFAULT_TENANT,
      failedAuthentications: { burst: env.EST_FAILED_AUTH_BURST, perMinute: env.EST_FAILED_AUTH_PER_MINUTE },
    },
    unattendedStepsLocalFirst: env.UNATTENDED_STEPS === 'local-first',
    worker: {
      activities: env.WORKER_MAX_CONCURRENT_ACTIVITIES,
      workflowTasks: env.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
      localActivities: env.WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES,
      cachedWorkflows: env.WORKER_MAX_CACHED_WORKFLOWS,
      sites: workerSites,
    },
    alerts: {
      webhook: env.ALERT_WEBHOOK_URL
        ? {
            url: env.ALERT_WEBHOOK_URL,
            secret: env.ALERT_WEBHOOK_SECRET!,
            timeoutMs: env.ALERT_WEBHOOK_TIMEOUT_MS,
            retry: {
              initialIntervalMs: env.ALERT_DELIVERY_RETRY_INITIAL_SECONDS * 1000,
              maximumIntervalMs: env.ALERT_DELIVERY_RETRY_MAX_SECONDS * 1000,
            },
          }
        : undefined,
      evaluationInterval: env.ALERT_EVALUATION_INTERVAL as Duration,
      settings: {
        certificateExpiry: { warningDays: env.ALERT_CERT_WARNING_DAYS, criticalDays: env.ALERT_CERT_CRITICAL_DAYS },
        provisioningFailureRate: {
          windowMinutes: env.ALERT_FAILURE_RATE_WINDOW_MINUTES,
          threshold: env.ALERT_FAILURE_RATE_THRESHOLD,
          minimumRuns: env.ALERT_FAILURE_RATE_MIN_RUNS,
        },
        siteWorkers: { pollerStaleSeconds: env.ALERT_SITE_WORKER_STALE_SECONDS },
      },
    },
    metrics: {
      workerAddress: env.WORKER_METRICS_ADDRESS.trim() || undefined,
      host: env.METRICS_HOST,
      port: env.METRICS_PORT,
    },
    payloadEncryption: {
      keys: env.PAYLOAD_ENCRYPTION_KEYS,
      allowedOrigins: env.CODEC_ALLOWED_ORIGINS
        ? env.CODEC_ALLOWED_ORIGINS.split(',').map((origin) => origin.trim()).filter(Boolean)
        : embeddedUiOrigins,
      ...(env.CODEC_UI_DECODE_TENANT ? { uiDecodeTenant: env.CODEC_UI_DECODE_TENANT } : {}),
    },
    authentication: {
      bearerTokens:
        env.AUTH_JWT_ISSUER && env.AUTH_JWT_PUBLIC_KEY
          ? {
              issuer: env.AUTH_JWT_ISSUER,
              audience: env.AUTH_JWT_AUDIENCE,
              // Environments often carry a PEM on one line with escaped newlines.
              publicKeyPem: env.AUTH_JWT_PUBLIC_KEY.replace(/\\n/g, '\n'),
              algorithms: env.AUTH_JWT_ALGORITHMS.split(',').map((a) => a.trim()).filter(Boolean),
            }
          : undefined,
      rateLimitPerMinute: env.API_RATE_LIMIT_PER_MINUTE,
      failedEnrolmentTokens: { burst: env.ZERO_TOUCH_FAILED_TOKEN_BURST, perMinute: env.ZERO_TOUCH_FAILED_TOKEN_PER_MINUTE },
    },
    dataDir,
    database: { url: env.DATABASE_URL, embeddedDir: path.join(dataDir, 'postgres') },
    logLevel: env.LOG_LEVEL,
    roles: roles as ServiceRole[],
    temporal: {
      address: env.TEMPORAL_ADDRESS,
      namespace: env.TEMPORAL_NAMESPACE ?? defaultNamespace(env.ENVIRONMENT),
      taskQueue: env.TEMPORAL_TASK_QUEUE,
      retentionDays: env.TEMPORAL_RETENTION_DAYS,
      devServer: {
        port: env.TEMPORAL_PORT,
        uiPort: env.TEMPORAL_UI_PORT,
        dbFile: path.join(dataDir, 'temporal', 'temporal.db'),
      },
    },
    keyCustody,
    keyEncryptionKey: env.KEY_ENCRYPTION_KEY,
    ...(env.CA_BACKUP_DIRECTORY ? { caBackup: caBackupSettings(env, env.CA_BACKUP_DIRECTORY) } : {}),
    discovery: {
      scanTimeoutMs: env.DISCOVERY_SCAN_SECONDS * 1000,
      snmpCommunities: env.DISCOVERY_SNMP_COMMUNITIES ? list(env.DISCOVERY_SNMP_COMMUNITIES) : [],
    },
    ca: {
      rootValidityDays: env.CA_ROOT_VALIDITY_DAYS,
      intermediateValidityDays: env.CA_INTERMEDIATE_VALIDITY_DAYS,
      deviceValidityDays: env.DEVICE_CERT_VALIDITY_DAYS,
      keyAlgorithm: env.CA_KEY_ALGORITHM,
      publicUrl: env.PKI_PUBLIC_URL,
      crlValidityHours: env.CRL_VALIDITY_HOURS,
      crlPublishIntervalMinutes: env.CRL_PUBLISH_INTERVAL_MINUTES,
      rootCrlValidityDays: env.CA_ROOT_CRL_VALIDITY_DAYS,
      ocspResponseValidityMinutes: env.OCSP_RESPONSE_VALIDITY_MINUTES,
      renewalAtFraction: env.CERT_RENEWAL_AT_FRACTION,
      environment: env.ENVIRONMENT,
    },
  };
}

/**
 * `WORKER_SITES`: comma-separated `<tenant>/<site>`, or a bare `<site>` of the installation's first
 * tenant (`default`).
 */
export function parseWorkerSites(value: string | undefined): WorkerSite[] {
  return (value ? list(value) : []).map((entry) => {
    const parts = entry.split('/');
    const [tenantId, site] = parts.length === 1 ? [defaultWorkerSiteTenant, entry] : parts;
    if (parts.length > 2 || ![tenantId, site].every((part) => part !== undefined && identifierPattern.test(part))) {
      throw new ConfigurationError(`WORKER_SITES: "${entry}": each part ${identifierReason} (a site, or <tenant>/<site>)`);
    }
    return { tenantId: tenantId!, site: site! };
  });
}
