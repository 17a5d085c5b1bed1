/**
 * Every operation of the API, as its OpenAPI document lists them, tried without credentials, with
 * each role, and from another tenant: authentication first, then role, and another tenant's
 * objects are indistinguishable from objects that do not exist.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BearerTokenVerifier } from '../../access/bearer-tokens';
import { roleAllows, roles, type Permission } from '../../access/roles';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, type TestDevice } from '../support/devices';
import { createServiceApi } from '../../service/api';
import { startTestService, testLogger, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
let device: TestDevice;
/** Ids of objects that belong to tenant `acme`, by the path parameter that names them. */
const acmeObjects: Record<string, string> = {};

interface DocumentedOperation {
  method: string;
  path: string;
  permission?: Permission;
}

function documentedOperations(): DocumentedOperation[] {
  return Object.entries(api.document.paths as Record<string, Record<string, { 'x-permission'?: Permission }>>).flatMap(
    ([path, methods]) =>
      Object.entries(methods).map(([method, spec]) => ({ method: method.toUpperCase(), path, permission: spec['x-permission'] })),
  );
}

function concretePath(path: string): string {
  return path.replace(/\{([^}]+)\}/g, (_m, name: string) => encodeURIComponent(acmeObjects[name] ?? `unknown-${name}`));
}

/** A body that passes validation, so a refusal can only come from tenancy. */
function validBodyFor(op: DocumentedOperation): unknown {
  if (op.path.endsWith('/templates/{templateId}') && op.method === 'PUT') {
    return { name: 'x', protocol: 'https', body: { hostname: 'x', timezone: 'UTC', site: 's', ntp: { servers: ['n'] }, tls: { minVersion: 'TLSv1.2' }, management: { httpEnabled: false, passwordLogin: true } } };
  }
  if (op.path.endsWith('/cancel')) return { reason: 'test' };
  if (op.path.endsWith('/approval')) return { decision: 'approve' };
  if (op.path.endsWith('/concurrency')) return { concurrency: 2 };
  if (op.path.endsWith('/revoke')) return { reason: 'superseded' };
  if (op.path.endsWith('/certificate-renewal/renew')) return { reason: 'test' };
  if (op.path.endsWith('/rotate-credentials')) return { reason: 'test' };
  if (op.path.endsWith('/intermediate/rotate')) return { overlapDays: 1 };
  if (op.path.endsWith('/discovery/sites/{site}') && op.method === 'PUT') return discoverySiteBody;
  if (op.path.endsWith('/sites/{site}/edge-worker') && op.method === 'PUT') return { edgeWorker: false };
  if (op.path.endsWith('/configuration/parameters') && op.method === 'PUT') return deviceParametersBody;
  if (op.path.endsWith('/templates/{templateId}/rollouts')) return { deviceIds: [acmeObjects.deviceId] };
  if (op.path === '/api/v1/fleet/policy' && op.method === 'PUT') return fleetPolicyBody;
  if (op.path === '/api/v1/fleet/health-checks') return { site: acmeObjects.site };
  if (op.path.endsWith('/firmware/catalogue') && op.method === 'PUT') return firmwareEntryBody;
  if (op.method === 'POST' && (op.path.endsWith('/decommission') || op.path.endsWith('/reprovision'))) return { reason: 'test' };
  if (op.method === 'POST' && op.path.endsWith('/replace')) {
    return { reason: 'test', device: { serialNumber: 'RMA-1', macAddress: '02:00:00:00:bb:01', address: '127.9.9.10:1' } };
  }
  return undefined;
}

const deviceParametersBody = { values: { vlan: 120 }, secrets: {} };

const fleetPolicyBody = {
  healthChecksEnabled: false,
  healthCheckIntervalSeconds: 600,
  offlineAfterFailures: 4,
  healthProbeConcurrency: 10,
  firmwareUnknown: 'alert',
  firmwareKnownBad: 'block',
  credentialRotationDays: null,
};

