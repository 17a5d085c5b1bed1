/**
 * Provisions ONVIF devices (IP cameras, some access controllers) through the ONVIF device service
 * and the Advanced Security service: identity from GetDeviceInformation / GetScopes /
 * GetNetworkInterfaces, a per-device management user in place of the factory login, an on-device
 * key and PKCS#10 CSR, our certificate as the HTTPS server certificate, then everything over TLS
 * pinned to that certificate.
 *
 * Why the SOAP client is our own (`soap-client.ts`) rather than node-onvif-ts 0.1.7: its `setUser`
 * emits malformed XML (an unclosed `tt:UserLevel`), it puts values into XML unescaped (a password
 * with `<` or `&` breaks the request, or rewrites it), it speaks plain HTTP only, so it can neither
 * pin our certificate nor reach a device whose HTTP we turned off, it makes UsernameToken nonces
 * with `Math.random`, and it has no Advanced Security calls at all. Its GetDeviceInformation does
 * work against our simulator (a test shows it), but identify must also run over pinned TLS after
 * enrolment, so every call goes through one client. Its discovery only probes multicast, which the
 * tests cannot use outside a network namespace; `discovery.ts` probes a given address instead.
 *
 * Conventions:
 * - The address is the device service over plain HTTP (`host[:port]`, port 80). Once the service
 *   pins the certificate we issued (`session.pinnedCertificateFingerprint`), every call goes over
 *   HTTPS on `httpsPort` (443 unless configured): installCertificate turns HTTPS on at that port,
 *   so the port is known without asking a device whose HTTP may be off by then.
 * - authenticate replaces the factory login: it creates (or resets) the user `managementUsername`
 *   with a random password sealed under `onvif-admin-password`; every later call tries that user
 *   first and the factory credentials second, so a retry after any partial step still gets in.
 * - pushConfiguration keeps what the device reported after applying (a canonical JSON) under
 *   `onvif-applied-configuration`, which selfTest compares the device against.
 * - activate adds the scope `provisionedScope` to the device's configurable scopes, so discovery
 *   (WS-Discovery Probe) tells provisioned cameras from factory-fresh ones.
 * - rotateCredentials gives the management user a new password (SetUser) sealed first under the
 *   pending purpose; every call tries that pending password after the held one, so a device changed
 *   just before a crash stays reachable until the rotation's retry promotes it.
 * - removeManagementAccess deletes the management user (DeleteUsers); the factory login, if the
 *   device still has one, is left as it is.
 */
import { createHash, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import type {
  CertificateInstallation,
  ConfigurationReceipt,
  CsrRequest,
  DeviceAdapter,
  DeviceConfiguration,
  DeviceCredentials,
  DeviceIdentity,
  DeviceSession,
  CredentialRotationReport,
  DeviceType,
  ProbeReport,
  RunningConfiguration,
  SelfTestReport,
} from '../device-adapter';
import { pendingPurpose, rotateDeviceSecrets } from '../secret-rotation';
import { deviceCapabilities } from '../device-adapter';
import type { DeviceNetworks } from '../device-networks';
import { canonicalHash } from '../../foundation/canonical-json';
import type { DeviceSecrets } from '../../custody/device-secrets';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  ValidationError,
} from '../../foundation/errors';
import { normaliseMacAddress } from '../../foundation/mac-address';
import { subjectAltNameExtension } from '../../x509/extensions';
import { oids } from '../../x509/oids';
import { fingerprintOf, pemBlocks, toPem } from '../../x509/pem';
import { parseOnvifAddress } from './addresses';
import { onvifBuiltInTemplates, onvifDeviceSettings, onvifProtocolSettings, type OnvifDeviceSettings } from './settings';
import { OnvifClient, type OnvifTransport } from './soap-client';
import { el, firstText, isObject, listOf, onvifNamespaces, textOf, type XmlElement, type XmlObject } from './soap';

export interface OnvifDeviceAdapterOptions {
  /** Where devices may be reached; nothing else is connected to. */
  networks: DeviceNetworks;
  /** Upper bound for one SOAP exchange: connect, handshake, request and answer. */
  requestTimeoutMs?: number;
  /** Where the device serves HTTPS once our certificate is installed. */
  httpsPort?: number;
  /** The per-device management user that replaces the factory login. */
  managementUsername?: string;
  /** How long a device may take to generate a key pair (RSA on a small CPU takes a while). */
  keyGenerationTimeoutMs?: number;
  keyStatusPollMs?: number;
  /** The scope activate adds. */
  provisionedScope?: string;
}

