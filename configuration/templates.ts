/**
 * Configuration templates: stored per tenant (plus the built-ins each protocol's adapter brings,
 * which every tenant may use), rendered per device by filling `{{variable}}` placeholders, and
 * validated against the protocol's settings schema, which its adapter carries, before a template is
 * saved and again before a configuration is pushed.
 */
import { randomUUID } from 'node:crypto';
import { and, desc, eq, isNull, or, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { DeviceAdapter, ProtocolSettings } from '../adapters/device-adapter';
import type { Database } from '../db/client';
import {
  configurationTemplates,
  configurationTemplateVersions,
  type ConfigurationTemplateRow,
  type ConfigurationTemplateVersionRow,
} from '../db/schema';
import { ConflictError, NotFoundError, ValidationError, type FieldProblem } from '../foundation/errors';
import { fieldProblems, parseOrThrow } from '../foundation/validation';
import { canonicalHash } from '../foundation/canonical-json';
import {
  parameterDeclarationsSchema,
  sampleParameters,
  type ParameterDeclarations,
  type ParameterValue,
} from './parameters';

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
  /** The device's values for the template's parameters, defaults applied: `{{params.name}}`. */
  params?: Record<string, ParameterValue>;
  /**
   * Secrets by name as `{{secret.name}}` renders them: the plaintext only inside the activity that
   * pushes the configuration, a sealed marker everywhere else.
   */
  secret?: Record<string, string>;
}

/** Where in the rendered settings a secret went (`users[0].password`), and which secret it was. */
export interface SecretField {
  path: string;
  name: string;
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
  parameters: ParameterDeclarations;
  createdAt: string;
  updatedAt: string;
}

/** One saved version of a template; never changes once written. */
export interface ConfigurationTemplateVersion {
  templateId: string;
  version: number;
  tenantId: string | null;
  name: string;
  description: string | null;
  deviceType: string | null;
  protocol: string;
  body: Record<string, unknown>;
  parameters: ParameterDeclarations;
  contentHash: string;
  createdBy: string;
  createdAt: string;
}

export const templateIdPattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const templateInputSchema = z
  .object({
    id: z.string().regex(templateIdPattern, 'must be 1-63 characters of a-z, 0-9, ".", "_" or "-"').optional(),
    name: z.string().trim().min(1).max(120),
    description: z.string().max(2000).optional(),
    deviceType: z.string().max(64).optional(),
    protocol: z.string().min(1).max(32),
    body: z.record(z.string(), z.unknown()),
    /** What `{{params.*}}` and `{{secret.*}}` in the body may name. */
    parameters: parameterDeclarationsSchema.optional(),
  })
  .strict();
export type TemplateInput = z.infer<typeof templateInputSchema>;

const placeholder = /\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}/g;
/** A string that is nothing but one placeholder takes the value's own type (a number, a list). */
const wholePlaceholder = /^\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}$/;

export function hostLabelFor(deviceId: string): string {
  const label = deviceId.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  return (label || 'device').slice(0, 63).replace(/-+$/, '');
}

/** Fills placeholders throughout a template body; an unknown variable is an error, never left blank. */
export function renderTemplateBody(body: unknown, context: TemplateContext, path = 'body'): unknown {
  return renderTemplate(body, context, path).value;
}

/** As renderTemplateBody, also saying where secrets went (paths relative to the body). */
export function renderTemplate(
  body: unknown,
  context: TemplateContext,
  path = 'body',
): { value: unknown; secretFields: SecretField[] } {
  const secretFields: SecretField[] = [];
  const value = renderNode(body, context, path, '', secretFields);
  return { value, secretFields };
}

function lookUp(context: TemplateContext, name: string): unknown {
  return name.split('.').reduce<unknown>((at, key) => {
    if (at === null || typeof at !== 'object' || Array.isArray(at)) return undefined;
    return Object.hasOwn(at, key) ? (at as Record<string, unknown>)[key] : undefined;
  }, context);
}

function unknownVariable(path: string, name: string): ValidationError {
  const reason = name.startsWith('secret.')
    ? `secret {{${name}}} is not declared by the template or not set for this device`
    : name.startsWith('params.')
      ? `parameter {{${name}}} is not declared by the template`
      : `unknown template variable {{${name}}}`;
  return new ValidationError(`${path}: ${reason}`, { fields: [{ field: path, reason }] });
}

