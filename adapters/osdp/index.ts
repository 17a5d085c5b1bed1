/**
 * Provisions OSDP v2.2 card readers on an RS-485 bus, playing the control panel (CP). Readers hold
 * no X.509 certificate; their trust anchor is the Secure Channel Base Key (SCBK): a factory-fresh
 * reader in install mode accepts the well-known SCBK-D, we install a per-device SCBK generated and
 * sealed by the service (KEYSET inside the secure channel), and from then on only that key opens a
 * secure channel to it.
 *
 * Steps: `identify` (ID/PDID, CAP/PDCAP), `authenticate` (secure channel with the reader's own SCBK
 * when we hold one and it accepts it, else SCBK-D), `pushConfiguration` (KEYSET, then COMSET for a
 * new address or speed), `selfTest` (MACed POLL and ID under the new key, SCBK-D refused) and
 * `activate` (the hand-over check, see there). Every call opens the serial port itself and closes it.
 *
 * After activation: `rotateCredentials` gives the reader a new SCBK by KEYSET inside the channel its
 * current key opens, sealed first as pending and kept once a new channel under it opens;
 * `removeManagementAccess` hands the reader back to install mode (KEYSET of SCBK-D, which the
 * reference reader and readers that allow re-commissioning take as "forget your key") only when
 * asked, since a reader in install mode can be taken over by anyone on the bus.
 */
import { createHash } from 'node:crypto';
import type {
  CertificateInstallation,
  ConfigurationReceipt,
  CredentialRotationReport,
  CsrRequest,
  DeviceAdapter,
  DeviceConfiguration,
  DeviceIdentity,
  DeviceSession,
  ProbeReport,
  SelfTestReport,
} from '../device-adapter';
import type { DeviceSecrets } from '../../custody/device-secrets';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  DeviceUnavailableError,
  NotImplementedError,
  PolicyViolationError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { formatReaderAddress, parseReaderAddress, type ReaderAddress } from './addresses';
import { withReaderLink, type ReaderLink } from './control-panel';
import {
  capabilityNames,
  commandCodes,
  decodeCommunicationSettings,
  decodePdCapabilities,
  decodePdIdentity,
  encodeCommunicationSettings,
  encodeKeySet,
  formatSerialNumber,
  manufacturerName,
  replyCodes,
  type PdIdentity,
} from './protocol';
import { defaultScbk, scbkKinds } from './secure-channel';
import { rotateDeviceSecrets } from '../secret-rotation';
import { osdpBuiltInTemplates, osdpProtocolSettings, osdpReaderSettings, type OsdpReaderSettings } from './settings';

/** Name of the reader's SCBK in the device secrets store. */
export const scbkSecretPurpose = 'osdp-scbk';
const scbkLength = 16;

export interface OsdpReaderAdapterOptions {
  /** How long a reader may take to answer one command (OSDP allows 200 ms; USB-RS485 bridges add latency). */
  replyTimeoutMs?: number;
}

type SecureChannelKey = 'device-key' | 'install-mode';

export class OsdpReaderAdapter implements DeviceAdapter {
  readonly protocol = 'osdp';
  readonly settings = osdpProtocolSettings;
  readonly builtInTemplates = osdpBuiltInTemplates;
  private readonly replyTimeoutMs: number;

  constructor(options: OsdpReaderAdapterOptions = {}) {
    this.replyTimeoutMs = options.replyTimeoutMs ?? 1_000;
  }

  validateAddress(address: string): void {
    parseReaderAddress(address);
  }

  /** Readers sit on a serial bus: there is no network host to compare. */
  networkHost(_address: string): string | undefined {
    return undefined;
  }

  async identify(session: DeviceSession): Promise<DeviceIdentity> {
    const deviceKey = await session.secrets?.read(scbkSecretPurpose);
    return this.withLink(session, async (link) => {
      let identity: PdIdentity;
      try {
        identity = await readIdentity(link);
      } catch (error) {
        // A provisioned reader may answer only inside the secure channel; ask again there.
        if (!(error instanceof AuthenticationFailedError) || !deviceKey) throw error;
        await openSecureChannel(link, deviceKey);
        identity = await readIdentity(link);
      }
      const pdcapData = await link.expect(commandCodes.capabilities, Uint8Array.of(0), replyCodes.deviceCapabilities, 'report its capabilities');
      const capabilities = link.parse(() => decodePdCapabilities(pdcapData));
      return {
        serialNumber: formatSerialNumber(identity.serialNumber),
        manufacturer: manufacturerName(identity.vendorCode),
        model: `model ${identity.modelNumber} version ${identity.modelVersion}`,
        firmwareVersion: `${identity.firmware.major}.${identity.firmware.minor}.${identity.firmware.build}`,
        deviceType: 'card_reader',
        // Never certificate-enrolment: readers hold no X.509 certificate.
        capabilities: capabilityNames(capabilities),
      };
    });
  }