/** What the adapter keeps in the device's sealed secrets. */
export const onvifSecretPurposes = {
  managementPassword: 'onvif-admin-password',
  appliedConfiguration: 'onvif-applied-configuration',
} as const;

const managementPasswordBytes = 18;

/** What a device reports about the settings we manage, in a fixed shape for hashing and comparing. */
interface AppliedSettings {
  hostname: string;
  ntpServers: string[];
  timezone: string | null;
  httpEnabled: boolean;
  httpsEnabled: boolean;
}

const keyRequests: Record<CsrRequest['keyAlgorithm'], { create: (alias: string) => XmlElement; signatureAlgorithm: string }> = {
  'P-256': {
    create: (alias) => el('tas:CreateECCKeyPair', el('tas:EllipticCurve', 'secp256r1'), el('tas:Alias', alias)),
    signatureAlgorithm: oids.ecdsaWithSha256,
  },
  'P-384': {
    create: (alias) => el('tas:CreateECCKeyPair', el('tas:EllipticCurve', 'secp384r1'), el('tas:Alias', alias)),
    signatureAlgorithm: oids.ecdsaWithSha384,
  },
  'RSA-2048': {
    create: (alias) => el('tas:CreateRSAKeyPair', el('tas:KeyLength', '2048'), el('tas:Alias', alias)),
    signatureAlgorithm: oids.sha256WithRsaEncryption,
  },
};

export class OnvifDeviceAdapter implements DeviceAdapter {
  readonly protocol = 'onvif';
  readonly settings = onvifProtocolSettings;
  readonly builtInTemplates = onvifBuiltInTemplates;
  private readonly requestTimeoutMs: number;
  private readonly httpsPort: number;
  private readonly managementUsername: string;
  private readonly keyGenerationTimeoutMs: number;
  private readonly keyStatusPollMs: number;
  private readonly provisionedScope: string;
  private readonly networks: DeviceNetworks;

  constructor(options: OnvifDeviceAdapterOptions) {
    this.networks = options.networks;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.httpsPort = options.httpsPort ?? 443;
    this.managementUsername = options.managementUsername ?? 'provisioning';
    this.keyGenerationTimeoutMs = options.keyGenerationTimeoutMs ?? 120_000;
    this.keyStatusPollMs = options.keyStatusPollMs ?? 250;
    this.provisionedScope = options.provisionedScope ?? 'onvif://www.onvif.org/provisioning/active';
  }

  validateAddress(address: string): void {
    parseOnvifAddress(address);
  }

  networkHost(address: string): string | undefined {
    return parseOnvifAddress(address).host.toLowerCase();
  }

  async identify(session: DeviceSession): Promise<DeviceIdentity> {
    const client = await this.connect(session);
    const information = await client.call(el('tds:GetDeviceInformation'));
    const scopes = scopeItems(await client.call(el('tds:GetScopes')));
    const interfaces = await client.call(el('tds:GetNetworkInterfaces'));
    const securityPath = await this.advancedSecurityPath(client);

    const serialNumber = requiredText(information, 'SerialNumber', 'GetDeviceInformation', 128);
    const hwAddresses = listOf(interfaces.NetworkInterfaces)
      .filter(isObject)
      .map((networkInterface) => (isObject(networkInterface.Info) ? textOf(networkInterface.Info.HwAddress) : undefined))
      .filter((value): value is string => value !== undefined && value !== '');
    let macAddress: string | undefined;
    if (hwAddresses.length > 0) {
      macAddress = normaliseMacAddress(hwAddresses[0]);
      if (!macAddress) {
        throw new ValidationError(`device at ${session.address} reported an invalid MAC address`, {
          fields: [{ field: 'macAddress', reason: 'must be a 48-bit MAC address' }],
        });
      }
    }
    const profiles = scopes.filter((s) => s.startsWith('onvif://www.onvif.org/Profile/')).map((s) => lastSegment(s));
    const capabilities = [
      'onvif',
      ...profiles.map((profile) => `onvif:profile:${profile}`),
      ...(securityPath ? [deviceCapabilities.certificateEnrolment, 'onvif:advanced-security'] : []),
    ];
    const deviceType = deviceTypeOf(scopes);
    return {
      serialNumber,
      ...(macAddress ? { macAddress } : {}),
      manufacturer: optionalText(information, 'Manufacturer', 256),
      model: optionalText(information, 'Model', 256) || hardwareScope(scopes),
      firmwareVersion: optionalText(information, 'FirmwareVersion', 128),
      ...(deviceType ? { deviceType } : {}),
      capabilities,
      ...(client.presentedFingerprint ? { presentedCertificateFingerprint: client.presentedFingerprint } : {}),
    };
  }

