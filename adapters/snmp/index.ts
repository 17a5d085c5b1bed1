/**
 * Provisions devices managed over SNMP (encoders, switches, UPS). The device is fingerprinted from
 * its system group, ENTITY-MIB and IF-MIB; provisioning replaces the shared factory admin with a
 * per-device SNMPv3 user whose keys only the service holds, cloned through usmUserTable with
 * KeyChange values so that no key ever crosses the wire, and then closes community access.
 *
 * Credentials: `session.credentials.username` is the factory SNMPv3 admin (SHA-256 / AES-128).
 * Its `password` is either one passphrase used for both authentication and privacy, or JSON
 * `{"auth": "...", "priv": "..."}` when the two differ.
 *
 * Per-device state kept in `session.secrets` (the only per-device store an adapter has):
 * `snmp-usm-auth` and `snmp-usm-priv` are 32 random octets each whose base64url text is the new
 * user's passphrase (so operators' tools accept it too); `snmp-provisioning` records which user
 * and policy `pushConfiguration` applied, for `selfTest` and `activate`, which get no settings.
 *
 * Rotation replaces both keys of the per-device user with KeyChange values, as cloning did; the new
 * passphrases wait under the pending purposes until the agent accepts them, and are tried after
 * the held ones meanwhile. Removal destroys the user's usmUserTable row and its VACM mapping.
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { z } from 'zod';
import type {
  ConfigurationReceipt,
  CredentialRotationReport,
  DeviceAdapter,
  DeviceConfiguration,
  DeviceIdentity,
  DeviceSession,
  ProbeReport,
  RunningConfiguration,
  SelfTestReport,
} from '../device-adapter';
import type { DeviceSecrets } from '../../custody/device-secrets';
import { canonicalHash } from '../../foundation/canonical-json';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  NotImplementedError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { normaliseMacAddress } from '../../foundation/mac-address';
import type { DeviceNetworks } from '../device-networks';
import { pendingPurpose, rotateDeviceSecrets } from '../secret-rotation';
import { parseSnmpAddress, type SnmpEndpoint } from './addresses';
import { deviceTypeFor, enterpriseNumber, enterpriseVendors } from './enterprises';
import {
  entPhysicalEntry,
  ifPhysAddressColumn,
  readOctetStringIndex,
  rowStatus,
  securityModel,
  snmpEngineID,
  storageType,
  systemGroup,
  tableCell,
  usmUserCell,
  usmUserEntry,
  vacmSecurityToGroupCell,
  vacmSecurityToGroupEntry,
} from './mib';
import { snmpBuiltInTemplates, snmpDeviceSettings, snmpProtocolSettings, type SnmpDeviceSettings } from './settings';
import { withSnmpSession, type SnmpSecurity, type SnmpSession, type SnmpSessionOptions, type SnmpSetValue } from './snmp-session';
import { encodeKeyChange, sha256Aes128Keys } from './usm-keys';

export interface SnmpDeviceAdapterOptions {
  /** Where devices may be reached; nothing else is sent to. */
  networks: DeviceNetworks;
  /** How long to wait for one answer before retrying. */
  requestTimeoutMs?: number;
  retries?: number;
  /** Community used to fingerprint a device when no SNMPv3 credentials are held for it. */
  discoveryCommunity?: string;
  /**
   * Communities the self-test tries when community access should be off. Agents never reveal their
   * community strings, so the proof is that the usual ones go unanswered.
   */
  probeCommunities?: string[];
  /** How long a community probe waits for the answer that must not come. */
  communityProbeTimeoutMs?: number;
}

/** Purposes under which the device's own secrets and provisioning record are kept. */
export const snmpSecretPurposes = {
  authPassphrase: 'snmp-usm-auth',
  privPassphrase: 'snmp-usm-priv',
  provisioning: 'snmp-provisioning',
} as const;

const passphraseSecretOctets = 32;

/** VACM group without any access entry: communities mapped onto it get no view at all. */
export const deniedCommunityGroup = 'provisioning-denied';

const provisioningRecord = z.object({
  usmUser: z.string(),
  factoryAdmin: z.string(),
  communityAccess: z.enum(['disabled', 'unchanged']),
  removeFactoryAdmin: z.boolean(),
});
type ProvisioningRecord = z.infer<typeof provisioningRecord>;

const factoryPasswordPair = z.object({ auth: z.string().min(1), priv: z.string().min(1) }).strict();