  async authenticate(session: DeviceSession): Promise<void> {
    const deviceKey = await session.secrets?.read(scbkSecretPurpose);
    await this.withLink(session, async (link) => {
      await openSecureChannel(link, deviceKey);
      await link.expect(commandCodes.poll, new Uint8Array(), replyCodes.ack, 'answer a poll in the secure channel');
    });
  }

  async createCertificateSigningRequest(_session: DeviceSession, _request: CsrRequest): Promise<string> {
    throw new NotImplementedError('OSDP readers hold no X.509 certificate: their trust rests on the per-device SCBK');
  }

  async installCertificate(_session: DeviceSession, _installation: CertificateInstallation): Promise<void> {
    throw new NotImplementedError('OSDP readers hold no X.509 certificate: their trust rests on the per-device SCBK');
  }

  /**
   * Installs the reader's own SCBK (generated once and sealed by the service; a retry reuses it)
   * and moves it to its configured address and speed. Safe to repeat: a reader that already holds
   * the key is recognised by its accepting it, and one that already moved is found at its new place.
   */
  async pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt> {
    // OSDP commands (KEYSET, COMSET) have no place for configuration.signature; it is not sent.
    const settings = parseSettings(configuration.settings);
    const deviceKey = await requireSecrets(session).ensure(scbkSecretPurpose, scbkLength);
    const current = parseReaderAddress(session.address);
    const target: ReaderAddress = {
      portPath: current.portPath,
      pdAddress: settings.pdAddress ?? current.pdAddress,
      baudRate: settings.baudRate ?? current.baudRate,
    };
    const moves = target.pdAddress !== current.pdAddress || target.baudRate !== current.baudRate;

    try {
      await this.withLink(current, async (link) => {
        const key = await openSecureChannel(link, deviceKey);
        if (key === 'install-mode') await installKey(link, deviceKey, 'install its SCBK');
        if (moves) await moveReader(link, target);
      });
    } catch (error) {
      // A COMSET whose reply was lost already moved the reader: a retry finds it at its new place,
      // recognised by its own key alone (never by SCBK-D: that could be another reader on the bus).
      if (!(error instanceof DeviceUnavailableError) || !moves) throw error;
      const moved = await this.withLink(target, (link) => link.establishSecureChannel(deviceKey, scbkKinds.deviceKey)).catch(() => false);
      if (!moved) throw error;
    }
    return {
      version: configuration.version,
      ...(moves ? { address: formatReaderAddress(target) } : {}),
      hash: appliedSettingsHash(target),
      appliedAt: new Date().toISOString(),
    };
  }

  /** Under the reader's own key: a secure channel, a MACed POLL/ACK and ID/PDID; and SCBK-D refused. */
  async selfTest(session: DeviceSession): Promise<SelfTestReport> {
    const deviceKey = await session.secrets?.read(scbkSecretPurpose);
    const checks: SelfTestReport['checks'] = [];
    await this.withLink(session, async (link) => {
      const secured = deviceKey !== undefined && (await link.establishSecureChannel(deviceKey, scbkKinds.deviceKey));
      checks.push({
        name: 'secure-channel-device-key',
        passed: secured,
        detail: deviceKey === undefined ? 'no per-device SCBK is held for this reader' : secured ? 'established' : 'the reader refused its own SCBK',
      });
      if (secured) {
        const poll = await link.command(commandCodes.poll);
        checks.push({ name: 'secure-poll', passed: poll.code === replyCodes.ack, detail: poll.code === replyCodes.ack ? 'ACK with a verified MAC' : `reply 0x${poll.code.toString(16)}` });
        const id = await link.command(commandCodes.identify, Uint8Array.of(0));
        const identified = id.code === replyCodes.deviceIdentity;
        checks.push({
          name: 'secure-identify',
          passed: identified,
          detail: identified ? `serial ${formatSerialNumber(link.parse(() => decodePdIdentity(id.data)).serialNumber)}, encrypted and MACed` : `reply 0x${id.code.toString(16)}`,
        });
      }
      const installModeOpen = await link.establishSecureChannel(defaultScbk, scbkKinds.defaultKey);
      checks.push({
        name: 'install-mode-closed',
        passed: !installModeOpen,
        detail: installModeOpen ? 'the reader still accepts SCBK-D: anyone on the bus could re-key it' : 'SCBK-D refused',
      });
    });
    const failed = checks.filter((check) => !check.passed);
    if (failed.length > 0) {
      const fields = failed.map((check) => ({ field: check.name, reason: check.detail ?? 'failed' }));
      throw new SelfTestFailedError(`${describe(parseReaderAddress(session.address))} failed its self-test: ${fields.map((f) => `${f.field} (${f.reason})`).join(', ')}`, {
        fields,
      });
    }
    return { passed: true, checks };
  }

