CREATE TABLE "device_health_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"kind" text NOT NULL,
	"details" jsonb NOT NULL,
	"occurred_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "firmware_catalogue" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"vendor" text NOT NULL,
	"model" text NOT NULL,
	"version" text NOT NULL,
	"status" text NOT NULL,
	"sha256" text,
	"reason" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "fleet_policies" (
	"tenant_id" text PRIMARY KEY NOT NULL,
	"health_checks_enabled" boolean NOT NULL,
	"health_check_interval_seconds" integer NOT NULL,
	"offline_after_failures" integer NOT NULL,
	"health_probe_concurrency" integer NOT NULL,
	"firmware_unknown" text NOT NULL,
	"firmware_known_bad" text NOT NULL,
	"credential_rotation_days" integer,
	"updated_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "provisioning_runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"workflow_id" text NOT NULL,
	"run_id" text NOT NULL,
	"provisioning_method" text NOT NULL,
	"outcome" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"finished_at" timestamp with time zone NOT NULL,
	"certificate_serial" text,
	"record" jsonb NOT NULL,
	"archived_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "break_glass" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "metadata" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "health" text DEFAULT 'unknown' NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "health_checked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "health_changed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "consecutive_probe_failures" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "uptime_seconds" integer;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "last_reboot_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "firmware_status" text DEFAULT 'unchecked' NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "firmware_verdict" jsonb;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "credentials_rotated_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "decommissioned_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "decommission_reason" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "replaced_by" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "replacement_of" text;--> statement-breakpoint
CREATE INDEX "device_health_events_device_idx" ON "device_health_events" USING btree ("tenant_id","device_id","occurred_at");--> statement-breakpoint
CREATE UNIQUE INDEX "firmware_catalogue_key" ON "firmware_catalogue" USING btree ("tenant_id","vendor","model","version");--> statement-breakpoint
CREATE UNIQUE INDEX "provisioning_runs_run_key" ON "provisioning_runs" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "provisioning_runs_device_idx" ON "provisioning_runs" USING btree ("tenant_id","device_id","finished_at");--> statement-breakpoint
CREATE INDEX "provisioning_runs_workflow_idx" ON "provisioning_runs" USING btree ("tenant_id","workflow_id","finished_at");--> statement-breakpoint
CREATE INDEX "devices_tenant_site_idx" ON "devices" USING btree ("tenant_id","site","device_id");--> statement-breakpoint
CREATE INDEX "devices_tenant_state_idx" ON "devices" USING btree ("tenant_id","lifecycle_state","device_id");--> statement-breakpoint
CREATE INDEX "devices_tenant_health_idx" ON "devices" USING btree ("tenant_id","health","device_id");--> statement-breakpoint
CREATE INDEX "devices_tenant_firmware_idx" ON "devices" USING btree ("tenant_id","firmware_status","device_id");--> statement-breakpoint
CREATE INDEX "devices_tenant_protocol_idx" ON "devices" USING btree ("tenant_id","protocol","device_id");--> statement-breakpoint
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE INDEX "devices_search_idx" ON "devices" USING gin ((lower(coalesce("name", '') || ' ' || "serial_number" || ' ' || "mac_address" || ' ' || "address")) gin_trgm_ops);--> statement-breakpoint
-- An archived run is a record: it never changes or disappears (the function is 0007's).
CREATE TRIGGER provisioning_runs_no_update_or_delete BEFORE UPDATE OR DELETE ON provisioning_runs
  FOR EACH ROW EXECUTE FUNCTION configuration_records_refuse_change();--> statement-breakpoint
CREATE TRIGGER provisioning_runs_no_truncate BEFORE TRUNCATE ON provisioning_runs
  FOR EACH STATEMENT EXECUTE FUNCTION configuration_records_refuse_change();
