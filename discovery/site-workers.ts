/**
 * Where each site's device-facing work runs (the `site_workers` table): centrally, or on an edge
 * worker at the site that polls the site's own task queue. A site never configured runs centrally.
 */
import { and, asc, eq, getTableColumns, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { siteWorkers, type SiteWorkerRow } from '../db/schema';
import { siteTaskQueue } from '../contracts/site-workers';
import { NotFoundError } from '../foundation/errors';

export interface SiteWorkerSetting {
  site: string;
  /** True when the site's device-facing work runs on an edge worker at the site. */
  edgeWorker: boolean;
  /** The queue the site's device-facing work is scheduled on: the site's own, or the central one. */
  taskQueue: string;
  updatedBy: string;
  updatedAt: string;
}

export class SiteWorkers {
  readonly #db: Database;
  readonly #taskQueue: string;

  /** `taskQueue` is the installation's central queue, from which the sites' queues are named. */
  constructor(options: { db: Database; taskQueue: string }) {
    this.#db = options.db;
    this.#taskQueue = options.taskQueue;
  }

  /** The site's setting; NotFoundError for a site never configured (its work runs centrally). */
  async setting(tenantId: string, site: string): Promise<SiteWorkerSetting> {
    const setting = await this.#find(tenantId, site);
    if (!setting) throw new NotFoundError(`site ${site} has no edge worker setting: its device work runs centrally`);
    return setting;
  }

  async set(tenantId: string, site: string, edgeWorker: boolean, updatedBy: string): Promise<{ setting: SiteWorkerSetting; created: boolean }> {
    const [row] = await this.#db
      .insert(siteWorkers)
      .values({ tenantId, site, edgeWorker, updatedBy })
      .onConflictDoUpdate({ target: [siteWorkers.tenantId, siteWorkers.site], set: { edgeWorker, updatedBy, updatedAt: sql`now()` } })
      // xmax is 0 on a row this statement inserted, set on one it updated.
      .returning({ ...getTableColumns(siteWorkers), created: sql<boolean>`(xmax = 0)` });
    const { created, ...stored } = row!;
    return { setting: this.#settingOf(stored), created };
  }

  /** The site's own queue when an edge worker serves it; undefined when its work runs centrally. */
  async deviceTaskQueue(tenantId: string, site: string): Promise<string | undefined> {
    const setting = await this.#find(tenantId, site);
    return setting?.edgeWorker ? setting.taskQueue : undefined;
  }

  /** The tenant's sites served by edge workers, by name. */
  async edgeSites(tenantId: string): Promise<SiteWorkerSetting[]> {
    const rows = await this.#db
      .select()
      .from(siteWorkers)
      .where(and(eq(siteWorkers.tenantId, tenantId), eq(siteWorkers.edgeWorker, true)))
      .orderBy(asc(siteWorkers.site));
    return rows.map((row) => this.#settingOf(row));
  }

  /** Tenants with at least one site served by an edge worker. */
  async tenants(): Promise<string[]> {
    const rows = await this.#db
      .selectDistinct({ tenantId: siteWorkers.tenantId })
      .from(siteWorkers)
      .where(eq(siteWorkers.edgeWorker, true))
      .orderBy(asc(siteWorkers.tenantId));
    return rows.map((row) => row.tenantId);
  }

  async #find(tenantId: string, site: string): Promise<SiteWorkerSetting | undefined> {
    const [row] = await this.#db.select().from(siteWorkers).where(and(eq(siteWorkers.tenantId, tenantId), eq(siteWorkers.site, site)));
    return row ? this.#settingOf(row) : undefined;
  }

  #settingOf(row: SiteWorkerRow): SiteWorkerSetting {
    return {
      site: row.site,
      edgeWorker: row.edgeWorker,
      taskQueue: row.edgeWorker ? siteTaskQueue(this.#taskQueue, row.tenantId, row.site) : this.#taskQueue,
      updatedBy: row.updatedBy,
      updatedAt: row.updatedAt.toISOString(),
    };
  }
}