const firmwareEntryBody = { vendor: 'Acme Optics', model: 'AO-1', version: '1.0.0', status: 'known_bad', reason: 'leaks its keys' };

const discoverySiteBody = { scope: { interfaces: ['lo'], ranges: ['127.80.0.0/30'], allowLoopback: true }, scanners: ['snmp'], intervalMinutes: 60, enabled: false };

/**
 * Operations that create the caller's own object under a name: another tenant using one of
 * acme's names makes its own, leaving acme's alone (asserted separately below).
 */
function createsUnderName(op: DocumentedOperation): boolean {
  return (
    op.method === 'PUT' &&
    (op.path.endsWith('/discovery/sites/{site}') || op.path.endsWith('/sites/{site}/edge-worker') || op.path.endsWith('/devices/{deviceId}/configuration/parameters'))
  );
}

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  device = await startTestDevice();
  const started = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [device.request] } });
  acmeObjects.provisioningId = started.body.provisionings[0].provisioningId;
  await service.env.client.workflow.getHandle(acmeObjects.provisioningId).result();
  const status = await api.call('GET', `/api/v1/provisioning/devices/${acmeObjects.provisioningId}/status`);
  acmeObjects.certificateId = status.body.certificateInfo.certificateId;
  acmeObjects.deviceId = device.request.serialNumber;
  acmeObjects.site = device.request.site;
  // Rotation ids are scoped by the caller's tenant; a well-formed id of no rotation stands in.
  acmeObjects.rotationId = randomUUID();
  const template = await api.call('POST', '/api/v1/provisioning/templates', {
    body: { id: 'acme-private', ...(validBodyFor({ method: 'PUT', path: '/templates/{templateId}' }) as object) },
  });
  acmeObjects.templateId = template.body.id;
  acmeObjects.version = String(template.body.version);
  const parameters = await api.call('PUT', `/api/v1/provisioning/devices/${acmeObjects.deviceId}/configuration/parameters`, {
    body: deviceParametersBody,
  });
  expect(parameters.status).toBe(200);
  // The administrator saved the template, so another principal must excuse it.
  const override = await api.call('POST', '/api/v1/provisioning/compliance/overrides', {
    key: await api.keyFor('acme', 'approver'),
    body: { ruleId: 'syslog-configured', templateId: acmeObjects.templateId, reason: 'no collector on this site yet', expiresAt: new Date(Date.now() + 86_400_000).toISOString() },
  });
  expect(override.status).toBe(201);
  acmeObjects.overrideId = override.body.id;
  const key = await api.call('POST', '/api/v1/access/api-keys', { body: { name: 'acme robot', role: 'viewer' } });
  acmeObjects.apiKeyId = key.body.apiKey.id;
  const policy = await api.call('POST', '/api/v1/provisioning/approval-policies', {
    body: { scope: 'site', scopeValue: 'acme-only', timeoutSeconds: 600 },
  });
  acmeObjects.policyId = policy.body.id;
  const form = new FormData();
  form.set('file', new Blob(['serialNumber,macAddress,address,site\nBULK-1,02:00:00:00:aa:01,127.9.9.9:1,hq\n'], { type: 'text/csv' }), 'one.csv');
  form.set('dryRun', 'false');
  const job = await api.call('POST', '/api/v1/provisioning/bulk', { form });
  acmeObjects.jobId = job.body.jobId;
  const site = await api.call('PUT', `/api/v1/discovery/sites/${encodeURIComponent(acmeObjects.site)}`, { body: discoverySiteBody });
  expect(site.status).toBe(201);
  // Configured, but run centrally: the tests' runs need no edge worker.
  const edgeWorker = await api.call('PUT', `/api/v1/sites/${encodeURIComponent(acmeObjects.site)}/edge-worker`, { body: { edgeWorker: false } });
  expect(edgeWorker.status).toBe(201);
  // The site is disabled, so its sweep finishes at once having scanned nothing.
  const sweep = await api.call('POST', `/api/v1/discovery/sites/${encodeURIComponent(acmeObjects.site)}/sweeps`);
  acmeObjects.sweepId = sweep.body.sweepId;
  const rollout = await api.call('POST', '/api/v1/provisioning/templates/default/rollouts', { body: { deviceIds: [acmeObjects.deviceId] } });
  expect(rollout.status).toBe(202);
  acmeObjects.rolloutId = rollout.body.rolloutId;
  const driftCheck = await api.call('POST', '/api/v1/provisioning/configuration/drift-checks', { body: { action: 'alert' } });
  expect(driftCheck.status).toBe(202);
  acmeObjects.driftCheckId = driftCheck.body.driftCheckId;
  const firmware = await api.call('PUT', '/api/v1/firmware/catalogue', { body: firmwareEntryBody });
  expect(firmware.status).toBe(201);
  acmeObjects.entryId = firmware.body.id;
});