export class SnmpDeviceAdapter implements DeviceAdapter {
  readonly protocol = 'snmp';
  readonly settings = snmpProtocolSettings;
  readonly builtInTemplates = snmpBuiltInTemplates;
  private readonly sessionOptions: SnmpSessionOptions;
  private readonly discoveryCommunity: string;
  private readonly probeCommunities: string[];
  private readonly communityProbeTimeoutMs: number;
  private readonly networks: DeviceNetworks;

  constructor(options: SnmpDeviceAdapterOptions) {
    this.networks = options.networks;
    this.sessionOptions = { timeoutMs: options.requestTimeoutMs ?? 2_000, retries: options.retries ?? 1 };
    this.discoveryCommunity = options.discoveryCommunity ?? 'public';
    this.probeCommunities = options.probeCommunities ?? ['public', 'private'];
    this.communityProbeTimeoutMs = options.communityProbeTimeoutMs ?? 1_000;
  }

  validateAddress(address: string): void {
    parseSnmpAddress(address);
  }

  /** The agent's endpoint at the address checked against the device networks, which is what is sent to. */
  private async endpointOf(session: DeviceSession): Promise<SnmpEndpoint> {
    const endpoint = parseSnmpAddress(session.address);
    const host = await this.networks.resolve(endpoint.host);
    return { host, port: endpoint.port, transport: isIPv6(host) ? 'udp6' : 'udp4' };
  }

  networkHost(address: string): string | undefined {
    return parseSnmpAddress(address).host.toLowerCase();
  }

  async identify(session: DeviceSession): Promise<DeviceIdentity> {
    const endpoint = await this.endpointOf(session);
    const candidates = await this.readerCandidates(session);
    return this.withFirstAccepted(endpoint, candidates, async (snmp) => {
      const [descr, objectId] = await snmp.get([systemGroup.sysDescr, systemGroup.sysObjectID], 'identify itself');
      const sysDescr = text(descr?.value);
      const sysObjectId = text(objectId?.value);
      const pen = enterpriseNumber(sysObjectId);
      const vendor = pen === undefined ? undefined : enterpriseVendors.get(pen);
      const entity = await readChassisEntity(snmp);
      const macAddress = await readMacAddress(snmp);
      const serialNumber = entity?.serialNumber || (await engineSerial(snmp));
      return {
        serialNumber,
        ...(macAddress ? { macAddress } : {}),
        manufacturer: entity?.manufacturer || vendor?.manufacturer || (pen === undefined ? 'unknown' : `enterprise ${pen}`),
        model: entity?.model || sysObjectId || 'unknown',
        firmwareVersion: entity?.firmwareVersion || 'unknown',
        deviceType: deviceTypeFor(sysDescr, vendor),
        capabilities: ['snmp:v3-usm', ...(entity ? ['snmp:entity-mib'] : [])],
      };
    });
  }

  async authenticate(session: DeviceSession): Promise<void> {
    const endpoint = await this.endpointOf(session);
    const candidates = await this.credentialCandidates(session);
    if (candidates.length === 0) throw new AuthenticationFailedError(`no SNMPv3 credentials are held for the device at ${session.address}`);
    await this.withFirstAccepted(endpoint, candidates, (snmp) => snmp.get([systemGroup.sysDescr], 'authenticate'));
  }

  async createCertificateSigningRequest(): Promise<string> {
    throw new NotImplementedError('SNMP devices do not enrol certificates: they are secured with a per-device SNMPv3 user instead');
  }

  async installCertificate(): Promise<void> {
    throw new NotImplementedError('SNMP devices do not enrol certificates: they are secured with a per-device SNMPv3 user instead');
  }

