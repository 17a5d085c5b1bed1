CREATE TABLE "bulk_job_devices" (
	"job_id" uuid NOT NULL,
	"row_number" integer NOT NULL,
	"device_id" text NOT NULL,
	"request" jsonb NOT NULL,
	"has_credentials" boolean NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"dispatch_id" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"certificate_serial" text,
	"failed_step" text,
	"error" text,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "bulk_jobs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"template_id" text NOT NULL,
	"file_name" text NOT NULL,
	"file_sha256" text NOT NULL,
	"row_count" integer NOT NULL,
	"options" jsonb NOT NULL,
	"requested_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "bulk_job_devices_key" ON "bulk_job_devices" USING btree ("job_id","row_number");--> statement-breakpoint
CREATE INDEX "bulk_job_devices_status_idx" ON "bulk_job_devices" USING btree ("job_id","status");--> statement-breakpoint
CREATE INDEX "bulk_jobs_tenant_idx" ON "bulk_jobs" USING btree ("tenant_id","created_at");