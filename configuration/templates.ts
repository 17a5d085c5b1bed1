/**
 * Configuration templates: stored per tenant (plus built-ins every tenant may use), rendered per
 * device by filling `{{variable}}` placeholders, and validated against the protocol's settings
 * schema before a template is saved and again before a configuration is pushed.
 */
import { onvifCameraTemplateSettings } from '../adapters/onvif/settings';
import { bacnetTemplateSettings } from '../adapters/bacnet/settings';
import { randomUUID } from 'node:crypto';
import { and, eq, isNull, or } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client';
import { configurationTemplates, type ConfigurationTemplateRow } from '../db/schema';
import { ConflictError, NotFoundError, ValidationError } from '../service/errors';
import { fieldProblems, parseOrThrow } from '../service/validation';
import { settingsSchemaFor } from './settings-schemas';

export interface TemplateContext {
  tenant: { id: string };
  device: {
    deviceId: string;
    serialNumber: string;
    macAddress: string;
    site: string;
    name: string;
    /** The device id made into a valid host label. */
    hostname: string;
  };
}

export interface ConfigurationTemplate {
  id: string;
  tenantId: string | null;
  name: string;
  description: string | null;
  deviceType: string | null;
  protocol: string;
  version: number;
  builtIn: boolean;
  body: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export const builtInTemplates = [
  {
    id: 'default',
    name: 'Default',
    description: 'Hardened baseline for devices with a native HTTPS management API: TLS 1.2+, mutual TLS only, NTP.',
    deviceType: null,
    protocol: 'https',
    body: {
      hostname: '{{device.hostname}}',
      timezone: 'UTC',
      site: '{{device.site}}',
      ntp: { servers: ['ntp1.{{device.site}}.internal', 'ntp2.{{device.site}}.internal'] },
      tls: { minVersion: 'TLSv1.2' },
      management: { httpEnabled: false, passwordLogin: false },
    },
  },
  {
    id: 'onvif-camera',
    name: 'ONVIF camera',
    description: 'Certificate from the site CA on the device, HTTPS only (HTTP off), per-device management user, NTP from the site.',
    deviceType: 'camera',
    protocol: 'onvif',
    body: onvifCameraTemplateSettings,
  },
  {
    id: 'snmp-v3-baseline',
    name: 'SNMPv3 baseline',
    description: 'Per-device SNMPv3 user (SHA-256/AES), community (v1/v2c) access off, system group named after the device.',
    deviceType: null,
    protocol: 'snmp',
    body: {
      usmUser: 'provisioning',
      system: { name: '{{device.hostname}}', location: '{{device.site}}', contact: 'security-operations' },
      communityAccess: 'disabled',
      removeFactoryAdmin: false,
    },
  },
  {
    id: 'bacnet-controller',
    name: 'BACnet/IP controller',
    description: 'Device object named after the device, site as location, clock synchronised, conservative APDU timing.',
    deviceType: 'building_controller',
    protocol: 'bacnet',
    body: bacnetTemplateSettings['bacnet-controller'],
  },
  {
    id: 'bacnet-sc-controller',
    name: 'BACnet/SC controller',
    description: "As the BACnet/IP baseline, plus the operational certificate from the site's CA and the site's primary and failover hubs.",
    deviceType: 'building_controller',
    protocol: 'bacnet',
    body: bacnetTemplateSettings['bacnet-sc-controller'],
  },
  {
    id: 'osdp-reader',
    name: 'OSDP card reader',
    description: 'Per-device secure channel key (SCBK) installed and install mode closed; bus address and speed unchanged.',
    deviceType: 'card_reader',
    protocol: 'osdp',
    body: { secureChannel: { required: true } },
  },
] as const;

export const templateIdPattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const templateInputSchema = z
  .object({
    id: z.string().regex(templateIdPattern, 'must be 1-63 characters of a-z, 0-9, ".", "_" or "-"').optional(),
    name: z.string().trim().min(1).max(120),
    description: z.string().max(2000).optional(),
    deviceType: z.string().max(64).optional(),
    protocol: z.string().min(1).max(32),
    body: z.record(z.string(), z.unknown()),
  })
  .strict();
export type TemplateInput = z.infer<typeof templateInputSchema>;

const placeholder = /\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}/g;

export function hostLabelFor(deviceId: string): string {
  const label = deviceId.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  return (label || 'device').slice(0, 63).replace(/-+$/, '');
}

/** Fills placeholders throughout a template body; an unknown variable is an error, never left blank. */
export function renderTemplateBody(body: unknown, context: TemplateContext, path = 'body'): unknown {
  if (typeof body === 'string') {
    return body.replace(placeholder, (_match, name: string) => {
      const value = name.split('.').reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], context);
      if (typeof value !== 'string' && typeof value !== 'number') {
        throw new ValidationError(`${path}: unknown template variable {{${name}}}`, {
          fields: [{ field: path, reason: `unknown template variable {{${name}}}` }],
        });
      }
      return String(value);
    });
  }
  if (Array.isArray(body)) return body.map((item, index) => renderTemplateBody(item, context, `${path}[${index}]`));
  if (body && typeof body === 'object') {
    return Object.fromEntries(
      Object.entries(body).map(([key, value]) => [key, renderTemplateBody(value, context, `${path}.${key}`)]),
    );
  }
  return body;
}