  /**
   * Proves the credentials we hold, then puts our own management user in place of the factory login
   * (when the session can keep its password). Safe to repeat at any point: the stored password is
   * tried first, and the user is created or reset to it as needed.
   */
  async authenticate(session: DeviceSession): Promise<void> {
    const managed = await this.managedCredentials(session);
    const client = await this.connect(session, managed);
    await client.call(el('tds:GetUsers'));
    if (!session.secrets || (client.acceptedCredentials && managed.includes(client.acceptedCredentials))) return;

    const password = passwordText(await session.secrets.ensure(onvifSecretPurposes.managementPassword, managementPasswordBytes));
    const users = await this.userNames(client);
    const user = this.managementUser(password);
    await client.call(users.includes(this.managementUsername) ? el('tds:SetUser', user) : el('tds:CreateUsers', user));

    // The new login must work before anything relies on it.
    const proof = await this.connect(session, [{ username: this.managementUsername, password }], { factoryFallback: false });
    await proof.call(el('tds:GetUsers'));
  }

  async createCertificateSigningRequest(session: DeviceSession, request: CsrRequest): Promise<string> {
    const client = await this.connect(session, await this.managedCredentials(session));
    const path = await this.requireAdvancedSecurity(client, session);
    const keyRequest = keyRequests[request.keyAlgorithm];
    const alias = `provisioning-${Date.now().toString(36)}`;
    const keyId = requiredText(await client.call(keyRequest.create(alias), { path }), 'KeyID', 'key pair creation', 256);
    await this.waitForKey(client, path, keyId, session.address);

    const names = request.subjectAltNames;
    const attributes =
      names.dns.length + names.ip.length + names.uri.length > 0
        ? [
            el(
              'tas:CSRAttribute',
              el(
                'tas:X509v3Extension',
                el('tas:extnOID', oids.subjectAltName),
                el('tas:critical', 'false'),
                el('tas:extnValue', Buffer.from(subjectAltNameDer(names)).toString('base64')),
              ),
            ),
          ]
        : [];
    const answer = await client.call(
      el(
        'tas:CreatePKCS10CSR',
        el('tas:Subject', el('tas:CommonName', request.commonName)),
        el('tas:KeyID', keyId),
        attributes,
        el('tas:SignatureAlgorithm', el('tas:algorithm', keyRequest.signatureAlgorithm)),
      ),
      { path },
    );
    const der = base64Der(requiredText(answer, 'PKCS10CSR', 'CreatePKCS10CSR', 64 * 1024), 'CreatePKCS10CSR', session.address);
    return toPem(der, 'CERTIFICATE REQUEST');
  }

  /**
   * Uploads our certificate and its chain, makes them the HTTPS server certificate and turns HTTPS
   * on. Certificates and paths already on the device are reused, so a retry repeats nothing.
   */
  async installCertificate(session: DeviceSession, installation: CertificateInstallation): Promise<void> {
    const leaf = certificateDer(installation.certificatePem, 'certificatePem');
    const chain = installation.chainPem.map((pem, i) => certificateDer(pem, `chainPem[${i}]`));
    const expected = fingerprintOf(leaf);
    const client = await this.connect(session, await this.managedCredentials(session));
    const path = await this.requireAdvancedSecurity(client, session);

    const onDevice = new Map<string, string>();
    for (const certificate of listOf((await client.call(el('tas:GetAllCertificates'), { path })).Certificate).filter(isObject)) {
      const id = firstText(certificate.CertificateID);
      const content = textOf(certificate.CertificateContent);
      if (id && content) onDevice.set(fingerprintOf(Buffer.from(content, 'base64')), id);
    }
    const upload = async (der: Uint8Array, privateKeyRequired: boolean): Promise<string> => {
      const known = onDevice.get(fingerprintOf(der));
      if (known) return known;
      const answer = await client.call(
        el(
          'tas:UploadCertificate',
          el('tas:Certificate', Buffer.from(der).toString('base64')),
          el('tas:Alias', `provisioning-${fingerprintOf(der).slice(0, 16)}`),
          el('tas:PrivateKeyRequired', String(privateKeyRequired)),
        ),
        {
          path,
          // The device holds no key for this certificate: it was issued for another CSR.
          faults: (fault, message) =>
            privateKeyRequired && fault.code === 'Sender' ? new ConflictError(message) : undefined,
        },
      );
      return requiredText(answer, 'CertificateID', 'UploadCertificate', 256);
    };
    const leafId = await upload(leaf, true);
    const chainIds: string[] = [];
    for (const der of chain) chainIds.push(await upload(der, false));

    const assigned = listOf((await client.call(el('tas:GetAssignedServerCertificates'), { path })).CertificationPathID)
      .map((id) => textOf(id))
      .filter((id): id is string => !!id);
    let alreadyAssigned = false;
    for (const pathId of assigned) {
      const answer = await client.call(el('tas:GetCertificationPath', el('tas:CertificationPathID', pathId)), { path });
      const ids = isObject(answer.CertificationPath) ? listOf(answer.CertificationPath.CertificateID).map((id) => textOf(id)) : [];
      if (ids[0] === leafId) alreadyAssigned = true;
    }
    if (!alreadyAssigned) {
      const created = await client.call(
        el(
          'tas:CreateCertificationPath',
          el('tas:CertificateIDs', [leafId, ...chainIds].map((id) => el('tas:CertificateID', id))),
          el('tas:Alias', `provisioning-${expected.slice(0, 16)}`),
        ),
        { path },
      );
      const pathId = requiredText(created, 'CertificationPathID', 'CreateCertificationPath', 256);
      await client.call(
        assigned.length === 0
          ? el('tas:AddServerCertificateAssignment', el('tas:CertificationPathID', pathId))
          : el(
              'tas:ReplaceServerCertificateAssignment',
              el('tas:OldCertificationPathID', assigned[0]),
              el('tas:NewCertificationPathID', pathId),
            ),
        { path },
      );
    }
    await client.call(
      el('tds:SetNetworkProtocols', protocolElement('HTTPS', true, this.httpsPort)),
    );

    // The device must now serve our certificate: speak to it the way every later call will.
    const overTls = await this.connect({ ...session, pinnedCertificateFingerprint: expected }, undefined, { factoryFallback: false });
    await overTls.call(el('tds:GetSystemDateAndTime'), { anonymous: true });
  }

