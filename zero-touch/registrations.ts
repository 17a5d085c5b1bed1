/**
 * Zero-touch pre-registrations: devices expected on the network, by serial and/or MAC, each with a
 * long-lived workflow waiting for it. Discovery, DHCP lease events and enrolment tokens report
 * sightings here; a sighting that matches a registration is handed to its workflow, which checks
 * and provisions. What a registration has come to lives in its workflow, not in its store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import { z } from 'zod';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { SecretVault } from '../custody/secret-vault';
import { credentialsSchema, initialCredentialsPurpose } from '../registry/initial-credentials';
import { identifierPattern, identifierReason } from '../registry/identifiers';
import { templateIdPattern, type TemplateCatalog } from '../configuration/templates';
import { deviceTypes, macAddressSchema } from '../provisioning/requests';
import { ConflictError, UnauthenticatedError, ValidationError, type FieldProblem } from '../foundation/errors';
import { fromWorkflowError, isWorkflowNotFound } from '../foundation/workflow-errors';
import type { zeroTouchProvisioning } from '../workflows/zero-touch';
import {
  cancelRegistrationSignal,
  deviceSeenSignal,
  zeroTouchStatusQuery,
  zeroTouchWorkflowId,
  type DeviceSighting,
  type ZeroTouchInput,
  type ZeroTouchMatch,
  type ZeroTouchStatus,
} from '../contracts/zero-touch';
import { provisioningSearchAttributes as attributes } from '../contracts/provisioning';
import type { StoredRegistration, ZeroTouchRegistrationStore } from './registration-store';

const dayMs = 24 * 60 * 60 * 1000;
/** An enrolment token is for the installer standing at the device, not for later. */
const enrolmentTokenLifetimeMs = 15 * 60 * 1000;
const enrolmentTokenPrefix = 'dzt_';

export function registrationSchema(protocols: readonly string[]) {
  return z
    .object({
      deviceId: z.string().regex(identifierPattern, identifierReason).optional(),
      serialNumber: z.string().trim().regex(identifierPattern, identifierReason).optional(),
      macAddress: macAddressSchema.optional(),
      protocol: z.string().refine((p) => protocols.includes(p), { message: `must be one of: ${protocols.join(', ')}` }),
      deviceType: z.enum(deviceTypes).default('other'),
      site: z.string().regex(identifierPattern, identifierReason),
      templateId: z.string().regex(templateIdPattern, 'must be a template id').default('default'),
      name: z.string().trim().min(1).max(120).optional(),
      credentials: credentialsSchema.optional(),
      requireApproval: z.boolean().default(false),
      /** How long to wait for the device before the registration ends. */
      expiresInDays: z.number().int().min(1).max(365).default(30),
    })
    .strict()
    .refine((r) => r.serialNumber !== undefined || r.macAddress !== undefined, {
      message: 'a serial number or a MAC address (or both) is required to recognise the device',
      path: ['serialNumber'],
    });
}

export function registrationRequestSchema(protocols: readonly string[]) {
  return z
    .object({
      devices: z.array(registrationSchema(protocols)).min(1, 'at least one device is required').max(1000, 'at most 1000 devices per request'),
    })
    .strict();
}

export type ZeroTouchRegistrationRequest = z.infer<ReturnType<typeof registrationRequestSchema>>;

export interface ZeroTouchRegistration {
  id: string;
  deviceId: string;
  serialNumber: string | null;
  macAddress: string | null;
  protocol: string;
  deviceType: string;
  site: string;
  templateId: string;
  name: string | null;
  requireApproval: boolean;
  expiresAt: string;
  createdAt: string;
  workflowId: string;
  status?: ZeroTouchStatus;
}

export interface ZeroTouchRegistrationsDependencies {
  store: ZeroTouchRegistrationStore;
  vault: SecretVault;
  client: Client;
  taskQueue: string;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  /** Where devices may be reached: an enrolment naming an address outside is refused. */
  networks: DeviceNetworks;
  templates: TemplateCatalog;
  /** False where the cluster has no custom search attributes (the time-skipping test server). */
  searchAttributes?: boolean;
}

export class ZeroTouchRegistrations {
  constructor(private readonly deps: ZeroTouchRegistrationsDependencies) {}

  /** Stores each registration and starts the workflow waiting for it; all or nothing is registered. */
  async register(tenantId: string, request: ZeroTouchRegistrationRequest, createdBy: string): Promise<ZeroTouchRegistration[]> {
    const devices = request.devices.map((device) => ({
      ...device,
      deviceId: device.deviceId ?? device.serialNumber ?? `mac-${device.macAddress!.replace(/:/g, '')}`,
    }));
    await this.checkRegistrations(tenantId, devices);

    const now = Date.now();
    const rows = await this.deps.store.insert(
      devices.map((device) => ({
        tenantId,
        deviceId: device.deviceId,
        serialNumber: device.serialNumber ?? null,
        macAddress: device.macAddress ?? null,
        protocol: device.protocol,
        deviceType: device.deviceType,
        site: device.site,
        templateId: device.templateId,
        name: device.name ?? null,
        requireApproval: device.requireApproval,
        expiresAt: new Date(now + device.expiresInDays * dayMs),
        createdBy,
      })),
    );
    const withCredentials = devices.filter((device) => device.credentials);
    if (withCredentials.length > 0) {
      await this.deps.vault.storeMany(
        tenantId,
        initialCredentialsPurpose,
        withCredentials.map((device) => ({ deviceId: device.deviceId, value: device.credentials })),
      );
    }
    for (const row of rows) await this.startWaiting(row);
    return rows.map((row) => registrationOf(row));
  }

