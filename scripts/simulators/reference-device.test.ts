import { createHash, createPrivateKey, sign, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientTlsIdentity, DeviceCredentials } from '../../adapters/device-adapter';
import { deviceApiPaths as paths } from '../../adapters/https/protocol';
import { signConfiguration, type SignedDeviceConfiguration } from '../../pki/configuration-signing';
import { OpensslTestCa, type SigningIdentity } from './openssl-test-ca';
import { canonicalJson, ReferenceDevice, type ReferenceDeviceOptions } from './reference-device';

const credentials = { username: 'admin', password: 'Factory-Default-7' };

const settings = {
  hostname: 'door-07',
  timezone: 'America/New_York',
  site: 'warehouse',
  ntp: { servers: ['127.0.0.1'] },
  tls: { minVersion: 'TLSv1.3' },
  management: { httpEnabled: false, passwordLogin: true },
};

interface Answer {
  status: number;
  body: any;
  peer: X509Certificate;
  /** Subjects of the chain the device sent, leaf first (a self-signed certificate ends it). */
  chain: string[];
}

/** One request on its own connection, as a client of the device's management API. */
function call(
  device: ReferenceDevice,
  method: string,
  path: string,
  options: { body?: unknown; rawBody?: string; auth?: DeviceCredentials | null; identity?: ClientTlsIdentity } = {},
): Promise<Answer> {
  const [host, port] = device.address.split(':');
  const auth = options.auth === undefined ? credentials : options.auth;
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host,
        port: Number(port),
        method,
        path,
        agent: false,
        rejectUnauthorized: false,
        headers: {
          ...(auth ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
        ...(options.identity
          ? { key: options.identity.privateKeyPem, cert: [options.identity.certificatePem, ...options.identity.chainPem].join('') }
          : {}),
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const peer = socket.getPeerX509Certificate()!;
        const chain: string[] = [];
        for (let c: X509Certificate | undefined = peer; c && !chain.includes(c.subject); c = c.issuerCertificate) {
          chain.push(c.subject);
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined, peer, chain });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

let ca: OpensslTestCa;
let strangerCa: OpensslTestCa;
let clientIdentity: ClientTlsIdentity;
let configurationSigner: SigningIdentity;
const devices: ReferenceDevice[] = [];

beforeAll(() => {
  ca = new OpensslTestCa('Device Test');
  strangerCa = new OpensslTestCa('Stranger');
  clientIdentity = ca.issueClientIdentity('provisioning-service');
  configurationSigner = ca.issueConfigurationSigner();
});
afterAll(() => {
  ca?.dispose();
  strangerCa?.dispose();
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.stop()));
});

let counter = 0;
async function startDevice(options: Partial<ReferenceDeviceOptions> = {}): Promise<ReferenceDevice> {
  counter += 1;
  const device = new ReferenceDevice({
    serialNumber: `RD-UNIT-${String(counter).padStart(4, '0')}`,
    macAddress: `02:00:00:00:00:${counter.toString(16).padStart(2, '0')}`,
    model: 'RD-DC-2',
    deviceType: 'door_controller',
    credentials,
    ...options,
  });
  devices.push(device);
  await device.start();
  return device;
}

async function enrol(device: ReferenceDevice, trustAnchorsPem = [ca.rootPem]): Promise<string> {
  const csr = await call(device, 'POST', paths.csr, {
    body: { commonName: device.serialNumber, keyAlgorithm: 'P-256', subjectAltNames: { dns: [], ip: ['127.0.0.1'], uri: [] } },
  });
  const certificatePem = ca.signDeviceCsr(csr.body.csrPem);
  const installed = await call(device, 'PUT', paths.certificate, {
    body: { certificatePem, chainPem: [ca.intermediatePem, ca.rootPem], trustAnchorsPem },
  });
  expect(installed.status).toBe(200);
  return certificatePem;
}