  async pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt> {
    // SNMP SET requests have no place for configuration.signature; it is not sent (USM authenticates us instead).
    const endpoint = await this.endpointOf(session);
    const settings = parseSettings(configuration.settings);
    const secrets = requireSecrets(session);
    const admin = factoryAdmin(session);
    if (!admin) throw new AuthenticationFailedError(`no factory SNMPv3 admin credentials are held for the device at ${session.address}`);
    if (admin.userName === settings.usmUser) {
      throw new ValidationError('the per-device SNMP user must differ from the factory admin', {
        fields: [{ field: 'settings.usmUser', reason: 'must not be the factory admin user' }],
      });
    }
    const deviceUser = await ensureDeviceUser(secrets, settings.usmUser);
    // Recorded first: a retry after a lost answer must find the same user and policy.
    await writeProvisioningRecord(secrets, {
      usmUser: settings.usmUser,
      factoryAdmin: admin.userName,
      communityAccess: settings.communityAccess,
      removeFactoryAdmin: settings.removeFactoryAdmin,
    });

    // Once activation removed the factory admin, the per-device user (in the admin's group) manages.
    await this.withFirstAccepted(endpoint, [deviceUser, admin], async (snmp) => {
      const engineId = await readEngineId(snmp);
      if (!(await this.accepts(endpoint, deviceUser))) {
        await provisionDeviceUser(snmp, engineId, admin, deviceUser);
      }
      await ensureGroupMembership(snmp, admin.userName, deviceUser.userName);
      if (!(await this.accepts(endpoint, deviceUser))) {
        throw new ConfigurationRejectedError(`SNMP agent at ${snmp.address} created user ${deviceUser.userName} but does not accept it`);
      }
      if (settings.communityAccess === 'disabled') await denyCommunityAccess(snmp);
      await snmp.set(
        [
          { oid: systemGroup.sysName, type: 'OctetString', value: settings.system.name },
          { oid: systemGroup.sysLocation, type: 'OctetString', value: settings.system.location },
          { oid: systemGroup.sysContact, type: 'OctetString', value: settings.system.contact },
        ],
        'set its system name, location and contact',
      );
    });

    return {
      version: configuration.version,
      hash: receiptHash(configuration, settings),
      appliedAt: new Date().toISOString(),
    };
  }