  async get(tenantId: string, deviceId: string): Promise<ZeroTouchRegistration> {
    const row = await this.deps.store.ofDevice(tenantId, deviceId);
    const status = await this.handleOf(row)
      .query(zeroTouchStatusQuery)
      .catch((error) => {
        if (isWorkflowNotFound(error)) return undefined;
        throw fromWorkflowError(error, { what: `the registration of ${deviceId}` });
      });
    return registrationOf(row, status);
  }

  async cancel(tenantId: string, deviceId: string, reason: string): Promise<void> {
    const row = await this.deps.store.ofDevice(tenantId, deviceId);
    await this.signal(row, cancelRegistrationSignal, { reason });
  }

  /**
   * Hands each sighting to the registrations it may be: same serial or same MAC, still waiting.
   * A sighting whose serial matches one registration and MAC another goes to both; each workflow
   * then finds the half that contradicts it and reports the mismatch. Returns the registrations
   * that took a sighting.
   */
  async offerSightings(tenantId: string, sightings: DeviceSighting[]): Promise<{ matched: ZeroTouchMatch[] }> {
    const candidates = await this.deps.store.awaiting(tenantId, {
      serialNumbers: [...new Set(sightings.flatMap((s) => (s.serialNumber ? [s.serialNumber] : [])))],
      macAddresses: [...new Set(sightings.flatMap((s) => (s.macAddress ? [s.macAddress] : [])))],
    });
    const matched = new Map<string, ZeroTouchMatch>();
    for (const sighting of sightings) {
      for (const row of candidates) {
        const sameSerial = sighting.serialNumber !== undefined && row.serialNumber === sighting.serialNumber;
        const sameMac = sighting.macAddress !== undefined && row.macAddress === sighting.macAddress;
        if (!sameSerial && !sameMac) continue;
        // A registration whose workflow has ended (provisioned, expired, cancelled) no longer listens.
        const delivered = await this.handleOf(row)
          .signal(deviceSeenSignal, sighting)
          .then(() => true)
          .catch((error) => {
            if (isWorkflowNotFound(error)) return false;
            throw fromWorkflowError(error, { what: `the registration of ${row.deviceId}` });
          });
        if (delivered) {
          matched.set(row.id, {
            registrationId: row.id,
            deviceId: row.deviceId,
            ...(row.serialNumber ? { serialNumber: row.serialNumber } : {}),
            ...(row.macAddress ? { macAddress: row.macAddress } : {}),
          });
        }
      }
    }
    return { matched: [...matched.values()] };
  }

  /** A single-use token an installer's phone presents, with the device's address, to start provisioning. */
  async issueEnrolmentToken(tenantId: string, deviceId: string): Promise<{ token: string; expiresAt: Date }> {
    const row = await this.deps.store.ofDevice(tenantId, deviceId);
    if (row.expiresAt <= new Date()) throw new ConflictError(`the registration of ${deviceId} has expired`);
    const token = enrolmentTokenPrefix + randomBytes(24).toString('base64url');
    const expiresAt = new Date(Date.now() + enrolmentTokenLifetimeMs);
    // A new token replaces any earlier one: only the latest QR code works.
    await this.deps.store.setEnrolmentToken(row.id, tokenHash(token), expiresAt);
    return { token, expiresAt };
  }

  /** Redeems a token once: the registration's workflow is told where the device is. */
  async redeemEnrolmentToken(token: string, address: string): Promise<{ tenantId: string; deviceId: string }> {
    if (!token.startsWith(enrolmentTokenPrefix)) throw new UnauthenticatedError('the enrolment token is not valid');
    const row = await this.deps.store.useEnrolmentToken(tokenHash(token));
    // One answer for unknown, used and expired tokens: a guesser learns nothing.
    if (!row) throw new UnauthenticatedError('the enrolment token is not valid, has been used, or has expired');
    const addressProblem = await this.deps.networks.addressProblem(this.deps.adapters.get(row.protocol)!, address);
    if (addressProblem) {
      // The token stays usable: a mistyped address must not burn it.
      await this.deps.store.releaseEnrolmentToken(row.id);
      throw new ValidationError(`device address ${JSON.stringify(address)} cannot be used: ${addressProblem}`, {
        fields: [{ field: 'address', reason: addressProblem }],
      });
    }
    const sighting: DeviceSighting = {
      via: 'enrolment-token',
      observedAt: new Date().toISOString(),
      endpoints: [{ protocol: row.protocol, address }],
    };
    await this.signal(row, deviceSeenSignal, sighting);
    return { tenantId: row.tenantId, deviceId: row.deviceId };
  }