function renderNode(node: unknown, context: TemplateContext, path: string, relative: string, secretFields: SecretField[]): unknown {
  if (typeof node === 'string') {
    const whole = wholePlaceholder.exec(node);
    if (whole) {
      const name = whole[1];
      const value = lookUp(context, name);
      const isList = Array.isArray(value) && value.every((item) => typeof item === 'string');
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean' && !isList) {
        throw unknownVariable(path, name);
      }
      if (name.startsWith('secret.')) secretFields.push({ path: relative, name: name.slice('secret.'.length) });
      return isList ? [...(value as string[])] : value;
    }
    let usesSecret: string | undefined;
    const rendered = node.replace(placeholder, (_match, name: string) => {
      const value = lookUp(context, name);
      if (Array.isArray(value)) {
        const reason = `{{${name}}} is a list: it can only stand alone as the whole value`;
        throw new ValidationError(`${path}: ${reason}`, { fields: [{ field: path, reason }] });
      }
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw unknownVariable(path, name);
      if (name.startsWith('secret.')) usesSecret = name.slice('secret.'.length);
      return String(value);
    });
    if (usesSecret) secretFields.push({ path: relative, name: usesSecret });
    return rendered;
  }
  if (Array.isArray(node)) {
    return node.map((item, index) => renderNode(item, context, `${path}[${index}]`, `${relative}[${index}]`, secretFields));
  }
  if (node && typeof node === 'object') {
    return Object.fromEntries(
      Object.entries(node).map(([key, value]) => [
        key,
        renderNode(value, context, `${path}.${key}`, relative ? `${relative}.${key}` : key, secretFields),
      ]),
    );
  }
  return node;
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

/** What rendering needs of a template or of one of its versions. */
export interface RenderableTemplate {
  id?: string;
  templateId?: string;
  body: Record<string, unknown>;
}

/**
 * Renders and validates against the protocol's settings: what a device of that protocol will be
 * sent, and where in it secrets went.
 */
export function renderSettings(
  settings: ProtocolSettings,
  template: RenderableTemplate,
  context: TemplateContext,
): { settings: Record<string, unknown>; secretFields: SecretField[] } {
  const { value, secretFields } = renderTemplate(template.body, context);
  const id = template.templateId ?? template.id;
  return { settings: parseOrThrow(settings.schema, value, `configuration rendered from template ${id}`, 'body'), secretFields };
}

