/**
 * A tenant's firmware catalogue: per vendor and model, the versions approved (with the SHA-256 of
 * their image) and the versions known bad (with the reason). Vendor and model are matched as the
 * devices report them, ignoring case and surrounding spaces, so an entry typed by hand still
 * applies; the catalogue keeps one entry per vendor, model and version.
 *
 * An approved version names its image digest, or says explicitly (`sha256: null`) that its vendor
 * publishes none: devices of that version are then judged by version only.
 */
import { and, asc, eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database, DatabaseHandle } from '../db/client';
import { TenantReads } from '../db/tenant-reads';
import { firmwareCatalogue, type FirmwareCatalogueRow } from '../db/schema';
import { holdAdvisoryLock } from '../db/transactions';
import { NotFoundError } from '../foundation/errors';

const name = z.string().trim().min(1).max(128);

export const firmwareStatuses = ['approved', 'known_bad'] as const;

export const firmwareCatalogueEntryInputSchema = z
  .object({
    vendor: name.describe('The manufacturer, as devices report it (case is ignored)'),
    model: name,
    version: name,
    status: z.enum(firmwareStatuses),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal digits (SHA-256)')
      .transform((digest) => digest.toLowerCase())
      .nullable()
      .optional()
      .describe('SHA-256 of the firmware image. Required for approved versions: null when the vendor publishes no digest'),
    reason: z.string().trim().min(1).max(2000).optional().describe('Why the version is known bad; required for known_bad'),
  })
  .strict()
  .superRefine((entry, context) => {
    if (entry.status === 'approved' && entry.sha256 === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['sha256'],
        message: 'required for an approved version: the image digest, or null when the vendor publishes none',
      });
    }
    if (entry.status === 'known_bad' && entry.reason === undefined) {
      context.addIssue({ code: 'custom', path: ['reason'], message: 'required for a known-bad version: say why' });
    }
  });
export type FirmwareCatalogueEntryInput = z.infer<typeof firmwareCatalogueEntryInputSchema>;

export interface FirmwareCatalogueEntry {
  id: string;
  vendor: string;
  model: string;
  version: string;
  status: (typeof firmwareStatuses)[number];
  sha256: string | null;
  reason: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

function entryOf(row: FirmwareCatalogueRow): FirmwareCatalogueEntry {
  return {
    id: row.id,
    vendor: row.vendor,
    model: row.model,
    version: row.version,
    status: row.status,
    sha256: row.sha256,
    reason: row.reason,
    createdBy: row.createdBy,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** How vendor and model names are compared. */
export const catalogueName = (value: string) => value.trim().toLowerCase();

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class FirmwareCatalogue {
  /** Entries per vendor and model as last read: every provisioning run asks twice (see `TenantReads`). */
  readonly reads: TenantReads<FirmwareCatalogueEntry[]>;

  /** `notices`: where changes are announced to other processes; without it nothing is kept. */
  constructor(
    private readonly db: Database,
    notices?: Pick<DatabaseHandle, 'notify'>,
  ) {
    this.reads = new TenantReads('firmware_catalogue_changed', notices);
  }

  /** The tenant's entries, by vendor, model and version; `vendor` and `model` narrow it down. */
  async list(tenantId: string, filter: { vendor?: string; model?: string } = {}): Promise<FirmwareCatalogueEntry[]> {
    const rows = await this.db
      .select()
      .from(firmwareCatalogue)
      .where(
        and(
          eq(firmwareCatalogue.tenantId, tenantId),
          ...(filter.vendor !== undefined ? [sql`lower(${firmwareCatalogue.vendor}) = ${catalogueName(filter.vendor)}`] : []),
          ...(filter.model !== undefined ? [sql`lower(${firmwareCatalogue.model}) = ${catalogueName(filter.model)}`] : []),
        ),
      )
      .orderBy(asc(firmwareCatalogue.vendor), asc(firmwareCatalogue.model), asc(firmwareCatalogue.version));
    return rows.map(entryOf);
  }

  /** Adds the entry, or replaces the one for the same vendor, model and version. */
  async upsert(tenantId: string, input: FirmwareCatalogueEntryInput, actor: string): Promise<{ entry: FirmwareCatalogueEntry; created: boolean }> {
    const values = {
      status: input.status,
      sha256: input.sha256 ?? null,
      reason: input.reason ?? null,
    };
    const result = await this.db.transaction(async (tx) => {
      // Names differing only in case are one entry: writers of the same model take turns.
      const model = `${tenantId}/${catalogueName(input.vendor)}/${catalogueName(input.model)}`;
      await holdAdvisoryLock(tx, { namespace: 'firmware-catalogue', name: model });
      const [existing] = await tx
        .select()
        .from(firmwareCatalogue)
        .where(
          and(
            eq(firmwareCatalogue.tenantId, tenantId),
            sql`lower(${firmwareCatalogue.vendor}) = ${catalogueName(input.vendor)}`,
            sql`lower(${firmwareCatalogue.model}) = ${catalogueName(input.model)}`,
            eq(firmwareCatalogue.version, input.version),
          ),
        );
      if (existing) {
        const [row] = await tx
          .update(firmwareCatalogue)
          .set({ ...values, updatedAt: new Date() })
          .where(eq(firmwareCatalogue.id, existing.id))
          .returning();
        return { entry: entryOf(row!), created: false };
      }
      const [row] = await tx
        .insert(firmwareCatalogue)
        .values({ tenantId, vendor: input.vendor, model: input.model, version: input.version, ...values, createdBy: actor })
        .onConflictDoUpdate({
          target: [firmwareCatalogue.tenantId, firmwareCatalogue.vendor, firmwareCatalogue.model, firmwareCatalogue.version],
          set: { ...values, updatedAt: new Date() },
        })
        .returning();
      return { entry: entryOf(row!), created: true };
    });
    await this.reads.changed(tenantId);
    return result;
  }

  /** Removes an entry; devices judged by it keep their verdict until judged again. */
  async remove(tenantId: string, id: string): Promise<FirmwareCatalogueEntry> {
    if (!uuidPattern.test(id)) throw new NotFoundError(`no firmware catalogue entry ${id}`);
    const [row] = await this.db
      .delete(firmwareCatalogue)
      .where(and(eq(firmwareCatalogue.tenantId, tenantId), eq(firmwareCatalogue.id, id)))
      .returning();
    if (!row) throw new NotFoundError(`no firmware catalogue entry ${id}`);
    await this.reads.changed(tenantId);
    return entryOf(row);
  }

  /** Every entry for the vendor and model a device reports. */
  entriesFor(tenantId: string, vendor: string, model: string): Promise<FirmwareCatalogueEntry[]> {
    return this.reads.read(tenantId, `${catalogueName(vendor)}\0${catalogueName(model)}`, () => this.list(tenantId, { vendor, model }));
  }
}