  private handleOf(row: StoredRegistration) {
    return this.deps.client.workflow.getHandle(zeroTouchWorkflowId(row.tenantId, row.deviceId));
  }

  /** Signals the registration's workflow; one that has ended is a conflict. */
  private async signal<Args extends unknown[]>(row: StoredRegistration, signal: SignalDefinition<Args>, ...args: Args): Promise<void> {
    await this.handleOf(row)
      .signal(signal, ...args)
      .catch((error) => {
        if (isWorkflowNotFound(error)) throw new ConflictError(`the registration of ${row.deviceId} has already ended`);
        throw fromWorkflowError(error, { what: `the registration of ${row.deviceId}` });
      });
  }

  private async startWaiting(row: StoredRegistration): Promise<void> {
    const input: ZeroTouchInput = {
      tenantId: row.tenantId,
      registrationId: row.id,
      deviceId: row.deviceId,
      expected: { ...(row.serialNumber ? { serialNumber: row.serialNumber } : {}), ...(row.macAddress ? { macAddress: row.macAddress } : {}) },
      protocol: row.protocol,
      expiresAt: row.expiresAt.toISOString(),
    };
    try {
      await this.deps.client.workflow.start<typeof zeroTouchProvisioning>('zeroTouchProvisioning', {
        workflowId: zeroTouchWorkflowId(row.tenantId, row.deviceId),
        taskQueue: this.deps.taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        ...(this.deps.searchAttributes === false
          ? {}
          : {
              typedSearchAttributes: [
                { key: attributes.tenantId, value: row.tenantId },
                { key: attributes.deviceId, value: row.deviceId },
                { key: attributes.site, value: row.site },
                { key: attributes.method, value: 'automatic' },
              ],
            }),
      });
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError) return;
      throw error;
    }
  }

  /** Registrations must name a template for their protocol and must not claim what another registration claims. */
  private async checkRegistrations(
    tenantId: string,
    devices: { deviceId: string; serialNumber?: string; macAddress?: string; protocol: string; templateId: string }[],
  ): Promise<void> {
    const problems: FieldProblem[] = [];
    const seen = new Map<string, number>();
    for (const [index, device] of devices.entries()) {
      for (const key of [`deviceId:${device.deviceId}`, device.serialNumber && `serialNumber:${device.serialNumber}`, device.macAddress && `macAddress:${device.macAddress}`]) {
        if (!key) continue;
        const earlier = seen.get(key);
        const field = key.slice(0, key.indexOf(':'));
        if (earlier !== undefined) problems.push({ field: `devices[${index}].${field}`, reason: `the same as devices[${earlier}]` });
        else seen.set(key, index);
      }
      const template = await this.deps.templates.get(tenantId, device.templateId).catch(() => undefined);
      if (!template) problems.push({ field: `devices[${index}].templateId`, reason: `no template ${device.templateId}` });
      else if (template.protocol !== device.protocol) {
        problems.push({ field: `devices[${index}].templateId`, reason: `template ${template.id} configures ${template.protocol} devices, not ${device.protocol}` });
      }
    }
    const existing = await this.deps.store.claiming(tenantId, {
      deviceIds: devices.map((d) => d.deviceId),
      serialNumbers: devices.flatMap((d) => (d.serialNumber ? [d.serialNumber] : [])),
      macAddresses: devices.flatMap((d) => (d.macAddress ? [d.macAddress] : [])),
    });
    for (const [index, device] of devices.entries()) {
      const clash = existing.find(
        (row) =>
          row.deviceId === device.deviceId ||
          (device.serialNumber !== undefined && row.serialNumber === device.serialNumber) ||
          (device.macAddress !== undefined && row.macAddress === device.macAddress),
      );
      if (clash) problems.push({ field: `devices[${index}]`, reason: `device ${clash.deviceId} is already registered for zero-touch provisioning` });
    }
    if (problems.length > 0) {
      const error = new ValidationError(`zero-touch registration is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`, { fields: problems });
      throw existing.length > 0 && problems.every((p) => p.reason.includes('already registered')) ? new ConflictError(error.message, { fields: problems }) : error;
    }
  }
}

function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function registrationOf(row: StoredRegistration, status?: ZeroTouchStatus): ZeroTouchRegistration {
  return {
    id: row.id,
    deviceId: row.deviceId,
    serialNumber: row.serialNumber,
    macAddress: row.macAddress,
    protocol: row.protocol,
    deviceType: row.deviceType,
    site: row.site,
    templateId: row.templateId,
    name: row.name,
    requireApproval: row.requireApproval,
    expiresAt: row.expiresAt.toISOString(),
    createdAt: row.createdAt.toISOString(),
    workflowId: zeroTouchWorkflowId(row.tenantId, row.deviceId),
    ...(status ? { status } : {}),
  };
}
