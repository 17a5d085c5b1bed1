CREATE TABLE "discovered_devices" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"site" text NOT NULL,
	"identity_key" text NOT NULL,
	"mac_address" text,
	"ip" text,
	"serial_number" text,
	"manufacturer" text,
	"model" text,
	"firmware_version" text,
	"device_type" text,
	"fingerprint" jsonb NOT NULL,
	"endpoints" jsonb NOT NULL,
	"sources" jsonb NOT NULL,
	"registered_device_id" text,
	"zero_touch_registration_id" uuid,
	"in_conflict" boolean DEFAULT false NOT NULL,
	"first_seen_at" timestamp with time zone NOT NULL,
	"last_seen_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "discovery_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"site" text NOT NULL,
	"kind" text NOT NULL,
	"subject" text NOT NULL,
	"details" jsonb NOT NULL,
	"first_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"resolved_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "discovery_sites" (
	"tenant_id" text NOT NULL,
	"site" text NOT NULL,
	"scope" jsonb NOT NULL,
	"scanners" jsonb NOT NULL,
	"interval_minutes" integer NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "zero_touch_registrations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"serial_number" text,
	"mac_address" text,
	"protocol" text NOT NULL,
	"device_type" text NOT NULL,
	"site" text NOT NULL,
	"template_id" text NOT NULL,
	"name" text,
	"require_approval" boolean DEFAULT false NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"enrolment_token_hash" text,
	"enrolment_token_expires_at" timestamp with time zone,
	"enrolment_token_used_at" timestamp with time zone,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "discovered_devices_identity_key" ON "discovered_devices" USING btree ("tenant_id","identity_key");--> statement-breakpoint
CREATE INDEX "discovered_devices_tenant_site_idx" ON "discovered_devices" USING btree ("tenant_id","site","last_seen_at");--> statement-breakpoint
CREATE UNIQUE INDEX "discovery_events_open_key" ON "discovery_events" USING btree ("tenant_id","kind","subject") WHERE resolved_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "discovery_sites_key" ON "discovery_sites" USING btree ("tenant_id","site");--> statement-breakpoint
CREATE UNIQUE INDEX "zero_touch_registrations_device_key" ON "zero_touch_registrations" USING btree ("tenant_id","device_id");--> statement-breakpoint
CREATE INDEX "zero_touch_registrations_serial_idx" ON "zero_touch_registrations" USING btree ("tenant_id","serial_number");--> statement-breakpoint
CREATE INDEX "zero_touch_registrations_mac_idx" ON "zero_touch_registrations" USING btree ("tenant_id","mac_address");--> statement-breakpoint
CREATE UNIQUE INDEX "zero_touch_registrations_token_key" ON "zero_touch_registrations" USING btree ("enrolment_token_hash");