  /**
   * Reads back, as the per-device user, the system group values and whether community access is
   * as the pushed policy wants it. With the policy `unchanged` whatever communities the device has
   * satisfy it. `removeFactoryAdmin` is an action taken at activation, not a running setting.
   */
  async readConfiguration(session: DeviceSession): Promise<RunningConfiguration> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    const deviceUser = record && (await heldDeviceUser(secrets, record.usmUser));
    if (!record || !deviceUser) throw new ConflictError(`no configuration has been pushed to the SNMP device at ${session.address} yet`);
    return withSnmpSession(endpoint, deviceUser, this.sessionOptions, async (snmp) => {
      const [name, location, contact] = await snmp.get(
        [systemGroup.sysName, systemGroup.sysLocation, systemGroup.sysContact],
        'report its system name, location and contact',
      );
      const communitiesDenied = (await readCommunityGroups(snmp)).every((row) => row.groupName === deniedCommunityGroup);
      const settings = {
        // The session only got this far because the agent accepts the per-device user.
        usmUser: record.usmUser,
        system: { name: text(name?.value), location: text(location?.value), contact: text(contact?.value) },
        communityAccess: record.communityAccess === 'disabled' && communitiesDenied ? 'disabled' : 'unchanged',
      };
      return { settings, unreported: ['removeFactoryAdmin'], hash: canonicalHash(settings), readAt: new Date().toISOString() };
    });
  }

  async selfTest(session: DeviceSession): Promise<SelfTestReport> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    const deviceUser = record && (await heldDeviceUser(secrets, record.usmUser));
    if (!record || !deviceUser) throw new SelfTestFailedError(`no per-device SNMP user has been provisioned for ${session.address} yet`);

    const checks: SelfTestReport['checks'] = [];
    let vacmRows: CommunityGroupRow[] = [];
    try {
      await withSnmpSession(endpoint, deviceUser, this.sessionOptions, async (snmp) => {
        const [descr] = await snmp.get([systemGroup.sysDescr], 'answer the per-device user');
        checks.push({ name: 'usm-device-user', passed: descr !== undefined, detail: `${record.usmUser} read sysDescr with authPriv` });
        vacmRows = await readCommunityGroups(snmp);
      });
    } catch (error) {
      if (!(error instanceof AuthenticationFailedError)) throw error;
      checks.push({ name: 'usm-device-user', passed: false, detail: `${record.usmUser} was refused: ${error.message}` });
    }

    if (record.communityAccess === 'disabled') {
      const open = vacmRows.filter((row) => row.groupName !== deniedCommunityGroup);
      checks.push({
        name: 'community-groups-denied',
        passed: open.length === 0,
        detail: open.length === 0 ? `every v1/v2c community maps to ${deniedCommunityGroup}` : `${open.length} community mapping(s) still grant access`,
      });
      for (const version of ['v1', 'v2c'] as const) {
        const answered: string[] = [];
        for (const community of this.probeCommunities) {
          if (await this.answersCommunity(endpoint, version, community)) answered.push(community);
        }
        checks.push({
          name: `community-${version}-refused`,
          passed: answered.length === 0,
          detail:
            answered.length === 0
              ? `${this.probeCommunities.length} well-known communities went unanswered`
              : `answered ${version} reads for ${answered.length} well-known communit${answered.length === 1 ? 'y' : 'ies'}`,
        });
      }
    }

    const report = { passed: checks.every((check) => check.passed), checks };
    if (!report.passed) {
      const fields = checks.filter((check) => !check.passed).map((check) => ({ field: check.name, reason: check.detail ?? 'failed' }));
      throw new SelfTestFailedError(
        `SNMP device at ${session.address} failed its self-test: ${fields.map((f) => `${f.field} (${f.reason})`).join(', ')}`,
        { fields },
      );
    }
    return report;
  }

  /**
   * Proves the per-device user once more and, when the settings asked for it, deletes the factory
   * admin user, which everyone with the factory defaults could otherwise use. Deleting a user that
   * is already gone is success, so a retried activation is harmless.
   */
  async activate(session: DeviceSession): Promise<void> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    const deviceUser = record && (await heldDeviceUser(secrets, record.usmUser));
    if (!record || !deviceUser) {
      throw new ConfigurationRejectedError(`the device at ${session.address} cannot be activated before its SNMP user is provisioned`);
    }
    await withSnmpSession(endpoint, deviceUser, this.sessionOptions, async (snmp) => {
      await snmp.get([systemGroup.sysDescr], 'answer the per-device user');
      if (!record.removeFactoryAdmin) return;
      const engineId = await readEngineId(snmp);
      const statusCell = usmUserCell(usmUserEntry.status, engineId, record.factoryAdmin);
      const [status] = await snmp.get([statusCell], 'look up the factory admin user');
      if (status === undefined) return;
      await snmp.set([{ oid: statusCell, type: 'Integer', value: rowStatus.destroy }], 'delete the factory admin user');
    });
  }

  /** sysUpTime, read as the per-device SNMPv3 user (authPriv): it answers, and says since when it runs. */
  async probe(session: DeviceSession): Promise<ProbeReport> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    const deviceUser = record && (await heldDeviceUser(secrets, record.usmUser));
    if (!record || !deviceUser) throw new ConflictError(`no per-device SNMP user has been provisioned for ${session.address}`);
    return withSnmpSession(endpoint, deviceUser, this.sessionOptions, async (snmp) => {
      const [upTime] = await snmp.get([systemGroup.sysUpTime], 'report its uptime');
      const ticks = Number(upTime?.value);
      return Number.isFinite(ticks) ? { uptimeSeconds: Math.floor(ticks / 100) } : {};
    });
  }

  /**
   * New auth and priv keys for the per-device user, set by KeyChange (RFC 3414 section 5) while
   * speaking as that user with the old ones, proven by a read with the new ones. A retry that finds
   * the agent already on the new keys changes nothing.
   */
  async rotateCredentials(session: DeviceSession): Promise<CredentialRotationReport> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    if (!record) throw new ConflictError(`no per-device SNMP user has been provisioned for ${session.address}: there are no keys to rotate`);
    const what = 'SNMPv3 auth and priv keys';
    const rotated = [
      { purpose: snmpSecretPurposes.authPassphrase, bytes: passphraseSecretOctets },
      { purpose: snmpSecretPurposes.privPassphrase, bytes: passphraseSecretOctets },
    ];
    await rotateDeviceSecrets(secrets, rotated, what, async ({ current: [auth, priv], next: [newAuth, newPriv] }) => {
      const held = usmUserOf(record.usmUser, auth!, priv!);
      const renewed = usmUserOf(record.usmUser, newAuth!, newPriv!);
      if (await this.accepts(endpoint, renewed)) return;
      try {
        await withSnmpSession(endpoint, held, this.sessionOptions, async (snmp) => {
          const engineId = await readEngineId(snmp);
          await snmp.set(keyChanges(engineId, held.userName, held, renewed), 'change the keys of the per-device user');
        });
      } catch (error) {
        // An answer lost after the agent took the change: the new keys are then already in force.
        if (!(await this.accepts(endpoint, renewed))) throw error;
      }
      if (!(await this.accepts(endpoint, renewed))) {
        throw new ConfigurationRejectedError(`SNMP agent at ${session.address} took the KeyChange of ${record.usmUser} but does not accept the new keys`);
      }
    });
    return { rotated: [what] };
  }

  /**
   * Destroys the per-device user's usmUserTable row (usmUserStatus = destroy(6)) and its VACM
   * mapping, in one request so that the access check sees both before either is gone. A device
   * that no longer knows the user is done.
   */
  async removeManagementAccess(session: DeviceSession, _options: { resetToInstallKey?: boolean } = {}): Promise<{ removed: string[] }> {
    const endpoint = await this.endpointOf(session);
    const secrets = requireSecrets(session);
    const record = await readProvisioningRecord(secrets);
    const deviceUser = record && (await heldDeviceUser(secrets, record.usmUser));
    if (!record || !deviceUser) return { removed: [] };
    const admin = factoryAdmin(session);
    const candidates = [deviceUser, ...(await pendingDeviceUser(secrets, record.usmUser)), ...(admin ? [admin] : [])];
    const removal = async (snmp: SnmpSession): Promise<boolean> => {
      const engineId = await readEngineId(snmp);
      const statusCell = usmUserCell(usmUserEntry.status, engineId, record.usmUser);
      const groupStatusCell = vacmSecurityToGroupCell(vacmSecurityToGroupEntry.status, securityModel.usm, record.usmUser);
      const [status, groupStatus] = await snmp.get([statusCell, groupStatusCell], 'look up the per-device user');
      if (status === undefined) return false;
      await snmp.set(
        [
          { oid: statusCell, type: 'Integer', value: rowStatus.destroy },
          ...(groupStatus === undefined ? [] : [{ oid: groupStatusCell, type: 'Integer' as const, value: rowStatus.destroy }]),
        ],
        'destroy the per-device user',
      );
      return true;
    };
    try {
      return { removed: (await this.withFirstAccepted(endpoint, candidates, removal)) ? [`SNMPv3 user ${record.usmUser}`] : [] };
    } catch (error) {
      // Refused by every user we hold, or the answer to our own removal lost: done once the user is gone.
      if (!(error instanceof AuthenticationFailedError || error instanceof DeviceUnavailableError)) throw error;
      for (const user of candidates.filter((candidate) => candidate !== admin)) if (await this.accepts(endpoint, user)) throw error;
      return { removed: error instanceof DeviceUnavailableError ? [`SNMPv3 user ${record.usmUser}`] : [] };
    }
  }

  /** Runs `work` with the first candidate the agent accepts; the last refusal is reported. */
  private async withFirstAccepted<T>(endpoint: SnmpEndpoint, candidates: SnmpSecurity[], work: (snmp: SnmpSession) => Promise<T>): Promise<T> {
    let refusal: AuthenticationFailedError | undefined;
    for (const security of candidates) {
      try {
        return await withSnmpSession(endpoint, security, this.sessionOptions, work);
      } catch (error) {
        if (!(error instanceof AuthenticationFailedError)) throw error;
        refusal = error;
      }
    }
    throw refusal ?? new AuthenticationFailedError('no SNMP credentials to try');
  }

  private async accepts(endpoint: SnmpEndpoint, security: SnmpSecurity): Promise<boolean> {
    try {
      await withSnmpSession(endpoint, security, this.sessionOptions, (snmp) => snmp.get([systemGroup.sysDescr], 'answer the per-device user'));
      return true;
    } catch (error) {
      if (error instanceof AuthenticationFailedError) return false;
      throw error;
    }
  }

  private async answersCommunity(endpoint: SnmpEndpoint, version: 'v1' | 'v2c', community: string): Promise<boolean> {
    try {
      await withSnmpSession(
        endpoint,
        { kind: 'community', version, community },
        { timeoutMs: this.communityProbeTimeoutMs, retries: 0 },
        (snmp) => snmp.get([systemGroup.sysDescr], `read with a ${version} community`),
      );
      return true;
    } catch (error) {
      // Silence is what an agent does with a community it does not accept (RFC 3584 section 5.2.1).
      if (error instanceof DeviceUnavailableError || error instanceof AuthenticationFailedError) return false;
      throw error;
    }
  }

  /** Per-device user first (once provisioned), then the factory admin. */
  private async credentialCandidates(session: DeviceSession): Promise<SnmpSecurity[]> {
    const candidates: SnmpSecurity[] = [];
    if (session.secrets) {
      const record = await readProvisioningRecord(session.secrets);
      const deviceUser = record && (await heldDeviceUser(session.secrets, record.usmUser));
      if (deviceUser) candidates.push(deviceUser, ...(await pendingDeviceUser(session.secrets, record.usmUser)));
    }
    const admin = factoryAdmin(session);
    if (admin) candidates.push(admin);
    return candidates;
  }

  private async readerCandidates(session: DeviceSession): Promise<SnmpSecurity[]> {
    const candidates = await this.credentialCandidates(session);
    return candidates.length > 0 ? candidates : [{ kind: 'community', version: 'v2c', community: this.discoveryCommunity }];
  }
}