const sampleDevice: TemplateContext['device'] = {
  deviceId: 'sample-device',
  serialNumber: 'SN0001',
  macAddress: '02:00:00:00:00:01',
  site: 'site',
  name: 'sample-device',
  hostname: 'sample-device',
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
    parameters: (row.parameters ?? {}) as ParameterDeclarations,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

function toVersion(row: ConfigurationTemplateVersionRow): ConfigurationTemplateVersion {
  return {
    templateId: row.templateId,
    version: row.version,
    tenantId: row.tenantId,
    name: row.name,
    description: row.description,
    deviceType: row.deviceType,
    protocol: row.protocol,
    body: row.body as Record<string, unknown>,
    parameters: row.parameters as ParameterDeclarations,
    contentHash: row.contentHash,
    createdBy: row.createdBy,
    createdAt: row.createdAt.toISOString(),
  };
}

/** Identifies what a version says: equal hashes, equal configurations for every device. */
export function templateContentHash(content: { protocol: string; body: unknown; parameters: unknown }): string {
  return canonicalHash({ protocol: content.protocol, body: content.body, parameters: content.parameters });
}

function versionRowOf(template: ConfigurationTemplateRow, createdBy: string) {
  return {
    tenantId: template.tenantId,
    templateId: template.id,
    version: template.version,
    name: template.name,
    description: template.description,
    deviceType: template.deviceType,
    protocol: template.protocol,
    body: template.body as Record<string, unknown>,
    parameters: (template.parameters ?? {}) as Record<string, unknown>,
    contentHash: templateContentHash({ protocol: template.protocol, body: template.body, parameters: template.parameters ?? {} }),
    createdBy,
  };
}

/** Built-in templates, and their versions, are written by the service itself. */
const builtInAuthor = 'system';

export interface TemplateCatalogDependencies {
  db: Database;
  /** The protocols templates may be for: each adapter's settings schema and built-in templates. */
  adapters: ReadonlyMap<string, DeviceAdapter>;
}

export class TemplateCatalog {
  private readonly db: Database;
  private readonly adapters: ReadonlyMap<string, DeviceAdapter>;

  constructor(deps: TemplateCatalogDependencies) {
    this.db = deps.db;
    this.adapters = deps.adapters;
  }

  /** What settings rendered for `protocol` must look like; ValidationError for a protocol the service does not speak. */
  settingsFor(protocol: string): ProtocolSettings {
    const adapter = this.adapters.get(protocol);
    if (!adapter) {
      throw new ValidationError(`no configuration schema for protocol ${protocol}`, {
        fields: [{ field: 'protocol', reason: `unsupported protocol ${protocol}` }],
      });
    }
    return adapter.settings;
  }

  /**
   * Writes the built-in templates, each change to one as its next version, and records the
   * current version of any template saved before versions were kept. Run at start.
   */
  async ensureBuiltIns(): Promise<void> {
    const builtIns = [...this.adapters.values()].flatMap((adapter) => adapter.builtInTemplates.map((template) => ({ ...template, protocol: adapter.protocol })));
    for (const template of builtIns) {
      const body = template.body;
      const contentHash = templateContentHash({ protocol: template.protocol, body, parameters: {} });
      await this.db.transaction(async (tx) => {
        const values = { ...template, tenantId: null, builtIn: true, body, parameters: {} };
        const [row] = await tx
          .insert(configurationTemplates)
          .values(values)
          .onConflictDoUpdate({ target: configurationTemplates.id, set: { id: template.id } })
          .returning();
        const [latest] = await tx
          .select({ version: configurationTemplateVersions.version, contentHash: configurationTemplateVersions.contentHash })
          .from(configurationTemplateVersions)
          .where(eq(configurationTemplateVersions.templateId, template.id))
          .orderBy(desc(configurationTemplateVersions.version))
          .limit(1);
        if (latest?.contentHash === contentHash && row.version === latest.version) return;
        const version = latest ? (latest.contentHash === contentHash ? latest.version : Math.max(latest.version, row.version) + 1) : row.version;
        const [current] = await tx
          .update(configurationTemplates)
          .set({ ...values, version, updatedAt: new Date() })
          .where(eq(configurationTemplates.id, template.id))
          .returning();
        await tx.insert(configurationTemplateVersions).values(versionRowOf(current, builtInAuthor)).onConflictDoNothing();
      });
    }
    await this.recordUnversioned();
  }

  /** Templates saved before versions were kept get their current version recorded as it is. */
  private async recordUnversioned(): Promise<void> {
    const rows = await this.db
      .select({ template: configurationTemplates })
      .from(configurationTemplates)
      .leftJoin(
        configurationTemplateVersions,
        and(
          eq(configurationTemplateVersions.templateId, configurationTemplates.id),
          eq(configurationTemplateVersions.version, configurationTemplates.version),
        ),
      )
      .where(isNull(configurationTemplateVersions.id));
    for (const { template } of rows) {
      await this.db.insert(configurationTemplateVersions).values(versionRowOf(template, builtInAuthor)).onConflictDoNothing();
    }
  }

  async list(tenantId: string): Promise<ConfigurationTemplate[]> {
    const rows = await this.db
      .select()
      .from(configurationTemplates)
      .where(visibleTo(tenantId))
      .orderBy(configurationTemplates.id);
    return rows.map(toTemplate);
  }

  /** The version every template of every tenant is at now, by template id. */
  async currentVersions(): Promise<Map<string, number>> {
    const rows = await this.db.select({ id: configurationTemplates.id, version: configurationTemplates.version }).from(configurationTemplates);
    return new Map(rows.map((row) => [row.id, row.version]));
  }

  async get(tenantId: string, id: string): Promise<ConfigurationTemplate> {
    const [row] = await this.db
      .select()
      .from(configurationTemplates)
      .where(and(eq(configurationTemplates.id, id), visibleTo(tenantId)));
    if (!row) throw new NotFoundError(`template ${id} not found`);
    return toTemplate(row);
  }

  /** Every version of a template the tenant may use, newest first. */
  async listVersions(tenantId: string, id: string): Promise<ConfigurationTemplateVersion[]> {
    await this.get(tenantId, id);
    const rows = await this.db
      .select()
      .from(configurationTemplateVersions)
      .where(and(eq(configurationTemplateVersions.templateId, id), versionVisibleTo(tenantId)))
      .orderBy(desc(configurationTemplateVersions.version));
    return rows.map(toVersion);
  }

  /**
   * One version as it was saved. Versions outlive their template: a device's history still reads
   * what it was sent after the template is deleted.
   */
  async getVersion(tenantId: string, id: string, version: number): Promise<ConfigurationTemplateVersion> {
    const [row] = await this.db
      .select()
      .from(configurationTemplateVersions)
      .where(
        and(
          eq(configurationTemplateVersions.templateId, id),
          eq(configurationTemplateVersions.version, version),
          versionVisibleTo(tenantId),
        ),
      );
    if (!row) throw new NotFoundError(`template ${id} has no version ${version}`);
    return toVersion(row);
  }

  /** The version a template is at now, as saved. */
  async currentVersion(tenantId: string, id: string): Promise<ConfigurationTemplateVersion> {
    const template = await this.get(tenantId, id);
    return this.getVersion(tenantId, id, template.version);
  }

  async create(tenantId: string, input: TemplateInput, createdBy = builtInAuthor): Promise<ConfigurationTemplate> {
    this.checkBody(input);
    const id = input.id ?? `tpl-${randomUUID()}`;
    return this.db.transaction(async (tx) => {
      // A deleted template's versions stay on record; a new template under its id continues after them.
      const [previous] = await tx
        .select({ version: sql<number>`max(${configurationTemplateVersions.version})` })
        .from(configurationTemplateVersions)
        .where(eq(configurationTemplateVersions.templateId, id));
      const [row] = await tx
        .insert(configurationTemplates)
        .values({ ...this.columns(input), id, tenantId, version: (previous?.version ?? 0) + 1 })
        .onConflictDoNothing()
        .returning();
      if (!row) throw new ConflictError(`template ${id} already exists`, { fields: [{ field: 'id', reason: 'already exists' }] });
      await tx.insert(configurationTemplateVersions).values(versionRowOf(row, createdBy));
      return toTemplate(row);
    });
  }

  /** Saves the next version: the template row moves on, the version before stays as it was. */
  async update(tenantId: string, id: string, input: TemplateInput, updatedBy = builtInAuthor): Promise<ConfigurationTemplate> {
    const current = await this.get(tenantId, id);
    if (current.builtIn) throw new ConflictError(`template ${id} is built in and cannot be changed; create a copy`);
    if (input.id !== undefined && input.id !== id) {
      throw new ValidationError('the id in the body differs from the id in the path', {
        fields: [{ field: 'id', reason: `must be ${id} or absent` }],
      });
    }
    this.checkBody(input);
    return this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(configurationTemplates)
        .set({ ...this.columns(input), version: sql`${configurationTemplates.version} + 1`, updatedAt: new Date() })
        .where(and(eq(configurationTemplates.id, id), eq(configurationTemplates.tenantId, tenantId)))
        .returning();
      if (!row) throw new NotFoundError(`template ${id} not found`);
      await tx.insert(configurationTemplateVersions).values(versionRowOf(row, updatedBy));
      return toTemplate(row);
    });
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
      parameters: input.parameters ?? {},
    };
  }

  /**
   * A template is saved only if it renders into valid settings for its protocol, with each
   * parameter at its default (or a sample value) and each secret as its sealed marker.
   */
  private checkBody(input: TemplateInput): void {
    const { schema } = this.settingsFor(input.protocol);
    const rendered = renderTemplateBody(input.body, { tenant: { id: 'tenant' }, device: sampleDevice, ...sampleParameters(input.parameters ?? {}) });
    const result = schema.safeParse(rendered);
    if (!result.success) {
      const fields: FieldProblem[] = fieldProblems(result.error, 'body');
      throw new ValidationError(`template body is invalid: ${fields.map((f) => `${f.field}: ${f.reason}`).join('; ')}`, {
        fields,
      });
    }
  }
}

function visibleTo(tenantId: string) {
  return or(isNull(configurationTemplates.tenantId), eq(configurationTemplates.tenantId, tenantId));
}

function versionVisibleTo(tenantId: string) {
  return or(isNull(configurationTemplateVersions.tenantId), eq(configurationTemplateVersions.tenantId, tenantId));
}