export function templateContextFor(
  tenantId: string,
  device: { deviceId: string; serialNumber: string; macAddress: string; site: string; name?: string | null },
): TemplateContext {
  return {
    tenant: { id: tenantId },
    device: {
      deviceId: device.deviceId,
      serialNumber: device.serialNumber,
      macAddress: device.macAddress,
      site: device.site,
      name: device.name ?? device.deviceId,
      hostname: hostLabelFor(device.deviceId),
    },
  };
}

/** Renders and validates: the settings a device of this protocol will be sent. */
export function renderConfiguration(template: ConfigurationTemplate, context: TemplateContext): Record<string, unknown> {
  const schema = settingsSchemaFor(template.protocol);
  if (!schema) {
    throw new ValidationError(`no configuration schema for protocol ${template.protocol}`, {
      fields: [{ field: 'protocol', reason: `unsupported protocol ${template.protocol}` }],
    });
  }
  const rendered = renderTemplateBody(template.body, context);
  return parseOrThrow(schema, rendered, `configuration rendered from template ${template.id}`, 'body');
}

const sampleContext: TemplateContext = {
  tenant: { id: 'tenant' },
  device: {
    deviceId: 'sample-device',
    serialNumber: 'SN0001',
    macAddress: '02:00:00:00:00:01',
    site: 'site',
    name: 'sample-device',
    hostname: 'sample-device',
  },
};

function toTemplate(row: ConfigurationTemplateRow): ConfigurationTemplate {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    description: row.description,
    deviceType: row.deviceType,
    protocol: row.protocol,
    version: row.version,
    builtIn: row.builtIn,
    body: row.body as Record<string, unknown>,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export class TemplateCatalog {
  constructor(private readonly db: Database) {}

  /** Writes the built-in templates; run at start so upgrades bring their new versions. */
  async ensureBuiltIns(): Promise<void> {
    for (const template of builtInTemplates) {
      const values = { ...template, tenantId: null, builtIn: true, body: template.body as Record<string, unknown> };
      await this.db
        .insert(configurationTemplates)
        .values(values)
        .onConflictDoUpdate({ target: configurationTemplates.id, set: { ...values, updatedAt: new Date() } });
    }
  }

  async list(tenantId: string): Promise<ConfigurationTemplate[]> {
    const rows = await this.db
      .select()
      .from(configurationTemplates)
      .where(or(isNull(configurationTemplates.tenantId), eq(configurationTemplates.tenantId, tenantId)))
      .orderBy(configurationTemplates.id);
    return rows.map(toTemplate);
  }

  async get(tenantId: string, id: string): Promise<ConfigurationTemplate> {
    const [row] = await this.db
      .select()
      .from(configurationTemplates)
      .where(
        and(
          eq(configurationTemplates.id, id),
          or(isNull(configurationTemplates.tenantId), eq(configurationTemplates.tenantId, tenantId)),
        ),
      );
    if (!row) throw new NotFoundError(`template ${id} not found`);
    return toTemplate(row);
  }

  async create(tenantId: string, input: TemplateInput): Promise<ConfigurationTemplate> {
    this.checkBody(input);
    const id = input.id ?? `tpl-${randomUUID()}`;
    const [row] = await this.db
      .insert(configurationTemplates)
      .values({ ...this.columns(input), id, tenantId, version: 1 })
      .onConflictDoNothing()
      .returning();
    if (!row) throw new ConflictError(`template ${id} already exists`, { fields: [{ field: 'id', reason: 'already exists' }] });
    return toTemplate(row);
  }

  async update(tenantId: string, id: string, input: TemplateInput): Promise<ConfigurationTemplate> {
    const current = await this.get(tenantId, id);
    if (current.builtIn) throw new ConflictError(`template ${id} is built in and cannot be changed; create a copy`);
    if (input.id !== undefined && input.id !== id) {
      throw new ValidationError('the id in the body differs from the id in the path', {
        fields: [{ field: 'id', reason: `must be ${id} or absent` }],
      });
    }
    this.checkBody(input);
    const [row] = await this.db
      .update(configurationTemplates)
      .set({ ...this.columns(input), version: current.version + 1, updatedAt: new Date() })
      .where(and(eq(configurationTemplates.id, id), eq(configurationTemplates.tenantId, tenantId)))
      .returning();
    return toTemplate(row);
  }

  async remove(tenantId: string, id: string): Promise<void> {
    const current = await this.get(tenantId, id);
    if (current.builtIn) throw new ConflictError(`template ${id} is built in and cannot be deleted`);
    await this.db
      .delete(configurationTemplates)
      .where(and(eq(configurationTemplates.id, id), eq(configurationTemplates.tenantId, tenantId)));
  }

  private columns(input: TemplateInput) {
    return {
      name: input.name,
      description: input.description ?? null,
      deviceType: input.deviceType ?? null,
      protocol: input.protocol,
      body: input.body,
    };
  }

  /** A template is saved only if it renders into valid settings for its protocol. */
  private checkBody(input: TemplateInput): void {
    const schema = settingsSchemaFor(input.protocol);
    if (!schema) {
      throw new ValidationError(`unsupported protocol ${input.protocol}`, {
        fields: [{ field: 'protocol', reason: `no configuration schema for ${input.protocol}` }],
      });
    }
    const rendered = renderTemplateBody(input.body, sampleContext);
    const result = schema.safeParse(rendered);
    if (!result.success) {
      const fields = fieldProblems(result.error, 'body');
      throw new ValidationError(`template body is invalid: ${fields.map((f) => `${f.field}: ${f.reason}`).join('; ')}`, {
        fields,
      });
    }
  }
}