/** The adapter with default settings, as the activities use it. */

type UsmSecurity = Extract<SnmpSecurity, { kind: 'usm' }>;

function factoryAdmin(session: DeviceSession): UsmSecurity | undefined {
  const credentials = session.credentials;
  if (!credentials) return undefined;
  let authPassphrase = credentials.password;
  let privPassphrase = credentials.password;
  if (credentials.password.trimStart().startsWith('{')) {
    let pair: z.infer<typeof factoryPasswordPair>;
    try {
      pair = factoryPasswordPair.parse(JSON.parse(credentials.password));
    } catch {
      // No cause attached: JSON.parse quotes the text it failed on, and that text is the password.
      throw new ValidationError('SNMP factory credentials: password looks like JSON but is not {"auth": "...", "priv": "..."}', {
        fields: [{ field: 'credentials.password', reason: 'must be a passphrase or {"auth": "...", "priv": "..."}' }],
      });
    }
    authPassphrase = pair.auth;
    privPassphrase = pair.priv;
  }
  return { kind: 'usm', userName: credentials.username, authPassphrase, privPassphrase };
}

function requireSecrets(session: DeviceSession): DeviceSecrets {
  if (!session.secrets) throw new ValidationError(`provisioning the SNMP device at ${session.address} needs its device secrets`);
  return session.secrets;
}

