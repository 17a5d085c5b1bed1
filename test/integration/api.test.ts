/**
 * The HTTP API over the real service: request validation answered as problem+json naming the
 * field, tenant isolation of ids, certificates as PEM, templates CRUD, the codec endpoint and health.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../custody/payload-codec';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, waitFor, type TestDevice, type TestDeviceOptions } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices: TestDevice[] = [];

beforeAll(async () => {
  // A development installation whose embedded Web UI may decode tenant default's history.
  service = await startTestService({ database: 'server', environment: { CODEC_UI_DECODE_TENANT: 'default' } });
  api = await startTestApi(service);
});

afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await api?.close();
  await service?.stop();
});

const call: TestApi['call'] = (...args) => api.call(...args);

async function newDevice(options: TestDeviceOptions = {}) {
  const started = await startTestDevice(options);
  devices.push(started);
  return started;
}

function csrFor(commonName: string, sans: string): string {
  const dir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'csr-'));
  execFileSync('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'csr.pem'),
    '-subj', `/CN=${commonName}`, '-addext', `subjectAltName=${sans}`,
  ], { stdio: 'ignore' });
  return readFileSync(path.join(dir, 'csr.pem'), 'utf8');
}

describe('POST /api/v1/provisioning/devices', () => {
  it('starts a provisioning and the status endpoint follows it to completion', async () => {
    const { request } = await newDevice();
    const started = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request] } });
    expect(started.status).toBe(202);
    const [run] = started.body.provisionings;
    expect(run).toMatchObject({ deviceId: request.serialNumber, outcome: 'started' });
    expect(started.headers.get('location')).toBe(run.statusUrl);

    const record = await waitFor(async () => {
      const status = await call('GET', run.statusUrl);
      return status.body.status === 'completed' ? status.body : undefined;
    }, 'provisioning to complete', 60_000);
    expect(record).toMatchObject({ id: run.provisioningId, tenantId: 'default', deviceId: request.serialNumber });
    expect(record.certificateInfo.serialNumber).toMatch(/^[0-9a-f]+$/);
    expect(record.provisioningSteps).toHaveLength(9);
  });

  it('answers malformed JSON with 400 problem+json', async () => {
    const response = await call('POST', '/api/v1/provisioning/devices', { raw: '{"devices": [' });
    expect(response.status).toBe(400);
    expect(response.type).toContain('application/problem+json');
    expect(response.body).toMatchObject({ status: 400, errors: [{ field: '(body)' }] });
  });

  it('names every invalid field of a request', async () => {
    const response = await call('POST', '/api/v1/provisioning/devices', {
      body: {
        devices: [{ serialNumber: 'SN 1', macAddress: 'not-a-mac', address: '10.0.0.1', protocol: 'https', site: 'hq' }],
      },
    });
    expect(response.status).toBe(400);
    const fields = response.body.errors.map((e: { field: string }) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['devices[0].serialNumber', 'devices[0].macAddress']));
  });

  it('rejects an address the protocol cannot reach, naming the field', async () => {
    const { request } = await newDevice();
    const response = await call('POST', '/api/v1/provisioning/devices', {
      body: { devices: [{ ...request, address: 'http://camera:99999' }] },
    });
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'devices[0].address' })]);
  });

  it('rejects unknown protocols, unknown templates and unknown options', async () => {
    const { request } = await newDevice();
    const response = await call('POST', '/api/v1/provisioning/devices', {
      body: { devices: [{ ...request, protocol: 'telnet' }], templateId: 'nope', options: { turbo: true } },
    });
    expect(response.status).toBe(400);
    const fields = response.body.errors.map((e: { field: string }) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['devices[0].protocol', 'options']));

    const template = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request], templateId: 'nope' } });
    expect(template.status).toBe(400);
    expect(template.body.errors).toEqual([{ field: 'templateId', reason: 'no template nope' }]);
  });

  it('rejects the same device named twice in one request', async () => {
    const { request } = await newDevice();
    const response = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request, request] } });
    expect(response.status).toBe(400);
    expect(response.body.errors.map((e: { field: string }) => e.field)).toContain('devices[1].serialNumber');
  });

  it('answers 409 naming the field when another device already has the serial number', async () => {
    const { request } = await newDevice();
    await service.parts.registry.register('default', {
      ...request,
      deviceId: 'someone-else',
      macAddress: '02:ff:ff:ff:ff:01',
    });
    const response = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request] } });
    expect(response.status).toBe(409);
    expect(response.body.errors).toEqual([
      { field: 'devices[0].serialNumber', reason: 'already belongs to device someone-else' },
    ]);
  });

  it('validateOnly returns the plan without starting anything or echoing credentials', async () => {
    const { request } = await newDevice();
    const response = await call('POST', '/api/v1/provisioning/devices', {
      body: { devices: [request], options: { validateOnly: true } },
    });
    expect(response.status).toBe(200);
    expect(response.body.devices[0]).toMatchObject({ deviceId: request.serialNumber, hasCredentials: true });
    expect(JSON.stringify(response.body)).not.toContain(request.credentials.password);
    const status = await call('GET', `/api/v1/provisioning/devices/provision:default:${request.serialNumber}/status`);
    expect(status.status).toBe(404);
  });

  it('answers bodies of the wrong shape or type with 4xx, never 500', async () => {
    for (const raw of ['null', '[]', '"devices"', '42', '{"devices": null}']) {
      const response = await call('POST', '/api/v1/provisioning/devices', { raw });
      expect(response.status, raw).toBe(400);
    }
    const wrongType = await call('POST', '/api/v1/provisioning/devices', {
      raw: 'devices=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(wrongType.status).toBe(415);
  });
});

describe('GET /api/v1/provisioning/devices/{id}/status', () => {
  it('answers 404 for an unknown id and for another tenant\'s id alike', async () => {
    const unknown = await call('GET', '/api/v1/provisioning/devices/provision:default:nobody/status');
    expect(unknown.status).toBe(404);
    expect(unknown.type).toContain('application/problem+json');

    const { request } = await newDevice();
    const globex = await api.keyFor('globex', 'operator');
    const started = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request] }, key: globex });
    const id = started.body.provisionings[0].provisioningId;
    expect((await call('GET', `/api/v1/provisioning/devices/${id}/status`, { key: globex })).status).toBe(200);
    const foreign = await call('GET', `/api/v1/provisioning/devices/${id}/status`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.detail).toBe(unknown.body.detail.replace('provision:default:nobody', id));
  });
});

it('shows the last error of a step that is retrying as the device answered it, decrypted', async () => {
  const { request } = await newDevice({ faults: { failNext: { '/api/v1/configuration': { count: 3, status: 503 } } } });
  const started = await call('POST', '/api/v1/provisioning/devices', { body: { devices: [request] } });
  const retrying = await waitFor(async () => {
    const status = await call('GET', started.body.provisionings[0].statusUrl);
    const step = status.body.provisioningSteps.find((s: { step: string }) => s.step === 'pushConfiguration');
    return step.status === 'in_progress' && step.retryCount > 0 ? step : undefined;
  }, 'the configuration step to retry');
  expect(retrying.error).toContain(`device at ${request.address} refused to`);
  expect(retrying.error).toContain('503');
});

describe('certificates', () => {
  it('issues a certificate from a CSR for a registered device, once per idempotency key, and serves it as PEM', async () => {
    const { request } = await newDevice();
    await service.parts.registry.register('default', { ...request, deviceId: request.serialNumber });
    const csr = csrFor(request.serialNumber, `IP:${request.address.split(":")[0]},URI:urn:dev:mac:${request.macAddress.replace(/:/g, '')}`);
    const body = { deviceId: request.serialNumber, certificateType: 'device', validityPeriod: 30, csr };
    const first = await call('POST', '/api/v1/provisioning/certificates/generate', { body, headers: { 'idempotency-key': 'k1' } });
    expect(first.status).toBe(201);
    expect(first.body.certificate).toMatchObject({
      deviceId: request.serialNumber,
      certificateType: 'device',
      privateKeyLocation: `device:${request.serialNumber}`,
    });
    expect(first.body.certificate.extensions.extendedKeyUsage).toEqual(expect.arrayContaining(['serverAuth', 'clientAuth']));
    const again = await call('POST', '/api/v1/provisioning/certificates/generate', { body, headers: { 'idempotency-key': 'k1' } });
    expect(again.body.certificate.id).toBe(first.body.certificate.id);

    const pem = await call('GET', `/api/v1/provisioning/certificates/${first.body.certificate.id}/pem`);
    expect(pem.type).toContain('application/pem-certificate-chain');
    expect(pem.body).toBe(first.body.pem.trimEnd() + '\n');
    const chain = await call('GET', `/api/v1/provisioning/certificates/${first.body.certificate.id}/chain`);
    expect(chain.body.match(/BEGIN CERTIFICATE/g)).toHaveLength(3);
    const root = await call('GET', '/api/v1/provisioning/ca/root');
    expect(chain.body.endsWith(root.body)).toBe(true);
  });

  it('refuses a CSR for an unregistered device, a CSR it cannot verify, and a subject the registry contradicts', async () => {
    const unregistered = await call('POST', '/api/v1/provisioning/certificates/generate', {
      body: { deviceId: 'ghost', certificateType: 'device', csr: csrFor('ghost', 'DNS:ghost') },
    });
    expect(unregistered.status).toBe(400);
    expect(unregistered.body.errors).toEqual([{ field: 'deviceId', reason: 'no registered device with this id' }]);

    const { request } = await newDevice();
    await service.parts.registry.register('default', { ...request, deviceId: request.serialNumber });
    const wrongName = await call('POST', '/api/v1/provisioning/certificates/generate', {
      body: { deviceId: request.serialNumber, certificateType: 'device', csr: csrFor('not-this-device', 'IP:127.0.0.1') },
    });
    expect(wrongName.status).toBe(422);
    expect(wrongName.body.type).toBe('urn:problem-type:bad-csr');

    const garbage = await call('POST', '/api/v1/provisioning/certificates/generate', {
      body: {
        deviceId: request.serialNumber,
        certificateType: 'device',
        csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      },
    });
    expect(garbage.status).toBe(422);

    const subject = await call('POST', '/api/v1/provisioning/certificates/generate', {
      body: {
        deviceId: request.serialNumber,
        certificateType: 'device',
        csr: csrFor(request.serialNumber, 'IP:127.0.0.1'),
        subject: { commonName: 'other', country: 'DE' },
      },
    });
    expect(subject.status).toBe(400);
    expect(subject.body.errors.map((e: { field: string }) => e.field)).toEqual(['subject.commonName', 'subject.country']);
  });

  it('answers 404 for certificates of another tenant and for ids that are not ids', async () => {
    const intermediate = await call('POST', '/api/v1/provisioning/certificates/generate', {
      body: { certificateType: 'intermediate', site: 'annex' },
    });
    expect(intermediate.status).toBe(201);
    const id = intermediate.body.certificate.id;
    expect((await call('GET', `/api/v1/provisioning/certificates/${id}`)).status).toBe(200);
    expect((await call('GET', `/api/v1/provisioning/certificates/${id}`, { key: await api.keyFor('globex', 'viewer') })).status).toBe(404);
    expect((await call('GET', '/api/v1/provisioning/certificates/not-a-uuid')).status).toBe(404);
  });
});

describe('templates', () => {
  const body = {
    name: 'Lobby cameras',
    protocol: 'https',
    deviceType: 'camera',
    body: {
      hostname: '{{device.hostname}}',
      timezone: 'Europe/Berlin',
      site: '{{device.site}}',
      ntp: { servers: ['10.0.0.1'] },
      syslog: { host: '10.0.0.2', port: 6514, protocol: 'tls' },
      tls: { minVersion: 'TLSv1.3' },
      management: { httpEnabled: false, passwordLogin: false },
    },
  };

  it('lists the built-in default template', async () => {
    const response = await call('GET', '/api/v1/provisioning/templates');
    expect(response.body.templates).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'default', builtIn: true })]));
  });

  it('creates, versions on update, and deletes a template', async () => {
    const created = await call('POST', '/api/v1/provisioning/templates', { body: { ...body, id: 'lobby' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: 'lobby', version: 1, tenantId: 'default' });

    const updated = await call('PUT', '/api/v1/provisioning/templates/lobby', { body: { ...body, name: 'Lobby' } });
    expect(updated.body).toMatchObject({ name: 'Lobby', version: 2 });

    expect((await call('GET', '/api/v1/provisioning/templates/lobby', { key: await api.keyFor('globex', 'viewer') })).status).toBe(404);
    expect((await call('DELETE', '/api/v1/provisioning/templates/lobby')).status).toBe(204);
    expect((await call('GET', '/api/v1/provisioning/templates/lobby')).status).toBe(404);
  });

  it('refuses a template whose settings a device would reject, naming the field', async () => {
    const response = await call('POST', '/api/v1/provisioning/templates', {
      body: { ...body, body: { ...body.body, ntp: { servers: [] }, tls: { minVersion: 'SSLv3' } } },
    });
    expect(response.status).toBe(400);
    expect(response.body.errors.map((e: { field: string }) => e.field)).toEqual(
      expect.arrayContaining(['body.ntp.servers', 'body.tls.minVersion']),
    );
    const unknownVariable = await call('POST', '/api/v1/provisioning/templates', {
      body: { ...body, body: { ...body.body, hostname: '{{device.nickname}}' } },
    });
    expect(unknownVariable.status).toBe(400);
    expect(unknownVariable.body.errors).toEqual([{ field: 'body.hostname', reason: 'unknown template variable {{device.nickname}}' }]);
  });

  it('refuses to change or delete the built-in template', async () => {
    expect((await call('PUT', '/api/v1/provisioning/templates/default', { body })).status).toBe(409);
    expect((await call('DELETE', '/api/v1/provisioning/templates/default')).status).toBe(409);
  });
});

describe('the codec endpoint for the embedded Web UI', () => {
  const uiOrigin = 'http://127.0.0.1:8233';
  const asJson = (payload: Payload) => ({
    metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data!).toString('base64'),
  });

  it('decodes without credentials only for the one tenant it is set to, and only from the Web UI on loopback', async () => {
    const codec = new EncryptionCodec(service.parts.payloadKeyring);
    const secret = defaultPayloadConverter.toPayload({ password: 'ui-visible-secret' });
    const [ofDefault] = await codec.encodeFor('default', [secret]);
    const [ofAcme] = await codec.encodeFor('acme', [secret]);
    const body = { payloads: [asJson(ofDefault), asJson(ofAcme)] };

    const fromUi = await call('POST', '/codec/decode', { key: null, body, headers: { origin: uiOrigin } });
    expect(fromUi.status).toBe(200);
    expect(fromUi.body.payloads[0]).toEqual(asJson(secret));
    expect(fromUi.body.payloads[1]).toEqual(asJson(ofAcme));

    expect((await call('POST', '/codec/decode', { key: null, body })).status).toBe(401);
  });

  it('never encodes without credentials, not even for the Web UI', async () => {
    const body = { payloads: [asJson(defaultPayloadConverter.toPayload('forged input'))] };
    expect((await call('POST', '/codec/encode', { key: null, body, headers: { origin: uiOrigin } })).status).toBe(401);
  });
});

describe('GET /healthz', () => {
  it('reports the database and Temporal as up', async () => {
    const response = await call('GET', '/healthz', { key: null });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ status: 'ok', checks: { database: { status: 'up' }, temporal: { status: 'up' } } });
  });
});

it('answers unknown routes with a 404 problem', async () => {
  const response = await call('GET', '/api/v1/provisioning/nothing-here');
  expect(response.status).toBe(404);
  expect(response.type).toContain('application/problem+json');
});

describe('text the database cannot store', () => {
  it('is refused wherever the API takes text (fields, member names, query), naming the field, never a 500', async () => {
    const refused = async (method: string, path: string, options: Parameters<TestApi['call']>[2], field: string) => {
      const response = await call(method, path, options);
      expect(response.status, `${method} ${path}`).toBe(400);
      expect(response.body.errors).toContainEqual({ field, reason: expect.stringContaining('cannot be stored') });
    };
    await refused('POST', '/api/v1/access/api-keys', { body: { name: 'ci\u0000', role: 'viewer' } }, 'name');
    await refused('POST', '/api/v1/access/api-keys', { raw: '{"name": "ci\\ud800", "role": "viewer"}' }, 'name');
    await refused('POST', '/api/v1/provisioning/templates', { body: { id: 'nul', name: 'Lobby\u0000', protocol: 'https', body: {} } }, 'name');
    await refused('POST', '/api/v1/provisioning/approval-policies', { body: { scope: 'site', scopeValue: 'vault\u0000', timeoutSeconds: 60 } }, 'scopeValue');
    await refused('POST', '/api/v1/provisioning/zero-touch', {
      body: { devices: [{ serialNumber: 'ZT-NUL', protocol: 'https', site: 'hq', name: 'door\u0000' }] },
    }, 'devices[0].name');
    await refused('POST', '/api/v1/provisioning/devices', { body: { devices: [{ 'serial\u0000Number': 'X' }] } }, 'devices[0].serial\\u0000Number');
    await refused('GET', '/api/v1/audit/events?action=%00', {}, 'query:action');
  });

  it('in a path parameter is refused with 400 and the refused attempt is on record, escaped', async () => {
    const response = await call('POST', '/api/v1/provisioning/devices/provision:default:x%00y/cancel', { body: {} });
    expect(response.status).toBe(400);
    expect(response.body.errors).toEqual([{ field: 'path:provisioningId', reason: expect.stringContaining('cannot be stored') }]);
    const events = (await call('GET', '/api/v1/audit/events?action=api.cancel_provisioning&limit=500')).body.events;
    expect(events).toContainEqual(
      expect.objectContaining({ outcome: 'failure', targetId: 'provision:default:x\\u0000y', details: expect.objectContaining({ status: 400 }) }),
    );
  });
});

it('answers an audit page after a sequence beyond what the database holds with 400 naming the parameter', async () => {
  const response = await call('GET', '/api/v1/audit/events?after=2147483648');
  expect(response.status).toBe(400);
  expect(response.body.errors).toEqual([expect.objectContaining({ field: 'query:after' })]);
  expect((await call('GET', '/api/v1/audit/events?after=2147483647')).body.events).toEqual([]);
});

it('answers a method a known path does not take with 405, the methods it takes in Allow, as a problem', async () => {
  const health = await call('DELETE', '/healthz', { key: null });
  expect(health.status).toBe(405);
  expect(health.headers.get('allow')).toBe('GET, HEAD');
  expect(health.type).toContain('application/problem+json');
  const template = await call('PATCH', '/api/v1/provisioning/templates/default', { body: {} });
  expect(template.status).toBe(405);
  expect(template.headers.get('allow')).toBe('DELETE, GET, HEAD, PUT');
  expect((await call('PATCH', '/api/v1/provisioning/nothing-here')).status).toBe(404);
});

describe('the OpenAPI document', () => {
  it('describes the request body of every operation that reads JSON, and every route the README lists', async () => {
    const { paths } = api.document;
    expect(paths['/api/v1/provisioning/zero-touch'].post.requestBody.content['application/json'].schema).toBeDefined();
    expect(paths['/api/v1/discovery/dhcp-events'].post.requestBody.content['application/json'].schema).toBeDefined();
    expect(paths['/api/v1/discovery/sites/{site}'].get).toBeDefined();
    expect(paths['/api/v1/fleet/policy'].put.requestBody.content['application/json'].schema).toBeDefined();
    expect(paths['/api/v1/fleet/policy'].get['x-permission']).toBe('configuration:read');
    expect(paths['/api/v1/fleet/health-checks'].post.requestBody.content['application/json'].schema).toBeDefined();
    expect(paths['/api/v1/devices/{deviceId}/health-events'].get['x-permission']).toBe('provisioning:read');
    const site = await call('GET', '/api/v1/discovery/sites/nowhere');
    expect(site.status).toBe(404);
  });
});

describe('audit trail', () => {
  it('records every change made through the API with its actor, and refused attempts as failures', async () => {
    await call('POST', '/api/v1/provisioning/templates', {
      body: {
        id: 'audited',
        name: 'Audited',
        protocol: 'https',
        body: {
          hostname: '{{device.hostname}}', timezone: 'UTC', site: '{{device.site}}', ntp: { servers: ['10.0.0.1'] },
          tls: { minVersion: 'TLSv1.3' }, management: { httpEnabled: false, passwordLogin: false },
        },
      },
    });
    await call('DELETE', '/api/v1/provisioning/templates/default');
    const created = (await call('GET', '/api/v1/audit/events?action=api.create_template')).body.events[0];
    const deletions = (await call('GET', '/api/v1/audit/events?action=api.delete_template&targetType=templateId')).body.events;
    const refused = deletions.find((e: { targetId: string }) => e.targetId === 'default');
    expect(created).toMatchObject({ outcome: 'success', actorType: 'api-key' });
    expect(created.actor).toMatch(/^api-key:/);
    expect(refused).toMatchObject({ outcome: 'failure', details: expect.objectContaining({ status: 409 }) });
    expect((await call('GET', '/api/v1/audit/verify')).body).toMatchObject({ ok: true });
  });

  it('records failed logins without the presented secret', async () => {
    const forged = 'dps_zzzzzzzzzzzz_' + 'B'.repeat(43);
    expect((await call('GET', '/api/v1/access/me', { key: forged })).status).toBe(401);
    const failures = await service.parts.audit.list('_system', { action: 'auth.login_failed', limit: 500 });
    expect(failures.length).toBeGreaterThan(0);
    expect(JSON.stringify(failures)).not.toContain('B'.repeat(43));
    expect(failures.at(-1)).toMatchObject({ outcome: 'failure', details: expect.objectContaining({ method: 'api-key' }) });
  });
});