afterAll(async () => {
  await device?.device.stop();
  await api?.close();
  await service?.stop();
});

describe('every operation', () => {
  it('is documented with the permission it requires, unless public', () => {
    const operations = documentedOperations();
    expect(operations.length).toBeGreaterThan(10);
    for (const op of operations) {
      // Relying parties fetch what the CA publishes without credentials; an installer's phone
      // enrols with a single-use token instead of a key.
      if (op.permission === undefined && !op.path.startsWith('/pki/') && !op.path.startsWith('/ui/')) {
        expect(['/healthz', '/api/v1/openapi.json', '/api/v1/provisioning/zero-touch/enrol']).toContain(op.path);
      }
    }
  });

  it('answers 401 without credentials, with a forged key, and with an unsigned token', async () => {
    for (const op of documentedOperations().filter((o) => o.permission)) {
      for (const key of [null, 'dps_aaaaaaaaaaaa_' + 'A'.repeat(43), 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.']) {
        const response = await api.call(op.method, concretePath(op.path), { key, body: validBodyFor(op) });
        expect(response.status, `${op.method} ${op.path}`).toBe(401);
        expect(response.headers.get('www-authenticate')).toContain('Bearer');
      }
    }
  });

  it('answers 403 to each role its permissions do not cover', async () => {
    for (const op of documentedOperations().filter((o) => o.permission)) {
      for (const role of roles.filter((r) => !roleAllows(r, op.permission!))) {
        const response = await api.call(op.method, concretePath(op.path), { key: await api.keyFor('acme', role) });
        expect(response.status, `${role} ${op.method} ${op.path}`).toBe(403);
      }
    }
  });

  it("answers 404 to another tenant naming this tenant's objects, with any role that may use the operation", async () => {
    const withObjects = documentedOperations().filter((o) => o.permission && /\{[^}]+\}/.test(o.path) && !createsUnderName(o));
    expect(withObjects.length).toBeGreaterThan(5);
    for (const op of withObjects) {
      for (const role of roles.filter((r) => roleAllows(r, op.permission!))) {
        const response = await api.call(op.method, concretePath(op.path), {
          key: await api.keyFor('globex', role),
          body: validBodyFor(op),
        });
        expect(response.status, `${role} of globex ${op.method} ${op.path}`).toBe(404);
      }
    }
    // And the objects are still there for their own tenant.
    expect((await api.call('GET', `/api/v1/provisioning/devices/${acmeObjects.provisioningId}/status`)).status).toBe(200);
    expect((await api.call('GET', `/api/v1/provisioning/templates/${acmeObjects.templateId}`)).status).toBe(200);
    expect((await api.call('GET', '/api/v1/discovery/sites')).body.sites).toEqual([expect.objectContaining({ site: acmeObjects.site })]);
    expect((await api.call('GET', '/api/v1/firmware/catalogue')).body.entries).toEqual([expect.objectContaining({ id: acmeObjects.entryId })]);
  });

  it("gives another tenant configuring a site of the same name a site of its own, leaving this tenant's untouched", async () => {
    const sitePath = `/api/v1/discovery/sites/${encodeURIComponent(acmeObjects.site)}`;
    const globex = await api.keyFor('globex', 'administrator');
    const theirs = await api.call('PUT', sitePath, { key: globex, body: { ...discoverySiteBody, intervalMinutes: 120 } });
    expect(theirs.status).toBe(201);
    expect((await api.call('GET', '/api/v1/discovery/sites')).body.sites).toEqual([expect.objectContaining({ site: acmeObjects.site, intervalMinutes: 60 })]);
    expect((await api.call('GET', '/api/v1/discovery/sites', { key: globex })).body.sites).toEqual([expect.objectContaining({ intervalMinutes: 120 })]);
    expect((await api.call('DELETE', sitePath, { key: globex })).status).toBeLessThan(300);
  });

  it("gives another tenant setting a site of the same name to an edge worker a setting of its own, on a queue naming its tenant", async () => {
    const path = `/api/v1/sites/${encodeURIComponent(acmeObjects.site)}/edge-worker`;
    const globex = await api.keyFor('globex', 'administrator');
    const theirs = await api.call('PUT', path, { key: globex, body: { edgeWorker: true } });
    expect(theirs.status).toBe(201);
    expect(theirs.body.taskQueue).toBe(`${service.config.temporal.taskQueue}/sites/globex/${acmeObjects.site}`);
    expect((await api.call('GET', path)).body).toMatchObject({ edgeWorker: false, taskQueue: service.config.temporal.taskQueue });
    expect((await api.call('PUT', path, { key: globex, body: { edgeWorker: false } })).status).toBe(200);
  });

  it("gives another tenant setting parameters for a device of the same id parameters of its own, leaving this tenant's untouched", async () => {
    const path = `/api/v1/provisioning/devices/${acmeObjects.deviceId}/configuration/parameters`;
    const globex = await api.keyFor('globex', 'administrator');
    expect((await api.call('PUT', path, { key: globex, body: { values: { vlan: 7 } } })).status).toBe(200);
    expect((await api.call('GET', path)).body.values).toEqual({ vlan: 120 });
    expect((await api.call('GET', path, { key: globex })).body.values).toEqual({ vlan: 7 });
    // Having parameters does not make the device theirs.
    expect((await api.call('GET', `/api/v1/provisioning/devices/${acmeObjects.deviceId}/compliance`, { key: globex })).status).toBe(404);
  });

  it("never lists another tenant's objects", async () => {
    const key = await api.keyFor('globex', 'administrator');
    const templates = await api.call('GET', '/api/v1/provisioning/templates', { key });
    expect(templates.body.templates.map((t: { id: string }) => t.id)).not.toContain(acmeObjects.templateId);
    const keys = await api.call('GET', '/api/v1/access/api-keys', { key });
    expect(keys.body.apiKeys.map((k: { id: string }) => k.id)).not.toContain(acmeObjects.apiKeyId);
    const overrides = await api.call('GET', '/api/v1/provisioning/compliance/overrides', { key });
    expect(overrides.body.overrides).toEqual([]);
    const firmware = await api.call('GET', '/api/v1/firmware/catalogue', { key });
    expect(firmware.body.entries).toEqual([]);
    const report = await api.call('GET', '/api/v1/firmware/report', { key });
    expect(report.body.unapproved.map((d: { deviceId: string }) => d.deviceId)).not.toContain(acmeObjects.deviceId);
    const root = await api.call('GET', '/api/v1/provisioning/ca/root', { key });
    const acmeRoot = await api.call('GET', '/api/v1/provisioning/ca/root');
    expect(root.body).not.toBe(acmeRoot.body);
  });
});