function parseSettings(settings: Record<string, unknown>): SnmpDeviceSettings {
  const result = snmpDeviceSettings.safeParse(settings);
  if (result.success) return result.data;
  throw new ValidationError('SNMP device settings do not fit the snmp settings schema', {
    fields: result.error.issues.map((issue) => ({ field: ['settings', ...issue.path.map(String)].join('.'), reason: issue.message })),
  });
}

const passphraseOf = (octets: Uint8Array) => Buffer.from(octets).toString('base64url');

async function ensureDeviceUser(secrets: DeviceSecrets, userName: string): Promise<UsmSecurity> {
  const auth = await secrets.ensure(snmpSecretPurposes.authPassphrase, passphraseSecretOctets);
  const priv = await secrets.ensure(snmpSecretPurposes.privPassphrase, passphraseSecretOctets);
  return { kind: 'usm', userName, authPassphrase: passphraseOf(auth), privPassphrase: passphraseOf(priv) };
}

function usmUserOf(userName: string, auth: Uint8Array, priv: Uint8Array): UsmSecurity {
  return { kind: 'usm', userName, authPassphrase: passphraseOf(auth), privPassphrase: passphraseOf(priv) };
}

async function heldDeviceUser(secrets: DeviceSecrets, userName: string): Promise<UsmSecurity | undefined> {
  const auth = await secrets.read(snmpSecretPurposes.authPassphrase);
  const priv = await secrets.read(snmpSecretPurposes.privPassphrase);
  return auth && priv ? usmUserOf(userName, auth, priv) : undefined;
}

/** The keys a rotation may have given the agent before it could promote them: none, or one user to try. */
async function pendingDeviceUser(secrets: DeviceSecrets, userName: string): Promise<UsmSecurity[]> {
  const auth = await secrets.read(pendingPurpose(snmpSecretPurposes.authPassphrase));
  const priv = await secrets.read(pendingPurpose(snmpSecretPurposes.privPassphrase));
  return auth && priv ? [usmUserOf(userName, auth, priv)] : [];
}

async function readProvisioningRecord(secrets: DeviceSecrets): Promise<ProvisioningRecord | undefined> {
  const stored = await secrets.read(snmpSecretPurposes.provisioning);
  if (!stored) return undefined;
  return provisioningRecord.parse(JSON.parse(Buffer.from(stored).toString('utf8')));
}

async function writeProvisioningRecord(secrets: DeviceSecrets, record: ProvisioningRecord): Promise<void> {
  await secrets.write(snmpSecretPurposes.provisioning, new Uint8Array(Buffer.from(JSON.stringify(record), 'utf8')));
}

async function readEngineId(snmp: SnmpSession): Promise<Buffer> {
  const [engine] = await snmp.get([snmpEngineID], 'report its engine ID');
  if (!engine || !Buffer.isBuffer(engine.value) || engine.value.length < 5 || engine.value.length > 32) {
    throw new ConfigurationRejectedError(`SNMP agent at ${snmp.address} reports no valid snmpEngineID`);
  }
  return engine.value;
}