  /**
   * OSDP has no commit step: KEYSET and COMSET take effect at once. Activation is the hand-over
   * check before the reader goes into service: it answers in the secure channel under its own key
   * at its configured address, and refuses SCBK-D (install mode closed).
   */
  async activate(session: DeviceSession): Promise<void> {
    const deviceKey = await session.secrets?.read(scbkSecretPurpose);
    await this.withLink(session, async (link) => {
      if (!deviceKey || !(await link.establishSecureChannel(deviceKey, scbkKinds.deviceKey))) {
        throw new AuthenticationFailedError(`${link.description} does not accept its own SCBK${deviceKey ? '' : ' (none is held: configuration was never pushed)'}`);
      }
      await link.expect(commandCodes.poll, new Uint8Array(), replyCodes.ack, 'answer a poll in the secure channel');
      if (await link.establishSecureChannel(defaultScbk, scbkKinds.defaultKey)) {
        throw new PolicyViolationError(`${link.description} still accepts SCBK-D (install mode): it must not go into service like that`);
      }
    });
  }

  /** POLL inside a secure channel opened with the reader's own SCBK: it answers, and still holds our key. OSDP reports no uptime. */
  async probe(session: DeviceSession): Promise<ProbeReport> {
    const deviceKey = await session.secrets?.read(scbkSecretPurpose);
    await this.withLink(session, async (link) => {
      if (!deviceKey || !(await link.establishSecureChannel(deviceKey, scbkKinds.deviceKey))) {
        throw new AuthenticationFailedError(`${link.description} does not accept its own SCBK${deviceKey ? '' : ' (none is held)'}`);
      }
      await link.expect(commandCodes.poll, new Uint8Array(), replyCodes.ack, 'answer a poll in the secure channel');
    });
    return {};
  }

  /**
   * A new SCBK by KEYSET inside the channel the current key opens, proven by a new channel under
   * it. A retry after a lost ACK finds the reader already on the new key and only proves it.
   */
  async rotateCredentials(session: DeviceSession): Promise<CredentialRotationReport> {
    const what = 'OSDP secure channel base key (SCBK)';
    await rotateDeviceSecrets(requireSecrets(session), [{ purpose: scbkSecretPurpose, bytes: scbkLength }], what, async ({ current: [held], next: [fresh] }) => {
      await this.withLink(session, async (link) => {
        if (!(await link.establishSecureChannel(fresh!, scbkKinds.deviceKey))) {
          if (!(await link.establishSecureChannel(held!, scbkKinds.deviceKey))) {
            throw new AuthenticationFailedError(`${link.description} accepts neither its SCBK nor the one it is being given`);
          }
          await installKey(link, fresh!, 'take its new SCBK');
        }
      });
    });
    return { rotated: [what] };
  }

  /**
   * With `resetToInstallKey`, KEYSET of SCBK-D: the reader forgets its own key and accepts SCBK-D
   * again (install mode), for a reader that goes back to stock or to another system. Otherwise the
   * reader keeps its key, which dies with the vault's copy: nothing to do on the bus.
   */
  async removeManagementAccess(session: DeviceSession, options: { resetToInstallKey?: boolean } = {}): Promise<{ removed: string[] }> {
    if (!options.resetToInstallKey) return { removed: [] };
    const deviceKey = await requireSecrets(session).read(scbkSecretPurpose);
    return this.withLink(session, async (link) => {
      if (!deviceKey || !(await link.establishSecureChannel(deviceKey, scbkKinds.deviceKey))) {
        // Back in install mode already (a retry after a lost ACK), or a key we do not know.
        if (await link.establishSecureChannel(defaultScbk, scbkKinds.defaultKey)) return { removed: [] };
        throw new AuthenticationFailedError(`${link.description} accepts neither its own SCBK nor SCBK-D: it holds a key we do not know`);
      }
      await link.expect(commandCodes.keySet, encodeKeySet(defaultScbk), replyCodes.ack, 'go back to SCBK-D', (message) => new ConfigurationRejectedError(message));
      if (!(await link.establishSecureChannel(defaultScbk, scbkKinds.defaultKey))) {
        throw new ConfigurationRejectedError(`${link.description} acknowledged SCBK-D but does not accept it`);
      }
      return { removed: ['OSDP per-device SCBK (reader back in install mode)'] };
    });
  }

