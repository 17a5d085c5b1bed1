import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { allSearchAttributeKeys } from '../contracts/provisioning';

/**
 * The production compose file as Debian's docker-compose renders it (no container engine needed),
 * with no .env of the checkout's. The rendered YAML is read with the YAML library docker-compose
 * itself runs on, so what is checked is what compose would run.
 */
const checkout = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(path.join(os.tmpdir(), 'compose-'));
const emptyEnvFile = path.join(scratch, 'empty.env');
writeFileSync(emptyEnvFile, '');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const required = { PKI_PUBLIC_URL: 'https://provisioning.example.com' };

function compose(environment: Record<string, string>, ...args: string[]) {
  return spawnSync('docker-compose', ['--env-file', emptyEnvFile, '-f', 'docker-compose.yml', 'config', ...args], {
    cwd: checkout,
    env: { PATH: process.env.PATH, ...environment },
    encoding: 'utf8',
  });
}

function yamlToJson(text: string): unknown {
  const parsed = spawnSync('python3', ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], {
    input: text,
    encoding: 'utf8',
  });
  if (parsed.status !== 0) throw new Error(`YAML could not be read: ${parsed.stderr}`);
  return JSON.parse(parsed.stdout);
}

interface ComposeService {
  image?: string;
  command?: string[];
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
  /** Long form, or `[host_ip:]published:target/protocol` where a host address is given. */
  ports?: Array<{ published?: number; target: number } | string>;
  /** `source:target:mode`, with the source resolved to an absolute path. */
  volumes?: string[];
}

interface PublishedPort {
  hostIp?: string;
  published?: number;
  target: number;
}

function publishedPorts(service: ComposeService): PublishedPort[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port !== 'string') return { published: port.published, target: port.target };
    const [hostIp, published, target] = port.replace(/\/\w+$/, '').split(':');
    return { hostIp, published: Number(published), target: Number(target) };
  });
}

function rendered(environment: Record<string, string> = {}): Record<string, ComposeService> {
  const result = compose({ ...required, ...environment });
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return (yamlToJson(result.stdout) as { services: Record<string, ComposeService> }).services;
}

/** The checkout's file a service mounts at `target`. */
/** The file mounted at `target`, or at `within` inside the folder mounted at `target`. */
function mounted(service: ComposeService, target: string, within?: string): string {
  const volume = (service.volumes ?? []).map((entry) => entry.split(':')).find(([, at]) => at === target);
  if (!volume) throw new Error(`nothing is mounted at ${target}`);
  return readFileSync(within ? path.join(volume[0]!, within) : volume[0]!, 'utf8');
}

/** The script a one-off job runs: `sh <mounted script>`. */
function jobScript(service: ComposeService): string {
  expect(service.command?.[0]).toBe('sh');
  return mounted(service, service.command![1]!);
}