/**
 * Creates `deviceUser` as a clone of the factory admin and replaces the cloned keys with ours
 * (RFC 3414 section 5): createAndWait + CloneFrom, then both KeyChanges, then active. A row of that
 * name that our keys do not open (left by an interrupted attempt) is deleted and made again.
 */
async function provisionDeviceUser(snmp: SnmpSession, engineId: Buffer, admin: UsmSecurity, deviceUser: UsmSecurity): Promise<void> {
  const cell = (column: number) => usmUserCell(column, engineId, deviceUser.userName);
  const [existing] = await snmp.get([cell(usmUserEntry.status)], 'look up the per-device user');
  if (existing !== undefined) {
    await snmp.set([{ oid: cell(usmUserEntry.status), type: 'Integer', value: rowStatus.destroy }], 'delete a stale per-device user');
  }
  await snmp.set(
    [
      { oid: cell(usmUserEntry.status), type: 'Integer', value: rowStatus.createAndWait },
      { oid: cell(usmUserEntry.cloneFrom), type: 'ObjectIdentifier', value: usmUserCell(usmUserEntry.securityName, engineId, admin.userName) },
    ],
    'create the per-device user as a clone of the factory admin',
  );
  // The clone holds the admin's keys; each KeyChange proves knowledge of them and sets ours.
  await snmp.set(keyChanges(engineId, deviceUser.userName, admin, deviceUser), 'set the keys of the per-device user');
  await snmp.set([{ oid: cell(usmUserEntry.status), type: 'Integer', value: rowStatus.active }], 'activate the per-device user');
}

/** The usmUserTable sets that move `userName` from the keys of `from` to those of `to`. */
function keyChanges(engineId: Buffer, userName: string, from: UsmSecurity, to: UsmSecurity): SnmpSetValue[] {
  const cell = (column: number) => usmUserCell(column, engineId, userName);
  const old = sha256Aes128Keys(from.authPassphrase, from.privPassphrase, engineId);
  const wanted = sha256Aes128Keys(to.authPassphrase, to.privPassphrase, engineId);
  return [
    { oid: cell(usmUserEntry.authKeyChange), type: 'OctetString', value: encodeKeyChange('sha256', old.authKey, wanted.authKey) },
    { oid: cell(usmUserEntry.privKeyChange), type: 'OctetString', value: encodeKeyChange('sha256', old.privKey, wanted.privKey) },
  ];
}

/** Puts the per-device user into the factory admin's VACM group, so it may manage what the admin could. */
async function ensureGroupMembership(snmp: SnmpSession, adminName: string, userName: string): Promise<void> {
  const adminGroupCell = vacmSecurityToGroupCell(vacmSecurityToGroupEntry.groupName, securityModel.usm, adminName);
  const userGroupCell = vacmSecurityToGroupCell(vacmSecurityToGroupEntry.groupName, securityModel.usm, userName);
  const [adminGroup, userGroup] = await snmp.get([adminGroupCell, userGroupCell], 'read the VACM groups of its users');
  if (adminGroup === undefined) {
    if (userGroup !== undefined) return; // The admin is gone (activation); the user kept its group.
    throw new ConfigurationRejectedError(`SNMP agent at ${snmp.address} has no VACM group for the factory admin ${adminName}`);
  }
  const group = text(adminGroup.value);
  if (userGroup !== undefined) {
    if (text(userGroup.value) !== group) {
      await snmp.set([{ oid: userGroupCell, type: 'OctetString', value: group }], 'move the per-device user into the admin group');
    }
    return;
  }
  await snmp.set(
    [
      { oid: userGroupCell, type: 'OctetString', value: group },
      { oid: vacmSecurityToGroupCell(vacmSecurityToGroupEntry.storageType, securityModel.usm, userName), type: 'Integer', value: storageType.nonVolatile },
      { oid: vacmSecurityToGroupCell(vacmSecurityToGroupEntry.status, securityModel.usm, userName), type: 'Integer', value: rowStatus.createAndGo },
    ],
    'add the per-device user to the admin group',
  );
}

interface CommunityGroupRow {
  model: number;
  securityName: Buffer;
  groupName: string;
}