  async pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt> {
    // The ONVIF device service (SetNTP, SetHostname, ...) has no place for configuration.signature; it is not sent.
    const parsed = onvifDeviceSettings.safeParse(configuration.settings);
    if (!parsed.success) {
      throw new ValidationError('configuration settings do not fit the ONVIF settings schema', {
        fields: parsed.error.issues.map((issue) => ({
          field: `settings.${issue.path.map(String).join('.')}`,
          reason: issue.message,
        })),
      });
    }
    const settings = parsed.data;
    if (!settings.management.httpEnabled && !session.pinnedCertificateFingerprint) {
      throw new ConfigurationRejectedError(
        'turning HTTP off needs HTTPS with a certificate we issued, and this device holds none yet',
        { fields: [{ field: 'settings.management.httpEnabled', reason: 'requires an installed device certificate' }] },
      );
    }
    const client = await this.connect(session, await this.managedCredentials(session));

    await client.call(el('tds:SetNTP', el('tds:FromDHCP', 'false'), settings.ntp.servers.map((server) => ntpElement('tds:NTPManual', server))));
    await client.call(el('tds:SetHostname', el('tds:Name', settings.hostname)));
    if (settings.timezone) {
      await client.call(
        el(
          'tds:SetSystemDateAndTime',
          el('tds:DateTimeType', 'NTP'),
          el('tds:DaylightSavings', 'false'),
          el('tds:TimeZone', el('tt:TZ', settings.timezone)),
        ),
      );
    }
    const protocols = await readProtocols(client);
    // HTTP last: over HTTPS the answer still reaches us after the device closes its HTTP port.
    if (protocols.http.enabled !== settings.management.httpEnabled) {
      await client.call(
        el('tds:SetNetworkProtocols', protocolElement('HTTP', settings.management.httpEnabled, protocols.http.ports[0] ?? 80)),
      );
    }

    const applied = await readAppliedSettings(client);
    const mismatches = compareSettings(settings, applied);
    if (mismatches.length > 0) {
      throw new ConfigurationRejectedError(`device at ${session.address} did not apply the configuration as sent`, {
        fields: mismatches,
      });
    }
    const canonical = canonicalJson(applied);
    await session.secrets?.write(onvifSecretPurposes.appliedConfiguration, Buffer.from(canonical, 'utf8'));
    return {
      version: configuration.version,
      hash: createHash('sha256').update(canonical).digest('hex'),
      appliedAt: new Date().toISOString(),
    };
  }

  /**
   * What the device runs now, in the settings' shape, from GetHostname, GetNTP,
   * GetSystemDateAndTime and GetNetworkProtocols. ONVIF keeps no record of our version.
   */
  async readConfiguration(session: DeviceSession): Promise<RunningConfiguration> {
    const client = await this.connect(session, await this.managedCredentials(session));
    const running = await readAppliedSettings(client);
    const settings = {
      hostname: running.hostname,
      ntp: { servers: running.ntpServers },
      ...(running.timezone ? { timezone: running.timezone } : {}),
      management: { httpEnabled: running.httpEnabled },
    };
    // Every camera keeps a time zone; one a template leaves alone is not drift.
    return { settings, inherent: ['timezone'], hash: canonicalHash(settings), readAt: new Date().toISOString() };
  }