describe('fleet health', () => {
  it("keeps each tenant's fleet policy, site sweeps and device health events its own", async () => {
    const globex = await api.keyFor('globex', 'administrator');
    expect((await api.call('PUT', '/api/v1/fleet/policy', { body: fleetPolicyBody })).status).toBe(200);
    const theirs = await api.call('PUT', '/api/v1/fleet/policy', { key: globex, body: { ...fleetPolicyBody, offlineAfterFailures: 9 } });
    expect(theirs.body).toMatchObject({ tenantId: 'globex', offlineAfterFailures: 9 });
    expect((await api.call('GET', '/api/v1/fleet/policy', { key: await api.keyFor('acme', 'viewer') })).body).toMatchObject({ tenantId: 'acme', offlineAfterFailures: 4 });

    // The site has an active device in acme only: another tenant naming it finds nothing to sweep.
    const operator = await api.keyFor('acme', 'operator');
    expect((await api.call('POST', '/api/v1/fleet/health-checks', { key: operator, body: { site: acmeObjects.site } })).status).toBe(202);
    expect((await api.call('POST', '/api/v1/fleet/health-checks', { key: await api.keyFor('globex', 'operator'), body: { site: acmeObjects.site } })).status).toBe(404);

    const events = `/api/v1/devices/${acmeObjects.deviceId}/health-events`;
    expect((await api.call('GET', events, { key: await api.keyFor('acme', 'viewer') })).status).toBe(200);
    expect((await api.call('GET', events, { key: await api.keyFor('globex', 'viewer') })).status).toBe(404);
    const badCursor = await api.call('GET', `${events}?cursor=bm90LWEtY3Vyc29y`);
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.errors).toEqual([expect.objectContaining({ field: 'query:cursor' })]);
  });
});