async function readCommunityGroups(snmp: SnmpSession): Promise<CommunityGroupRow[]> {
  const column = `${vacmSecurityToGroupEntry.base}.${vacmSecurityToGroupEntry.groupName}`;
  const rows: CommunityGroupRow[] = [];
  for (const varbind of await snmp.subtree(column, 'list its VACM security-to-group mappings')) {
    const cell = tableCell(varbind.oid, vacmSecurityToGroupEntry.base);
    if (!cell) continue;
    const [model, ...rest] = cell.index;
    if (model !== securityModel.v1 && model !== securityModel.v2c) continue;
    const name = readOctetStringIndex(rest);
    if (name) rows.push({ model, securityName: name.value, groupName: text(varbind.value) });
  }
  return rows;
}

/**
 * Moves every v1/v2c security name onto a group without access. Snmpd keeps communities
 * (`rocommunity`, `com2sec`) in its configuration only, but their VACM mappings are writable at
 * run time; rows from the configuration file are re-created when the agent restarts.
 */
async function denyCommunityAccess(snmp: SnmpSession): Promise<void> {
  const open = (await readCommunityGroups(snmp)).filter((row) => row.groupName !== deniedCommunityGroup);
  if (open.length === 0) return;
  await snmp.set(
    open.map((row) => ({
      oid: vacmSecurityToGroupCell(vacmSecurityToGroupEntry.groupName, row.model, row.securityName),
      type: 'OctetString' as const,
      value: deniedCommunityGroup,
    })),
    'deny community (v1/v2c) access',
  );
}

interface ChassisEntity {
  serialNumber: string;
  model: string;
  firmwareVersion: string;
  manufacturer: string;
}

/** The first entPhysicalTable row with a serial number (the chassis, on every agent seen). */
async function readChassisEntity(snmp: SnmpSession): Promise<ChassisEntity | undefined> {
  const columns = [entPhysicalEntry.serialNum, entPhysicalEntry.modelName, entPhysicalEntry.softwareRev, entPhysicalEntry.mfgName];
  const byColumn = new Map<number, Map<string, string>>();
  for (const column of columns) {
    const values = new Map<string, string>();
    for (const varbind of await snmp.subtree(`${entPhysicalEntry.base}.${column}`, 'list its physical entities')) {
      const cell = tableCell(varbind.oid, entPhysicalEntry.base);
      if (cell) values.set(cell.index.join('.'), text(varbind.value).trim());
    }
    byColumn.set(column, values);
  }
  const serials = byColumn.get(entPhysicalEntry.serialNum)!;
  const chassis = [...serials.entries()].find(([, serial]) => serial !== '');
  if (!chassis) return undefined;
  const [index, serialNumber] = chassis;
  const at = (column: number) => byColumn.get(column)?.get(index) ?? '';
  return {
    serialNumber,
    model: at(entPhysicalEntry.modelName),
    firmwareVersion: at(entPhysicalEntry.softwareRev),
    manufacturer: at(entPhysicalEntry.mfgName),
  };
}

/** The first non-zero 48-bit interface address; loopbacks and tunnels report none or zeros. */
async function readMacAddress(snmp: SnmpSession): Promise<string | undefined> {
  for (const varbind of await snmp.subtree(ifPhysAddressColumn, 'list its interface addresses')) {
    const octets = varbind.value;
    if (Buffer.isBuffer(octets) && octets.length === 6 && octets.some((octet) => octet !== 0)) {
      return normaliseMacAddress(octets.toString('hex'));
    }
  }
  return undefined;
}

/**
 * Without ENTITY-MIB the agent's engine ID stands in for a serial: RFC 3411 requires it unique
 * per agent and stable across restarts, and Net-SNMP keeps it in persistent storage.
 */
async function engineSerial(snmp: SnmpSession): Promise<string> {
  return `engine-${(await readEngineId(snmp)).toString('hex')}`;
}

function text(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (value === undefined || value === null) return '';
  return String(value);
}

/** SHA-256 over what was applied; the settings carry no keys, and the keys are never part of it. */
function receiptHash(configuration: DeviceConfiguration, settings: SnmpDeviceSettings): string {
  const applied = {
    templateId: configuration.templateId,
    version: configuration.version,
    settings: {
      usmUser: settings.usmUser,
      system: { name: settings.system.name, location: settings.system.location, contact: settings.system.contact },
      communityAccess: settings.communityAccess,
      removeFactoryAdmin: settings.removeFactoryAdmin,
    },
  };
  return createHash('sha256').update(JSON.stringify(applied)).digest('hex');
}

export { parseSnmpAddress } from './addresses';
export { snmpDeviceSettings, snmpProtocolSettings, snmpBuiltInTemplates } from './settings';