/** The configuration as the service sends it: signed for this device by a configuration signer. */
function signedFor(
  device: ReferenceDevice,
  configuration: { templateId: string; version: number; settings: Record<string, unknown> },
  options: { signer?: SigningIdentity; serialNumber?: string; now?: Date; lifetimeMs?: number } = {},
): Promise<SignedDeviceConfiguration> {
  const signer = options.signer ?? configurationSigner;
  const key = createPrivateKey(signer.privateKeyPem);
  return signConfiguration(
    configuration,
    { tenant: 'acme', deviceId: 'door-07', serialNumber: options.serialNumber ?? device.serialNumber },
    { certificatePem: signer.certificatePem, chainPem: signer.chainPem, sign: async (data) => sign('sha256', data, { key, dsaEncoding: 'der' }) },
    options,
  );
}

describe('reference device', () => {
  it('answers identity without authentication, in factory state, with its firmware hash', async () => {
    const device = await startDevice();
    const { status, body } = await call(device, 'GET', paths.identity, { auth: null });
    expect(status).toBe(200);
    expect(body).toEqual({
      serialNumber: device.serialNumber,
      macAddress: device.macAddress,
      manufacturer: 'Reference Devices',
      model: 'RD-DC-2',
      firmwareVersion: '1.0.0',
      firmwareHash: expect.stringMatching(/^[0-9a-f]{64}$/),
      deviceType: 'door_controller',
      capabilities: ['csr:P-256', 'csr:P-384', 'csr:RSA-2048', 'mtls', 'configuration:v1', 'self-test'],
      state: 'factory',
    });
    // The same firmware release hashes the same on every unit.
    const twin = await startDevice();
    expect((await call(twin, 'GET', paths.identity)).body.firmwareHash).toBe(body.firmwareHash);
  });

  it('serves a self-signed P-256 factory certificate whose CN is its serial number', async () => {
    const device = await startDevice();
    const { peer } = await call(device, 'GET', paths.identity);
    expect(peer.subject).toBe(`CN=${device.serialNumber}`);
    expect(peer.issuer).toBe(peer.subject);
    expect(peer.verify(peer.publicKey)).toBe(true);
    expect(peer.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(createHash('sha256').update(peer.raw).digest('hex')).toBe(device.factoryCertificateFingerprint);
  });

  it.each(['P-256', 'P-384', 'RSA-2048'])('makes a fresh %s key and a PKCS#10 request that openssl verifies, with the requested names', async (keyAlgorithm) => {
    const device = await startDevice();
    const { status, body, peer } = await call(device, 'POST', paths.csr, {
      body: {
        commonName: device.serialNumber,
        keyAlgorithm,
        subjectAltNames: { dns: ['door-07.warehouse.example'], ip: ['127.0.0.1', '2001:db8::7'], uri: ['urn:device:door-07'] },
      },
    });
    expect(status).toBe(201);
    const text = ca.verifyCsr(body.csrPem);
    expect(text).toContain(`Subject: CN = ${device.serialNumber}`);
    expect(text).toMatch(/DNS:door-07\.warehouse\.example, IP Address:127\.0\.0\.1, IP Address:2001:DB8:0:0:0:0:0:7, URI:urn:device:door-07/);
    expect(text).toContain(keyAlgorithm === 'RSA-2048' ? 'Public-Key: (2048 bit)' : keyAlgorithm === 'P-384' ? 'NIST CURVE: P-384' : 'NIST CURVE: P-256');
    // The new key is not the factory key.
    expect(text).not.toContain(peer.publicKey.export({ type: 'spki', format: 'der' }).toString('hex').slice(-40));
  });

  it('rejects a CSR request with an unknown algorithm or bad names, listing the fields', async () => {
    const device = await startDevice();
    const { status, body } = await call(device, 'POST', paths.csr, {
      body: { commonName: 'x', keyAlgorithm: 'Ed25519', subjectAltNames: { dns: ['bad name'], ip: ['1.2.3'], uri: [] } },
    });
    expect(status).toBe(422);
    expect(body.fields.map((f: { field: string }) => f.field)).toEqual(
      expect.arrayContaining(['keyAlgorithm', 'subjectAltNames.dns[0]', 'subjectAltNames.ip[0]']),
    );
  });

  it('locks out for a while after five failed logins in a row, refusing even the right password meanwhile', async () => {
    const device = await startDevice({ lockoutMs: 300 });
    const wrong = { ...credentials, password: 'guess' };
    for (let i = 0; i < 5; i++) expect((await call(device, 'POST', paths.verifySession, { auth: wrong })).status).toBe(401);
    expect((await call(device, 'POST', paths.verifySession)).status).toBe(423);
    await new Promise((r) => setTimeout(r, 350));
    expect((await call(device, 'POST', paths.verifySession)).status).toBe(204);
    expect((await call(device, 'POST', paths.verifySession, { auth: null })).status).toBe(401);
  });

  it('installs a certificate for its pending key, then serves it with its chain on the same port and requires mutual TLS', async () => {
    const device = await startDevice();
    const address = device.address;
    const certificatePem = await enrol(device);

    expect(device.address).toBe(address);
    expect(device.certificatePem).toBe(certificatePem);
    const answer = await call(device, 'GET', paths.status, { auth: null, identity: clientIdentity });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ state: 'provisioned', uptimeSeconds: expect.any(Number), certificateFingerprint: device.certificateFingerprint });
    expect(answer.peer.fingerprint256).toBe(new X509Certificate(certificatePem).fingerprint256);
    expect(answer.chain).toEqual([`CN=${device.serialNumber}`, 'CN=Device Test Site Intermediate CA', 'CN=Device Test Root CA']);

    expect((await call(device, 'GET', paths.identity, { auth: null })).status).toBe(401);
    await expect(call(device, 'GET', paths.status, { identity: strangerCa.issueClientIdentity('intruder') })).rejects.toThrow();
  });

  it('given the services intermediate as its anchor, accepts the service and hangs up on another device of the same root', async () => {
    const device = await startDevice();
    await enrol(device, [ca.servicesIntermediatePem]);
    expect((await call(device, 'GET', paths.status, { auth: null, identity: clientIdentity })).status).toBe(200);
    // A camera's certificate: clientAuth, from the site intermediate under the very same root.
    const camera = ca.issueDeviceIdentity('cam-lobby-01');
    await expect(call(device, 'GET', paths.status, { auth: null, identity: camera })).rejects.toThrow();
    await expect(call(device, 'GET', paths.status, { auth: null, identity: { ...camera, chainPem: [ca.intermediatePem, ca.rootPem] } })).rejects.toThrow();
    // Configurations come from a signer under the same anchor.
    const applied = await call(device, 'PUT', paths.configuration, { auth: null, identity: clientIdentity, body: await signedFor(device, { templateId: 'door', version: 1, settings }) });
    expect(applied.status).toBe(200);
  });

  it('refuses a certificate for another key with 409 and treats reinstalling the installed one as a no-op', async () => {
    const device = await startDevice();
    const foreign = ca.signDeviceCsr(ca.foreignCsr(device.serialNumber));
    const installation = { chainPem: [ca.intermediatePem], trustAnchorsPem: [ca.rootPem] };
    // No pending key yet, then a pending key that is not the certificate's.
    expect((await call(device, 'PUT', paths.certificate, { body: { certificatePem: foreign, ...installation } })).status).toBe(409);
    await call(device, 'POST', paths.csr, { body: { commonName: 'x', keyAlgorithm: 'P-256' } });
    expect((await call(device, 'PUT', paths.certificate, { body: { certificatePem: foreign, ...installation } })).status).toBe(409);

    const certificatePem = await enrol(device);
    const again = await call(device, 'PUT', paths.certificate, { identity: clientIdentity, body: { certificatePem, ...installation } });
    expect(again.status).toBe(200);
    expect(again.body.fingerprint).toBe(device.certificateFingerprint);
  });

  it('applies a valid configuration and reports the SHA-256 of its canonical JSON', async () => {
    const device = await startDevice();
    const { status, body } = await call(device, 'PUT', paths.configuration, { body: { templateId: 'door', version: 2, settings } });
    expect(status).toBe(200);
    const expected = createHash('sha256').update(canonicalJson(settings)).digest('hex');
    expect(body).toEqual({ version: 2, hash: expected, appliedAt: expect.any(String) });
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
    expect((await call(device, 'GET', paths.status)).body).toEqual({
      state: 'provisioned',
      uptimeSeconds: expect.any(Number),
      configurationVersion: 2,
      configurationHash: expected,
    });
  });

  it('rejects unknown keys and invalid values with 422 and a field list', async () => {
    const device = await startDevice();
    const { status, body } = await call(device, 'PUT', paths.configuration, {
      body: {
        templateId: 'door',
        version: 1,
        extra: true,
        settings: {
          ...settings,
          hostname: 'x'.repeat(64),
          timezone: 'Mars/Olympus_Mons',
          ntp: { servers: ['a', 'b', 'c', 'd', 'e'] },
          syslog: { host: 'logs', port: 70000, protocol: 'http' },
          tls: { minVersion: 'TLSv1.1' },
          management: { httpEnabled: 'yes', passwordLogin: true, telnet: true },
        },
      },
    });
    expect(status).toBe(422);
    expect(body.fields.map((f: { field: string }) => f.field).sort()).toEqual(
      [
        '(root)',
        'settings.hostname',
        'settings.management',
        'settings.management.httpEnabled',
        'settings.ntp.servers',
        'settings.syslog.port',
        'settings.syslog.protocol',
        'settings.timezone',
        'settings.tls.minVersion',
      ].sort(),
    );
    expect(device.configuration).toBeUndefined();
  });

  it('refuses password logins once configured with passwordLogin false', async () => {
    const device = await startDevice();
    const off = { ...settings, management: { httpEnabled: false, passwordLogin: false } };
    expect((await call(device, 'PUT', paths.configuration, { body: { templateId: 'door', version: 1, settings: off } })).status).toBe(200);
    const refused = await call(device, 'POST', paths.verifySession);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatch(/password login is disabled/);
  });

  it('activates only with configuration in place, and not while a requested certificate is missing', async () => {
    const device = await startDevice();
    expect((await call(device, 'POST', paths.activate)).status).toBe(409);
    await call(device, 'PUT', paths.configuration, { body: { templateId: 'door', version: 1, settings } });
    await call(device, 'POST', paths.csr, { body: { commonName: 'x', keyAlgorithm: 'P-256' } });
    const blocked = await call(device, 'POST', paths.activate);
    expect(blocked.status).toBe(409);
    expect(blocked.body.error).toMatch(/certificate/);

    const plain = await startDevice();
    await call(plain, 'PUT', paths.configuration, { body: { templateId: 'door', version: 1, settings } });
    expect((await call(plain, 'POST', paths.activate)).body).toEqual({ state: 'active' });
    expect(plain.state).toBe('active');
  });

  it('self-tests what is really there: a requested but missing certificate, configuration, NTP and firmware', async () => {
    const device = await startDevice();
    await call(device, 'POST', paths.csr, { body: { commonName: 'x', keyAlgorithm: 'P-256' } });
    const before = await call(device, 'POST', paths.selfTest);
    expect(before.body.passed).toBe(false);
    expect(before.body.checks.filter((c: { passed: boolean }) => !c.passed).map((c: { name: string }) => c.name)).toEqual([
      'certificate',
      'trust-anchors',
      'configuration',
      'ntp',
    ]);

    await enrol(device);
    const signed = await signedFor(device, { templateId: 'door', version: 1, settings });
    expect((await call(device, 'PUT', paths.configuration, { identity: clientIdentity, body: signed })).status).toBe(200);
    const after = await call(device, 'POST', paths.selfTest, { identity: clientIdentity });
    expect(after.body.passed).toBe(true);

    device.setFaults({ failSelfTest: true });
    const damaged = await call(device, 'POST', paths.selfTest, { identity: clientIdentity });
    expect(damaged.body.passed).toBe(false);
    expect(damaged.body.checks.at(-1)).toMatchObject({ name: 'firmware-integrity', passed: false });
  });

  it('injects faults: failures for N requests, latency, an identity lie and refused configuration', async () => {
    const device = await startDevice({ faults: { failNext: { [paths.status]: { count: 2, status: 503 } } } });
    expect((await call(device, 'GET', paths.status)).status).toBe(503);
    expect((await call(device, 'GET', paths.status)).status).toBe(503);
    expect((await call(device, 'GET', paths.status)).status).toBe(200);

    device.setFaults({ latencyMs: { [paths.identity]: 150 }, reportedSerialNumber: 'SOMEONE-ELSE' });
    const started = Date.now();
    expect((await call(device, 'GET', paths.identity)).body.serialNumber).toBe('SOMEONE-ELSE');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);

    device.setFaults({ refuseConfiguration: true });
    expect((await call(device, 'PUT', paths.configuration, { body: { templateId: 'door', version: 1, settings } })).status).toBe(422);
    device.clearFaults();
    expect((await call(device, 'PUT', paths.configuration, { body: { templateId: 'door', version: 1, settings } })).status).toBe(200);
  });

  it('holds requests to a hung path until release()', async () => {
    const device = await startDevice({ faults: { hang: [paths.identity] } });
    let answered = false;
    const pending = call(device, 'GET', paths.identity).then((a) => {
      answered = true;
      return a;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(answered).toBe(false);
    device.setFaults({ hang: [] });
    device.release();
    expect((await pending).status).toBe(200);
  });

  it('stops cleanly: hung requests are cut off and the port refuses connections', async () => {
    const device = await startDevice({ faults: { hang: [paths.status] } });
    const pending = call(device, 'GET', paths.status);
    await new Promise((r) => setTimeout(r, 50));
    await device.stop();
    await expect(pending).rejects.toThrow();
    await expect(call(device, 'GET', paths.identity)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('answers unknown paths with 404, wrong methods with 405 and malformed JSON with 400', async () => {
    const device = await startDevice();
    expect((await call(device, 'GET', '/api/v1/nothing')).status).toBe(404);
    expect((await call(device, 'DELETE', paths.identity)).status).toBe(405);
    expect((await call(device, 'PUT', paths.configuration, { rawBody: '{"templateId":' })).status).toBe(400);
  });
});

describe('reference device configuration signatures and read-back', () => {
  it('once it holds trust anchors, applies only configurations signed for it and refuses the rest with 422, running what it ran before', async () => {
    const device = await startDevice();
    await enrol(device);
    const put = (body: unknown) => call(device, 'PUT', paths.configuration, { auth: null, identity: clientIdentity, body });

    const good = await signedFor(device, { templateId: 'door', version: 1, settings });
    expect((await put(good)).status).toBe(200);
    expect(device.configuration).toMatchObject({
      version: 1,
      signature: { signedAt: good.signature.signedAt, nonce: good.signature.nonce, signerSubject: 'CN=Device Test Configuration Signing' },
    });
    const running = device.configuration!.hash;

    const next = { templateId: 'door', version: 2, settings: { ...settings, hostname: 'door-08' } };
    const attempts: [string, unknown, RegExp][] = [
      ['unsigned', next, /only applies signed configurations/],
      [
        'tampered',
        { ...(await signedFor(device, next)), settings: { ...next.settings, management: { httpEnabled: true, passwordLogin: true } } },
        /does not match the configuration as received/,
      ],
      ['for another device', await signedFor(device, next, { serialNumber: 'RD-SOMEONE-ELSE' }), /serial number RD-SOMEONE-ELSE, not this one/],
      ['expired', await signedFor(device, next, { now: new Date(Date.now() - 2 * 3_600_000) }), /expired at/],
      ['by a stranger', await signedFor(device, next, { signer: strangerCa.issueConfigurationSigner() }), /does not chain to a trust anchor/],
      ['by a code signer', await signedFor(device, next, { signer: ca.issueConfigurationSigner({ purpose: 'codeSigning' }) }), /not valid for configuration signing/],
    ];
    for (const [what, body, reason] of attempts) {
      const answer = await put(body);
      expect({ what, status: answer.status }).toEqual({ what, status: 422 });
      expect(answer.body.error).toMatch(/^configuration signature refused: /);
      expect(answer.body.error).toMatch(reason);
      expect(answer.body.fields).toEqual([{ field: 'signature', reason: expect.any(String) }]);
    }
    expect(device.configuration).toMatchObject({ version: 1, hash: running, settings: { hostname: 'door-07' } });
    expect((await put(await signedFor(device, next))).status).toBe(200);
    expect(device.configuration).toMatchObject({ version: 2, settings: { hostname: 'door-08' } });
  });

  it('refuses a configuration signed before the one it runs (a replay), yet takes the same one again (a retried push)', async () => {
    const device = await startDevice();
    await enrol(device);
    const put = (body: unknown) => call(device, 'PUT', paths.configuration, { auth: null, identity: clientIdentity, body });
    const older = await signedFor(device, { templateId: 'door', version: 1, settings }, { now: new Date(Date.now() - 10 * 60_000) });
    const newer = await signedFor(device, { templateId: 'door', version: 2, settings: { ...settings, site: 'annex' } });
    expect((await put(newer)).status).toBe(200);
    const replay = await put(older);
    expect(replay.status).toBe(422);
    expect(replay.body.error).toMatch(/before the configuration running now/);
    expect((await put(newer)).status).toBe(200);
    expect(device.configuration).toMatchObject({ version: 2, settings: { site: 'annex' } });
  });

  it('reports its running configuration over mutual TLS, with changes made on the device itself', async () => {
    const device = await startDevice();
    expect((await call(device, 'GET', paths.runningConfiguration)).status).toBe(409);
    await enrol(device);
    const withSyslog = { ...settings, syslog: { host: '10.0.0.9', port: 514, protocol: 'udp' } };
    await call(device, 'PUT', paths.configuration, {
      auth: null,
      identity: clientIdentity,
      body: await signedFor(device, { templateId: 'door', version: 3, settings: withSyslog }),
    });
    const read = () => call(device, 'GET', paths.runningConfiguration, { auth: null, identity: clientIdentity });

    const before = await read();
    expect(before.status).toBe(200);
    expect(before.body).toEqual({
      templateId: 'door',
      version: 3,
      settings: withSyslog,
      hash: createHash('sha256').update(canonicalJson(withSyslog)).digest('hex'),
      readAt: expect.any(String),
    });
    expect((await call(device, 'GET', paths.runningConfiguration, { auth: null })).status).toBe(401);

    // A local administrator renames the device, turns HTTP on and removes syslog.
    device.tamperConfiguration({ hostname: 'door-07-local', management: { httpEnabled: true }, syslog: null });
    const after = await read();
    const changed = { ...settings, hostname: 'door-07-local', management: { httpEnabled: true, passwordLogin: true } };
    expect(after.body).toMatchObject({ version: 3, settings: changed, hash: createHash('sha256').update(canonicalJson(changed)).digest('hex') });
    expect((await call(device, 'GET', paths.status, { auth: null, identity: clientIdentity })).body.configurationHash).toBe(after.body.hash);

    // The device's own validation holds for local changes too.
    expect(() => device.tamperConfiguration({ hostname: '-bad-' })).toThrow();
    expect((await read()).body.settings).toEqual(changed);
  });
});