describe('the reporter role', () => {
  it("reports a DHCP server's lease events and nothing else: its key can neither read, issue nor revoke", async () => {
    const reporter = await api.keyFor('acme', 'reporter');
    const lease = await api.call('POST', '/api/v1/discovery/dhcp-events', {
      key: reporter,
      body: { hookVersion: 1, event: 'add', macAddress: '02:00:00:00:99:01', ip: '10.99.0.7', observedAt: new Date().toISOString() },
    });
    expect(lease.status).toBe(202);
    expect(lease.body).toEqual({ matched: [] });

    const refused = [
      await api.call('GET', '/api/v1/access/me', { key: reporter }),
      await api.call('GET', '/api/v1/provisioning/certificates', { key: reporter }),
      await api.call('POST', '/api/v1/provisioning/certificates/generate', { key: reporter, body: { certificateType: 'device', deviceId: acmeObjects.deviceId, csr: 'x' } }),
      await api.call('POST', `/api/v1/provisioning/certificates/${acmeObjects.certificateId}/revoke`, { key: reporter, body: { reason: 'superseded' } }),
      await api.call('POST', '/codec/decode', { key: reporter, body: { payloads: [] } }),
    ];
    expect(refused.map((response) => response.status)).toEqual([403, 403, 403, 403, 403]);
  });
});

describe('API keys', () => {
  it('stop working once revoked', async () => {
    const created = await api.call('POST', '/api/v1/access/api-keys', { body: { name: 'short-lived', role: 'viewer' } });
    expect(created.status).toBe(201);
    expect((await api.call('GET', '/api/v1/access/me', { key: created.body.key })).body).toMatchObject({ tenantId: 'acme', role: 'viewer' });
    await api.call('DELETE', `/api/v1/access/api-keys/${created.body.apiKey.id}`);
    expect((await api.call('GET', '/api/v1/access/me', { key: created.body.key })).status).toBe(401);
  });

  it('are stored only as hashes', async () => {
    const created = await api.call('POST', '/api/v1/access/api-keys', { body: { name: 'hashed', role: 'viewer' } });
    // The secret is base64url and may itself contain underscores.
    const secret = created.body.key.slice('dps_'.length + 12 + 1);
    expect(secret).toHaveLength(43);
    const rows = await service.parts.apiKeys.list('acme');
    expect(JSON.stringify(rows)).not.toContain(secret);
  });
});

