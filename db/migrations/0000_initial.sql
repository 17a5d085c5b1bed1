CREATE TABLE "certificates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text,
	"site" text,
	"certificate_type" text NOT NULL,
	"serial_number" text NOT NULL,
	"fingerprint" text NOT NULL,
	"public_key" text NOT NULL,
	"private_key_location" text NOT NULL,
	"issued_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revocation_reason" text,
	"issuer_certificate_id" uuid,
	"subject_dn" text NOT NULL,
	"issuer_dn" text NOT NULL,
	"subject" jsonb NOT NULL,
	"extensions" jsonb NOT NULL,
	"pem" text NOT NULL,
	"issuance_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "configuration_templates" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text,
	"name" text NOT NULL,
	"description" text,
	"device_type" text,
	"protocol" text NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"built_in" boolean DEFAULT false NOT NULL,
	"body" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "device_secrets" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"purpose" text NOT NULL,
	"sealed_value" "bytea" NOT NULL,
	"key_encryption_key_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"serial_number" text NOT NULL,
	"mac_address" text NOT NULL,
	"address" text NOT NULL,
	"protocol" text NOT NULL,
	"device_type" text NOT NULL,
	"site" text NOT NULL,
	"name" text,
	"manufacturer" text,
	"model" text,
	"firmware_version" text,
	"firmware_hash" text,
	"factory_certificate_fingerprint" text,
	"lifecycle_state" text DEFAULT 'registered' NOT NULL,
	"active_certificate_id" uuid,
	"configuration_template" text,
	"configuration_version" integer,
	"configuration_hash" text,
	"activated_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "software_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"label" text NOT NULL,
	"algorithm" text NOT NULL,
	"public_key_spki" "bytea" NOT NULL,
	"sealed_private_key" "bytea" NOT NULL,
	"key_encryption_key_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_serial_key" ON "certificates" USING btree ("serial_number");--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_issuance_key" ON "certificates" USING btree ("issuance_key");--> statement-breakpoint
CREATE INDEX "certificates_tenant_device_idx" ON "certificates" USING btree ("tenant_id","device_id");--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_root_key" ON "certificates" USING btree ("tenant_id") WHERE certificate_type = 'root' and revoked_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_intermediate_key" ON "certificates" USING btree ("tenant_id","site") WHERE certificate_type = 'intermediate' and revoked_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_service_key" ON "certificates" USING btree ("tenant_id") WHERE certificate_type = 'service' and revoked_at is null;--> statement-breakpoint
CREATE INDEX "configuration_templates_tenant_idx" ON "configuration_templates" USING btree ("tenant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "device_secrets_key" ON "device_secrets" USING btree ("tenant_id","device_id","purpose");--> statement-breakpoint
CREATE UNIQUE INDEX "devices_tenant_device_key" ON "devices" USING btree ("tenant_id","device_id");--> statement-breakpoint
CREATE UNIQUE INDEX "devices_tenant_serial_key" ON "devices" USING btree ("tenant_id","serial_number");--> statement-breakpoint
CREATE UNIQUE INDEX "devices_tenant_mac_key" ON "devices" USING btree ("tenant_id","mac_address");