  /** Checks over TLS pinned to our certificate that the device is the one we enrolled, configured as pushed. */
  async selfTest(session: DeviceSession): Promise<SelfTestReport> {
    const checks: SelfTestReport['checks'] = [];
    if (!session.pinnedCertificateFingerprint) {
      checks.push({ name: 'tls-certificate', passed: false, detail: 'no certificate of ours is pinned for this device' });
      return { passed: false, checks };
    }
    const client = await this.connect(session, await this.managedCredentials(session));
    const information = await client.call(el('tds:GetDeviceInformation'));
    // The connection only gets this far when the device presents the pinned certificate.
    checks.push({ name: 'tls-certificate', passed: true, detail: `presents ${client.presentedFingerprint}` });

    const reported = optionalText(information, 'SerialNumber', 128);
    const certified = this.certifiedSerialNumber(session, client);
    checks.push(
      certified === undefined
        ? { name: 'serial-number', passed: false, detail: 'the pinned certificate names no serial number' }
        : {
            name: 'serial-number',
            passed: reported === certified,
            detail: reported === certified ? reported : `device reports ${reported}, certificate names ${certified}`,
          },
    );

    const applied = await readAppliedSettings(client);
    checks.push({ name: 'https-enabled', passed: applied.httpsEnabled });
    const stored = await session.secrets?.read(onvifSecretPurposes.appliedConfiguration);
    if (stored) {
      const expected = JSON.parse(Buffer.from(stored).toString('utf8')) as AppliedSettings;
      checks.push(settingCheck('hostname', expected.hostname, applied.hostname));
      checks.push(settingCheck('ntp-servers', expected.ntpServers.join(','), applied.ntpServers.join(',')));
      checks.push(settingCheck('timezone', expected.timezone ?? '', applied.timezone ?? ''));
      checks.push(settingCheck('http-enabled', String(expected.httpEnabled), String(applied.httpEnabled)));
    } else {
      checks.push({ name: 'configuration', passed: true, detail: 'no configuration pushed yet' });
    }
    return { passed: checks.every((check) => check.passed), checks };
  }

  /** Adds the provisioned scope; a device that already carries it is left alone. */
  async activate(session: DeviceSession): Promise<void> {
    const client = await this.connect(session, await this.managedCredentials(session));
    const scopes = listOf((await client.call(el('tds:GetScopes'))).Scopes).filter(isObject);
    if (scopes.some((scope) => textOf(scope.ScopeItem) === this.provisionedScope)) return;
    const configurable = scopes
      .filter((scope) => textOf(scope.ScopeDef) === 'Configurable')
      .map((scope) => textOf(scope.ScopeItem))
      .filter((item): item is string => !!item);
    await client.call(el('tds:SetScopes', [...configurable, this.provisionedScope].map((scope) => el('tds:Scopes', scope))));
  }

  /**
   * GetSystemDateAndTime, which needs no login, over HTTPS pinned to our certificate. A device
   * presenting another certificate is reported, and nothing is sent to it.
   */
  async probe(session: DeviceSession): Promise<ProbeReport> {
    if (!session.pinnedCertificateFingerprint) throw new ConflictError(`no certificate of ours is pinned for the ONVIF device at ${session.address}`);
    const client = new OnvifClient({ transport: await this.transportFor(session), credentials: [], timeoutMs: this.requestTimeoutMs, address: session.address });
    try {
      await client.call(el('tds:GetSystemDateAndTime'), { anonymous: true });
    } catch (error) {
      if (!(error instanceof IdentityMismatchError) || !client.presentedFingerprint) throw error;
    }
    return { presentedCertificateFingerprint: client.presentedFingerprint };
  }

  /**
   * A new password for the management user: SetUser while logged in with the old one (or nothing,
   * when a retry finds the device already took the new one), then a fresh login with the new
   * password alone before the vault forgets the old one.
   */
  async rotateCredentials(session: DeviceSession): Promise<CredentialRotationReport> {
    const what = 'ONVIF management user password';
    await rotateDeviceSecrets(
      requireSecrets(session),
      [{ purpose: onvifSecretPurposes.managementPassword, bytes: managementPasswordBytes }],
      what,
      async ({ current: [held], next: [fresh] }) => {
        const renewed = { username: this.managementUsername, password: passwordText(fresh!) };
        const client = await this.connect(session, [renewed, { username: this.managementUsername, password: passwordText(held!) }], {
          factoryFallback: false,
        });
        await client.call(el('tds:GetUsers'));
        if (client.acceptedCredentials !== renewed) {
          await client.call(el('tds:SetUser', this.managementUser(renewed.password)));
        }
        const proof = await this.connect(session, [renewed], { factoryFallback: false });
        await proof.call(el('tds:GetUsers'));
      },
    );
    return { rotated: [what] };
  }