describe('the production compose file', () => {
  it('names PKI_PUBLIC_URL explicitly: docker-compose renders it with one and refuses without', () => {
    const file = readFileSync(path.join(checkout, 'docker-compose.yml'), 'utf8');
    expect(file).toMatch(/PKI_PUBLIC_URL: \$\{PKI_PUBLIC_URL:\?[^}]+\}/);
    const refused = compose({}, '-q');
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('set PKI_PUBLIC_URL');
    const accepted = compose(required, '-q');
    expect(accepted.stderr).toBe('');
    expect(accepted.status).toBe(0);
  });

  it('runs a pinned Temporal server, not the deprecated auto-setup image, only after a schema job of the same version succeeded', () => {
    const services = rendered();
    for (const service of Object.values(services)) expect(service.image ?? '').not.toMatch(/auto-setup/);
    const { temporal, 'temporal-schema': schemaJob } = services;
    expect(temporal!.image).toBe('temporalio/server:1.32.2');
    expect(schemaJob!.image).toBe('temporalio/admin-tools:1.32.2');
    expect(temporal!.depends_on).toMatchObject({
      postgres: { condition: 'service_healthy' },
      'temporal-schema': { condition: 'service_completed_successfully' },
    });
    expect(temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgres' });
    // The password comes from the secret, never from the compose file or .env.
    expect(temporal!.environment).not.toHaveProperty('POSTGRES_PWD');
    expect(temporal!.command?.join(' ')).toContain('/run/secrets/postgres-password');
  });

  it('migrates both of the server\'s databases with the schema files the admin tools image ships', () => {
    const { temporal, 'temporal-schema': schemaJob } = rendered();
    expect(schemaJob!.environment).toMatchObject({
      TEMPORAL_DATABASE: temporal!.environment!.DBNAME,
      TEMPORAL_VISIBILITY_DATABASE: temporal!.environment!.VISIBILITY_DBNAME,
      SQL_HOST: temporal!.environment!.POSTGRES_SEEDS,
      SQL_USER: temporal!.environment!.POSTGRES_USER,
    });
    const script = jobScript(schemaJob!);
    expect(schemaJob!.environment!.SQL_PASSWORD_FILE).toBe('/run/secrets/postgres-password');
    expect(schemaJob!.environment).not.toHaveProperty('TEMPORAL_SCHEMA_DIRECTORY');
    expect(script).toContain('schemas="${TEMPORAL_SCHEMA_DIRECTORY:-/etc/temporal/schema}/postgresql/v12"');
    for (const step of ['create-database', 'setup-schema -v 0.0', 'update-schema -d "$schemas/$schema/versioned"']) {
      expect(script).toContain(`temporal-sql-tool --db "$database" ${step}`);
    }
    expect(script).toContain('setup "$TEMPORAL_DATABASE" temporal');
    expect(script).toContain('setup "$TEMPORAL_VISIBILITY_DATABASE" visibility');
  });

  it('registers the namespace with its retention and every search attribute the service queries, before the API and workers start', () => {
    const defaults = rendered();
    const namespaceJob = defaults['temporal-namespace']!;
    expect(namespaceJob.image).toBe('temporalio/admin-tools:1.32.2');
    expect(namespaceJob.depends_on).toMatchObject({ temporal: { condition: 'service_healthy' } });
    expect(namespaceJob.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233', TEMPORAL_NAMESPACE: 'default', TEMPORAL_RETENTION: '30d' });
    const custom = rendered({ TEMPORAL_RETENTION_DAYS: '90', TEMPORAL_NAMESPACE: 'provisioning-prod' });
    expect(custom['temporal-namespace']!.environment).toMatchObject({ TEMPORAL_NAMESPACE: 'provisioning-prod', TEMPORAL_RETENTION: '90d' });
    for (const process of ['api', 'worker']) {
      expect(custom[process]!.environment).toMatchObject({ TEMPORAL_NAMESPACE: 'provisioning-prod', TEMPORAL_RETENTION_DAYS: '90' });
      expect(custom[process]!.depends_on).toMatchObject({ 'temporal-namespace': { condition: 'service_completed_successfully' } });
    }

    const script = jobScript(namespaceJob);
    expect(script).toContain('--retention "$TEMPORAL_RETENTION"');
    // The CLI spells types as `Keyword`, `KeywordList`; the SDK as `KEYWORD`, `KEYWORD_LIST`.
    const created = [...script.matchAll(/--name (\w+) --type (\w+)/g)].map(([, name, type]) => ({
      name,
      type: type!.replace(/(?<=[a-z])(?=[A-Z])/g, '_').toUpperCase(),
    }));
    expect(created).toEqual(allSearchAttributeKeys.map((key) => ({ name: key.name, type: key.type })));
    // SQL visibility preallocates 10 Keyword columns per namespace: the service must leave room.
    expect(created.filter((attribute) => attribute.type === 'KEYWORD').length).toBeLessThanOrEqual(10);
  });

  it('lets the Web UI decrypt history through the API\'s codec, and the API accept the UI\'s origin', () => {
    const defaults = rendered();
    expect(defaults['temporal-ui']!.environment).toMatchObject({
      TEMPORAL_ADDRESS: 'temporal:7233',
      TEMPORAL_CODEC_ENDPOINT: 'http://localhost:3000/codec',
      TEMPORAL_CODEC_PASS_ACCESS_TOKEN: 'true',
    });
    expect(publishedPorts(defaults['temporal-ui']!)).toEqual([{ published: 8233, target: 8080 }]);
    expect(defaults.api!.environment!.CODEC_ALLOWED_ORIGINS).toBe('http://localhost:8233');

    const deployed = rendered({ API_PUBLIC_URL: 'https://provisioning.example.com', TEMPORAL_UI_PUBLIC_URL: 'https://temporal.example.com' });
    expect(deployed['temporal-ui']!.environment!.TEMPORAL_CODEC_ENDPOINT).toBe('https://provisioning.example.com/codec');
    expect(deployed.api!.environment!.CODEC_ALLOWED_ORIGINS).toBe('https://temporal.example.com');
  });

  it('has prometheus scrape the API, every worker and the Temporal server inside the compose network, none of them published', () => {
    const services = rendered();
    const { api, worker, temporal, prometheus } = services;
    for (const process of [api!, worker!]) {
      expect(process.environment).toMatchObject({ METRICS_HOST: '0.0.0.0', METRICS_PORT: '9465' });
    }
    expect(worker!.environment!.WORKER_METRICS_ADDRESS).toBe('0.0.0.0:9464');
    expect(temporal!.environment!.PROMETHEUS_ENDPOINT).toBe('0.0.0.0:9090');
    for (const process of [api!, worker!]) {
      const published = publishedPorts(process).map((port) => port.target);
      expect(published.filter((port) => port === 9464 || port === 9465)).toEqual([]);
    }
    expect(publishedPorts(temporal!)).toEqual([]);
    // Prometheus' own UI stays on this host's loopback.
    expect(publishedPorts(prometheus!)).toEqual([{ hostIp: '127.0.0.1', published: 9090, target: 9090 }]);

    const configuration = yamlToJson(mounted(prometheus!, '/etc/prometheus/prometheus.yml')) as {
      scrape_configs: Array<{
        job_name: string;
        static_configs?: Array<{ targets: string[] }>;
        dns_sd_configs?: Array<{ names: string[]; type: string; port: number }>;
      }>;
    };
    const jobs = Object.fromEntries(configuration.scrape_configs.map((job) => [job.job_name, job]));
    expect(jobs.api?.static_configs).toEqual([{ targets: ['api:9465'] }]);
    // Every replica of the scaled worker service, by the name compose's DNS answers with all of them.
    expect(jobs.worker?.dns_sd_configs).toEqual([{ names: ['worker'], type: 'A', port: 9465 }]);
    expect(jobs.temporal?.static_configs).toEqual([{ targets: ['temporal:9090'] }]);
  });

  it('has Grafana show the service dashboard from the compose Prometheus, its UI on loopback only and its password a secret', () => {
    const { grafana } = rendered();
    expect(publishedPorts(grafana!)).toEqual([{ hostIp: '127.0.0.1', published: 3001, target: 3000 }]);
    expect(grafana!.environment).toMatchObject({ GF_SECURITY_ADMIN_PASSWORD__FILE: '/run/secrets/grafana-admin-password', GF_AUTH_ANONYMOUS_ENABLED: 'false' });
    const datasources = yamlToJson(mounted(grafana!, '/etc/grafana/provisioning', 'datasources/prometheus.yml')) as {
      datasources: Array<{ uid: string; type: string; url: string }>;
    };
    expect(datasources.datasources).toEqual([expect.objectContaining({ uid: 'prometheus', type: 'prometheus', url: 'http://prometheus:9090' })]);
    const providers = yamlToJson(mounted(grafana!, '/etc/grafana/provisioning', 'dashboards/provisioning.yml')) as {
      providers: Array<{ options: { path: string } }>;
    };
    const dashboardsPath = providers.providers[0]!.options.path;
    const dashboard = JSON.parse(mounted(grafana!, `${dashboardsPath}/device-provisioning.json`)) as {
      templating: { list: Array<{ name: string; current?: { value?: string } }> };
    };
    // The dashboard's data source variable picks the provisioned one.
    expect(dashboard.templating.list.find((variable) => variable.name === 'datasource')?.current?.value).toBe('prometheus');
  });
});