describe('bearer tokens', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const verifier = new BearerTokenVerifier({
    issuer: 'https://idp.example.test',
    audience: 'device-provisioning',
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    algorithms: ['ES256'],
  });
  const token = (claims: Record<string, unknown>, options: { issuer?: string; expiresIn?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('alice')
      .setIssuer(options.issuer ?? 'https://idp.example.test')
      .setAudience('device-provisioning')
      .setIssuedAt()
      .setExpirationTime(options.expiresIn ?? '5m')
      .sign(privateKey);

  it('accept a signed token naming a tenant and role', async () => {
    const { principal } = await verifier.verify(await token({ tenant: 'acme', role: 'approver' }));
    expect(principal).toMatchObject({ subject: 'user:alice', tenantId: 'acme', role: 'approver' });
  });

  it('refuse expired tokens, other issuers, unknown roles and tokens signed by another key', async () => {
    expect((await verifier.verify(await token({ tenant: 'acme', role: 'viewer' }, { expiresIn: '-1m' }))).principal).toBeUndefined();
    expect((await verifier.verify(await token({ tenant: 'acme', role: 'viewer' }, { issuer: 'https://evil.test' }))).principal).toBeUndefined();
    expect((await verifier.verify(await token({ tenant: 'acme', role: 'root' }))).principal).toBeUndefined();
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const forged = await new SignJWT({ tenant: 'acme', role: 'administrator' })
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('mallory')
      .setIssuer('https://idp.example.test')
      .setAudience('device-provisioning')
      .setExpirationTime('5m')
      .sign(other);
    expect((await verifier.verify(forged)).principal).toBeUndefined();
  });
});

it('limits each caller to its request budget with 429 and Retry-After', async () => {
  const { RateLimiter } = await import('../../api/rate-limit');
  let now = 0;
  const limiter = new RateLimiter({ perMinute: 60, burst: 3, now: () => now });
  for (let i = 0; i < 3; i += 1) limiter.take('caller');
  expect(() => limiter.take('caller')).toThrowError(/too many requests/);
  limiter.take('someone-else');
  now += 1_000;
  limiter.take('caller');
});

it('documents every route the application mounts in its OpenAPI document', async () => {
  const app = createServiceApi(service.parts, { config: service.config, connection: service.env.connection, logger: testLogger });
  type Layer = { route?: { path: string | string[]; methods: Record<string, boolean> }; name: string; rawPath?: string; handle: { stack?: Layer[] } };
  const mounted: string[] = [];
  for (const layer of (app as unknown as { router: { stack: Layer[] } }).router.stack) {
    if (layer.route) {
      for (const method of Object.keys(layer.route.methods)) mounted.push(`${method.toUpperCase()} ${layer.route.path}`);
    } else if (layer.name === 'router') {
      // Routers (the codec, the PKI publication) list their routes relative to where they are mounted.
      for (const inner of layer.handle.stack ?? []) {
        if (!inner.route || inner.route.path === '*splat') continue;
        const paths = Array.isArray(inner.route.path) ? inner.route.path : [inner.route.path];
        for (const method of Object.keys(inner.route.methods)) {
          // OPTIONS (CORS preflight) and the catch-all 405 answer are protocol plumbing, not operations.
          if (method === 'options' || method === '_all') continue;
          for (const routePath of paths) mounted.push(`${method.toUpperCase()} ${layer.rawPath}${routePath.replace(/\*(\w+)/, ':$1')}`);
        }
      }
    }
  }
  const documented = documentedOperations().map((op) => `${op.method} ${op.path.replace(/\{([^}]+)\}/g, ':$1')}`);
  expect(mounted.length).toBeGreaterThan(20);
  expect(mounted.filter((route) => !documented.includes(route))).toEqual([]);
  expect(documented.filter((route) => !mounted.includes(route))).toEqual([]);
});
