/**
 * The values each device has for its templates' parameters. Plain values are stored as given;
 * secret ones are sealed in the vault, and only when, by whom and how strong each is stays here.
 */
import { and, eq, inArray } from 'drizzle-orm';
import type { SecretVault } from '../custody/secret-vault';
import type { Database } from '../db/client';
import { rowBatchSize } from '../db/row-transfer';
import { deviceConfigurationParameters, type DeviceConfigurationParametersRow } from '../db/schema';
import type { DeviceRegistry } from '../registry/device-registry';
import { assessPassword, passwordRuleParameters, type ComplianceRuleId, type PasswordVerdict } from './compliance';
import type { CompliancePolicies } from './compliance-policies';
import type { DeviceParametersInput, ParameterValue } from './parameters';

/** Vault purposes of configuration secrets, apart from the service's own (initial credentials, device keys). */
const secretPurposePrefix = 'configuration-secret:';

/**
 * Configuration secrets are sealed under the tenant's data key for this purpose, which key custody
 * holds wrapped (see custody/data-keys.ts); the vault asks here which of its values that covers.
 */
export const configurationSecretsDataKey = 'configuration-secrets';
export function dataKeyPurposeOf(vaultPurpose: string): string | undefined {
  return vaultPurpose.startsWith(secretPurposePrefix) ? configurationSecretsDataKey : undefined;
}

/** The compliance rule that judges secrets, by the strength recorded when each was set. */
export const passwordRule: ComplianceRuleId = 'no-default-or-weak-passwords';

/** What is kept of a secret besides its sealed value. */
export interface SealedValueRecord {
  purpose: string;
  setAt: string;
  setBy: string;
  strength: PasswordVerdict;
}

/** A device's stored values: the plain ones, and the records of its secrets. */
export interface StoredParameters {
  values: Record<string, unknown>;
  sealed: Record<string, SealedValueRecord>;
}

export interface DeviceParameters {
  deviceId: string;
  values: Record<string, ParameterValue>;
  /** Which secrets are set, when and by whom, and how strong; never their values. */
  secrets: { name: string; setAt: string; setBy: string; strength: PasswordVerdict }[];
  updatedAt: string | null;
  updatedBy: string | null;
}

export interface DeviceParameterValuesDependencies {
  db: Database;
  vault: SecretVault;
  compliance: CompliancePolicies;
  registry: DeviceRegistry;
}

export class DeviceParameterValues {
  constructor(private readonly deps: DeviceParameterValuesDependencies) {}

  /** The device's values; undefined when it has none and is not registered either. */
  async parameters(tenantId: string, deviceId: string): Promise<DeviceParameters | undefined> {
    const row = await this.#row(tenantId, deviceId);
    if (!row && !(await this.deps.registry.find(tenantId, deviceId))) return undefined;
    return toParameters(deviceId, row);
  }

  /**
   * Replaces the device's plain values and sets or removes the secrets named (others stay). Each
   * secret is judged for strength now, while its plaintext is at hand, and only the verdict kept.
   */
  async writeParameters(tenantId: string, deviceId: string, input: DeviceParametersInput, actor: string): Promise<DeviceParameters> {
    const policy = await this.deps.compliance.policyFor(tenantId);
    const passwordParameters = passwordRuleParameters.parse(policy[passwordRule].parameters);
    const existing = await this.#row(tenantId, deviceId);
    const sealed = { ...((existing?.sealedValues ?? {}) as Record<string, SealedValueRecord>) };
    const now = new Date().toISOString();
    for (const [name, value] of Object.entries(input.secrets)) {
      const purpose = secretPurposePrefix + name;
      if (value === null) {
        await this.deps.vault.remove(tenantId, deviceId, purpose);
        delete sealed[name];
        continue;
      }
      await this.deps.vault.store(tenantId, deviceId, purpose, value);
      sealed[name] = { purpose, setAt: now, setBy: actor, strength: assessPassword(value, passwordParameters) };
    }
    const [row] = await this.deps.db
      .insert(deviceConfigurationParameters)
      .values({ tenantId, deviceId, values: input.values, sealedValues: sealed, updatedBy: actor })
      .onConflictDoUpdate({
        target: [deviceConfigurationParameters.tenantId, deviceConfigurationParameters.deviceId],
        set: { values: input.values, sealedValues: sealed, updatedBy: actor, updatedAt: new Date() },
      })
      .returning();
    return toParameters(deviceId, row);
  }

  /** Gives `toDeviceId` the values and secrets `fromDeviceId` has: a replacement unit takes over its predecessor's settings. */
  async copyParameters(tenantId: string, fromDeviceId: string, toDeviceId: string, actor: string): Promise<void> {
    const stored = await this.stored(tenantId, fromDeviceId);
    const names = Object.keys(stored.sealed);
    if (names.length === 0 && Object.keys(stored.values).length === 0) return;
    const secrets = await this.secretPlaintexts(tenantId, fromDeviceId, names, stored);
    await this.writeParameters(tenantId, toDeviceId, { values: stored.values as DeviceParametersInput['values'], secrets }, actor);
  }

  async stored(tenantId: string, deviceId: string): Promise<StoredParameters> {
    return storedOf(await this.#row(tenantId, deviceId));
  }

  /** The stored values of each of these devices, a batch at a time. */
  async storedForEach(tenantId: string, deviceIds: string[]): Promise<Map<string, StoredParameters>> {
    const stored = new Map<string, StoredParameters>();
    for (let start = 0; start < deviceIds.length; start += rowBatchSize) {
      const rows = await this.deps.db
        .select()
        .from(deviceConfigurationParameters)
        .where(
          and(
            eq(deviceConfigurationParameters.tenantId, tenantId),
            inArray(deviceConfigurationParameters.deviceId, deviceIds.slice(start, start + rowBatchSize)),
          ),
        );
      for (const row of rows) stored.set(row.deviceId, storedOf(row));
    }
    return stored;
  }

  /** The plaintext of each secret set for the device, from the vault. Only for a push to the device. */
  async secretPlaintexts(tenantId: string, deviceId: string, names: string[], stored: StoredParameters): Promise<Record<string, string>> {
    const plaintext: Record<string, string> = {};
    for (const name of names) {
      if (!stored.sealed[name]) continue;
      const value = await this.deps.vault.read<string>(tenantId, deviceId, stored.sealed[name].purpose);
      if (typeof value === 'string') plaintext[name] = value;
    }
    return plaintext;
  }

  async #row(tenantId: string, deviceId: string): Promise<DeviceConfigurationParametersRow | undefined> {
    const [row] = await this.deps.db
      .select()
      .from(deviceConfigurationParameters)
      .where(and(eq(deviceConfigurationParameters.tenantId, tenantId), eq(deviceConfigurationParameters.deviceId, deviceId)));
    return row;
  }
}

function storedOf(row: DeviceConfigurationParametersRow | undefined): StoredParameters {
  return {
    values: (row?.values ?? {}) as Record<string, unknown>,
    sealed: (row?.sealedValues ?? {}) as Record<string, SealedValueRecord>,
  };
}

function toParameters(deviceId: string, row: DeviceConfigurationParametersRow | undefined): DeviceParameters {
  const { values, sealed } = storedOf(row);
  return {
    deviceId,
    values: values as Record<string, ParameterValue>,
    secrets: Object.entries(sealed)
      .map(([name, record]) => ({ name, setAt: record.setAt, setBy: record.setBy, strength: record.strength }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    updatedAt: row?.updatedAt.toISOString() ?? null,
    updatedBy: row?.updatedBy ?? null,
  };
}