  private withLink<T>(target: DeviceSession | ReaderAddress, use: (link: ReaderLink) => Promise<T>): Promise<T> {
    const address = 'portPath' in target ? target : parseReaderAddress(target.address);
    return withReaderLink(address, describe(address), { replyTimeoutMs: this.replyTimeoutMs }, use);
  }
}

/** The adapter with default settings, as the activities use it. */
export const osdpReaderAdapter = new OsdpReaderAdapter();

function describe(address: ReaderAddress): string {
  return `OSDP reader ${formatReaderAddress(address)}`;
}

async function readIdentity(link: ReaderLink): Promise<PdIdentity> {
  const data = await link.expect(commandCodes.identify, Uint8Array.of(0), replyCodes.deviceIdentity, 'report its identity');
  return link.parse(() => decodePdIdentity(data));
}

/**
 * Opens the secure channel with the reader's own SCBK when we hold one and it accepts it, else with
 * SCBK-D (install mode). Which one worked tells the caller whether the reader still needs its key.
 */
async function openSecureChannel(link: ReaderLink, deviceKey: Uint8Array | undefined): Promise<SecureChannelKey> {
  if (deviceKey && (await link.establishSecureChannel(deviceKey, scbkKinds.deviceKey))) return 'device-key';
  if (await link.establishSecureChannel(defaultScbk, scbkKinds.defaultKey)) return 'install-mode';
  throw new AuthenticationFailedError(
    deviceKey
      ? `${link.description} accepted neither its own SCBK nor SCBK-D: it holds a key we do not know`
      : `${link.description} refused SCBK-D (it is not in install mode) and no per-device SCBK is held for it`,
  );
}

/** KEYSET of `key` inside the open secure channel, proven before anything depends on it: a new session under it. */
async function installKey(link: ReaderLink, key: Uint8Array, purpose: string): Promise<void> {
  await link.expect(commandCodes.keySet, encodeKeySet(key), replyCodes.ack, purpose, (message) => new ConfigurationRejectedError(message));
  if (!(await link.establishSecureChannel(key, scbkKinds.deviceKey))) {
    throw new ConfigurationRejectedError(`${link.description} acknowledged its new SCBK but does not use it`);
  }
}

async function moveReader(link: ReaderLink, target: ReaderAddress): Promise<void> {
  const data = await link.expect(
    commandCodes.communicationSettings,
    encodeCommunicationSettings({ address: target.pdAddress, baudRate: target.baudRate }),
    replyCodes.communicationSettings,
    'change its address and speed',
    (message) => new ConfigurationRejectedError(message),
  );
  const applied = link.parse(() => decodeCommunicationSettings(data));
  if (applied.address !== target.pdAddress || applied.baudRate !== target.baudRate) {
    throw new ConfigurationRejectedError(
      `${link.description} answered COMSET with address 0x${applied.address.toString(16)} at ${applied.baudRate} baud instead of ${formatReaderAddress(target)}`,
    );
  }
}

function parseSettings(settings: Record<string, unknown>): OsdpReaderSettings {
  const result = osdpReaderSettings.safeParse(settings);
  if (result.success) return result.data;
  throw new ValidationError('OSDP reader settings are invalid', {
    fields: result.error.issues.map((issue) => ({ field: ['settings', ...issue.path.map(String)].join('.'), reason: issue.message })),
  });
}

function requireSecrets(session: DeviceSession): DeviceSecrets {
  if (!session.secrets) throw new ValidationError('managing an OSDP reader needs its device secrets store, to keep its SCBK');
  return session.secrets;
}

/**
 * SHA-256 over the settings as the reader now runs them (address and speed in effect, secure
 * channel required), in a fixed field order; the SCBK is never part of it.
 */
function appliedSettingsHash(applied: ReaderAddress): string {
  const settings = { pdAddress: applied.pdAddress, baudRate: applied.baudRate, secureChannel: { required: true } };
  return createHash('sha256').update(JSON.stringify(settings), 'utf8').digest('hex');
}

export { parseReaderAddress, formatReaderAddress } from './addresses';
export { osdpProtocolSettings, osdpReaderSettings, defaultOsdpReaderSettings, osdpBuiltInTemplates } from './settings';