  /**
   * Deletes the management user (DeleteUsers), logged in as that user or, once it is gone, with the
   * factory login to confirm it is not listed. A device that no longer knows the user is done.
   */
  async removeManagementAccess(session: DeviceSession, _options: { resetToInstallKey?: boolean } = {}): Promise<{ removed: string[] }> {
    const managed = await this.managedCredentials(session);
    const client = await this.connect(session, managed);
    let users: string[];
    try {
      users = await this.userNames(client);
    } catch (error) {
      // Neither our user nor the factory login is accepted: nothing of ours is left to remove.
      if (error instanceof AuthenticationFailedError) return { removed: [] };
      throw error;
    }
    if (!users.includes(this.managementUsername)) return { removed: [] };
    await client.call(el('tds:DeleteUsers', el('tds:Username', this.managementUsername)));
    return { removed: [`ONVIF user ${this.managementUsername}`] };
  }

  // -------------------------------------------------------------------------------------------

  private managementUser(password: string): XmlElement {
    return el('tds:User', el('tt:Username', this.managementUsername), el('tt:Password', password), el('tt:UserLevel', 'Administrator'));
  }

  private async userNames(client: OnvifClient): Promise<string[]> {
    return listOf((await client.call(el('tds:GetUsers'))).User)
      .filter(isObject)
      .map((user) => textOf(user.Username))
      .filter((name): name is string => name !== undefined);
  }

  /**
   * A client for this call: plain HTTP until the service pins our certificate, then HTTPS; speaking
   * as our management user first and the factory login second.
   */
  private async connect(
    session: DeviceSession,
    preferred?: DeviceCredentials[],
    options: { factoryFallback?: boolean } = {},
  ): Promise<OnvifClient> {
    const transport = await this.transportFor(session);
    const managed = preferred ?? (await this.managedCredentials(session));
    const credentials = [
      ...managed,
      ...(session.credentials && options.factoryFallback !== false ? [session.credentials] : []),
    ];
    const client = new OnvifClient({ transport, credentials, timeoutMs: this.requestTimeoutMs, address: session.address });
    await client.synchroniseClock();
    return client;
  }

  /** Plain HTTP until the service pins our certificate, then HTTPS pinned to it. */
  private async transportFor(session: DeviceSession): Promise<OnvifTransport> {
    const endpoint = parseOnvifAddress(session.address);
    const connectTo = await this.networks.resolve(endpoint.host);
    return session.pinnedCertificateFingerprint
      ? {
          host: endpoint.host,
          connectTo,
          port: this.httpsPort,
          ...(endpoint.serverName ? { serverName: endpoint.serverName } : {}),
          tls: {
            acceptedFingerprints: [session.pinnedCertificateFingerprint],
            ...(session.clientIdentity ? { clientIdentity: session.clientIdentity } : {}),
          },
        }
      : { host: endpoint.host, connectTo, port: endpoint.port };
  }

  /** The management user's password we hold, then one a rotation may have given the device already. */
  private async managedCredentials(session: DeviceSession): Promise<DeviceCredentials[]> {
    const stored = [
      await session.secrets?.read(onvifSecretPurposes.managementPassword),
      await session.secrets?.read(pendingPurpose(onvifSecretPurposes.managementPassword)),
    ];
    return stored.filter((secret) => secret !== undefined).map((secret) => ({ username: this.managementUsername, password: passwordText(secret) }));
  }

