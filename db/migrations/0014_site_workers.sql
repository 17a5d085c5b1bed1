CREATE TABLE "site_workers" (
	"tenant_id" text NOT NULL,
	"site" text NOT NULL,
	"edge_worker" boolean NOT NULL,
	"updated_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "site_workers_key" ON "site_workers" USING btree ("tenant_id","site");