  /** The Advanced Security service's path, when GetServices lists it. */
  private async advancedSecurityPath(client: OnvifClient): Promise<string | undefined> {
    const services = listOf((await client.call(el('tds:GetServices', el('tds:IncludeCapability', 'false')), { anonymous: true })).Service);
    for (const service of services.filter(isObject)) {
      if (textOf(service.Namespace) !== onvifNamespaces.tas) continue;
      const xaddr = textOf(service.XAddr);
      try {
        // Only the path counts: devices often name an internal address, and we choose the scheme.
        return xaddr ? new URL(xaddr).pathname : undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  private async requireAdvancedSecurity(client: OnvifClient, session: DeviceSession): Promise<string> {
    const path = await this.advancedSecurityPath(client);
    if (!path) {
      throw new NotImplementedError(
        `device at ${session.address} has no ONVIF Advanced Security service, so it cannot make a key and CSR or take a certificate`,
      );
    }
    return path;
  }

  private async waitForKey(client: OnvifClient, path: string, keyId: string, address: string): Promise<void> {
    const deadline = Date.now() + this.keyGenerationTimeoutMs;
    for (;;) {
      const answer = await client.call(el('tas:GetKeyStatus', el('tas:KeyID', keyId)), { path });
      const status = textOf(answer.KeyStatus);
      if (status === 'ok') return;
      if (status === 'corrupt') throw new DeviceUnavailableError(`device at ${address} failed to generate a key pair`);
      if (status !== 'generating') throw new ValidationError(`device at ${address} reported key status ${JSON.stringify(status)}`);
      if (Date.now() > deadline) {
        throw new DeviceUnavailableError(`device at ${address} did not finish its key pair within ${this.keyGenerationTimeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, this.keyStatusPollMs));
    }
  }

  /**
   * The serial number the pinned certificate was issued for: our CA writes it as the subject's
   * serialNumber attribute; certificates without one name the device by its common name.
   */
  private certifiedSerialNumber(session: DeviceSession, client: OnvifClient): string | undefined {
    const certificate = client.presentedCertificate;
    if (!certificate || fingerprintOf(certificate.raw) !== session.pinnedCertificateFingerprint?.replace(/:/g, '').toLowerCase()) {
      return undefined;
    }
    const attributes = certificate.subject.split('\n').map((line) => line.split('='));
    const value = (name: string) => attributes.find(([key]) => key === name)?.slice(1).join('=');
    return value('serialNumber') ?? value('CN');
  }
}

/** The adapter with default settings, as the activities use it. */

// ---------------------------------------------------------------------------------------------

function requireSecrets(session: DeviceSession): DeviceSecrets {
  if (!session.secrets) throw new ValidationError(`the ONVIF device at ${session.address}: rotating or removing its management user needs its device secrets`);
  return session.secrets;
}

function passwordText(secret: Uint8Array): string {
  // URL-safe Base64: letters, digits, "-" and "_" pass every device's password rules we know.
  return Buffer.from(secret).toString('base64url');
}

function requiredText(answer: XmlObject, name: string, operation: string, maxLength: number): string {
  // Elements that may repeat elsewhere are read as lists; a single answer is the first.
  const value = firstText(answer[name]);
  if (!value || value.length > maxLength) {
    throw new ValidationError(`device answered ${operation} without a usable ${name}`, {
      fields: [{ field: name, reason: value ? `longer than ${maxLength} characters` : 'missing' }],
    });
  }
  return value;
}

function optionalText(answer: XmlObject, name: string, maxLength: number): string {
  return (firstText(answer[name]) ?? '').slice(0, maxLength);
}

function scopeItems(answer: XmlObject): string[] {
  return listOf(answer.Scopes)
    .filter(isObject)
    .map((scope) => textOf(scope.ScopeItem))
    .filter((item): item is string => !!item);
}

function lastSegment(scope: string): string {
  return decodeURIComponent(scope.slice(scope.lastIndexOf('/') + 1));
}

function hardwareScope(scopes: string[]): string {
  const hardware = scopes.find((s) => s.startsWith('onvif://www.onvif.org/hardware/'));
  return hardware ? lastSegment(hardware).slice(0, 256) : '';
}

function deviceTypeOf(scopes: string[]): DeviceType | undefined {
  const types = scopes
    .filter((s) => s.startsWith('onvif://www.onvif.org/type/') || s.startsWith('onvif://www.onvif.org/Profile/'))
    .map((s) => lastSegment(s).toLowerCase());
  if (types.some((t) => ['c', 'a', 'access_control', 'door', 'accesscontrol'].includes(t))) return 'door_controller';
  if (types.some((t) => ['video_encoder', 'network_video_transmitter', 'networkvideotransmitter', 'ptz', 's', 't', 'streaming'].includes(t))) {
    return 'camera';
  }
  return undefined;
}

function subjectAltNameDer(names: CsrRequest['subjectAltNames']): Uint8Array {
  try {
    return new Uint8Array(subjectAltNameExtension(names).extnValue.valueBlock.valueHexView);
  } catch (error) {
    throw new ValidationError('requested subject alternative names cannot be encoded', {
      fields: [{ field: 'subjectAltNames', reason: error instanceof Error ? error.message : 'invalid' }],
      cause: error,
    });
  }
}

function base64Der(text: string, operation: string, address: string): Uint8Array {
  const compact = text.replace(/\s+/g, '');
  const der = Buffer.from(compact, 'base64');
  const parsed = asn1js.fromBER(new Uint8Array(der));
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || parsed.offset === -1 || !(parsed.result instanceof asn1js.Sequence)) {
    throw new ValidationError(`device at ${address} answered ${operation} with something that is not Base64 DER`);
  }
  return new Uint8Array(der);
}

function certificateDer(pem: string, field: string): Uint8Array {
  const block = pemBlocks(pem).find((b) => b.label === 'CERTIFICATE');
  try {
    if (!block) throw new Error('no CERTIFICATE block');
    new X509Certificate(block.der);
    return block.der;
  } catch (error) {
    throw new ValidationError(`${field} is not a PEM X.509 certificate`, {
      fields: [{ field, reason: 'must be a PEM X.509 certificate' }],
      cause: error,
    });
  }
}

function protocolElement(name: 'HTTP' | 'HTTPS', enabled: boolean, port: number): XmlElement {
  return el('tds:NetworkProtocols', el('tt:Name', name), el('tt:Enabled', String(enabled)), el('tt:Port', String(port)));
}

function ntpElement(name: 'tds:NTPManual', server: string): XmlElement {
  const family = /^\d+\.\d+\.\d+\.\d+$/.test(server) ? 'IPv4' : server.includes(':') ? 'IPv6' : 'DNS';
  const value = family === 'IPv4' ? el('tt:IPv4Address', server) : family === 'IPv6' ? el('tt:IPv6Address', server) : el('tt:DNSname', server);
  return el(name, el('tt:Type', family), value);
}

async function readProtocols(client: OnvifClient) {
  const answer = await client.call(el('tds:GetNetworkProtocols'));
  const protocol = (name: string) => {
    const entry = listOf(answer.NetworkProtocols)
      .filter(isObject)
      .find((p) => textOf(p.Name) === name);
    return {
      enabled: entry ? textOf(entry.Enabled) === 'true' : false,
      ports: entry ? listOf(entry.Port).map((p) => Number(textOf(p))) : [],
    };
  };
  return { http: protocol('HTTP'), https: protocol('HTTPS') };
}

async function readAppliedSettings(client: OnvifClient): Promise<AppliedSettings> {
  const hostname = await client.call(el('tds:GetHostname'));
  const ntp = await client.call(el('tds:GetNTP'));
  const time = await client.call(el('tds:GetSystemDateAndTime'), { anonymous: true });
  const protocols = await readProtocols(client);
  const hostInfo = isObject(hostname.HostnameInformation) ? hostname.HostnameInformation : {};
  const ntpInfo = isObject(ntp.NTPInformation) ? ntp.NTPInformation : {};
  const ntpServers = listOf(ntpInfo.NTPManual)
    .filter(isObject)
    .map((entry) => textOf(entry.DNSname) ?? textOf(entry.IPv4Address) ?? textOf(entry.IPv6Address) ?? '');
  const systemTime = isObject(time.SystemDateAndTime) ? time.SystemDateAndTime : {};
  const tz = isObject(systemTime.TimeZone) ? textOf(systemTime.TimeZone.TZ) : undefined;
  return {
    hostname: textOf(hostInfo.Name) ?? '',
    ntpServers,
    timezone: tz || null,
    httpEnabled: protocols.http.enabled,
    httpsEnabled: protocols.https.enabled,
  };
}

function compareSettings(settings: OnvifDeviceSettings, applied: AppliedSettings) {
  const mismatches: { field: string; reason: string }[] = [];
  const expect = (field: string, wanted: string, got: string) => {
    if (wanted !== got) mismatches.push({ field: `settings.${field}`, reason: `device reports ${JSON.stringify(got)}` });
  };
  expect('hostname', settings.hostname, applied.hostname);
  expect('ntp.servers', settings.ntp.servers.join(','), applied.ntpServers.join(','));
  if (settings.timezone) expect('timezone', settings.timezone, applied.timezone ?? '');
  expect('management.httpEnabled', String(settings.management.httpEnabled), String(applied.httpEnabled));
  return mismatches;
}

function settingCheck(name: string, expected: string, actual: string) {
  return expected === actual
    ? { name, passed: true }
    : { name, passed: false, detail: `device reports ${JSON.stringify(actual)}, pushed ${JSON.stringify(expected)}` };
}

/** JSON with object keys sorted, so equal settings always hash alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export { parseOnvifAddress } from './addresses';
export { onvifDeviceSettings, onvifProtocolSettings, onvifBuiltInTemplates } from './settings';
export { passwordDigest } from './soap';
