CREATE TABLE "compliance_overrides" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"scope_value" text NOT NULL,
	"rule_id" text NOT NULL,
	"reason" text NOT NULL,
	"requested_by" text,
	"approved_by" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "compliance_policies" (
	"tenant_id" text NOT NULL,
	"rule_id" text NOT NULL,
	"enabled" boolean NOT NULL,
	"severity" text NOT NULL,
	"parameters" jsonb NOT NULL,
	"updated_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "configuration_template_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text,
	"template_id" text NOT NULL,
	"version" integer NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"device_type" text,
	"protocol" text NOT NULL,
	"body" jsonb NOT NULL,
	"parameters" jsonb NOT NULL,
	"content_hash" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "device_configuration_history" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"template_id" text NOT NULL,
	"template_version" integer NOT NULL,
	"outcome" text NOT NULL,
	"settings_hash" text,
	"device_hash" text,
	"findings" jsonb NOT NULL,
	"workflow_id" text,
	"run_id" text,
	"attempt" integer,
	"actor" text NOT NULL,
	"requested_by" text,
	"error" text,
	"occurred_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "device_configuration_parameters" (
	"tenant_id" text NOT NULL,
	"device_id" text NOT NULL,
	"values" jsonb NOT NULL,
	"sealed_values" jsonb NOT NULL,
	"updated_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "configuration_templates" ADD COLUMN "parameters" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
CREATE INDEX "compliance_overrides_scope_idx" ON "compliance_overrides" USING btree ("tenant_id","scope","scope_value");--> statement-breakpoint
CREATE UNIQUE INDEX "compliance_policies_key" ON "compliance_policies" USING btree ("tenant_id","rule_id");--> statement-breakpoint
CREATE UNIQUE INDEX "configuration_template_versions_key" ON "configuration_template_versions" USING btree ("template_id","version");--> statement-breakpoint
CREATE INDEX "configuration_template_versions_tenant_idx" ON "configuration_template_versions" USING btree ("tenant_id","template_id");--> statement-breakpoint
CREATE INDEX "device_configuration_history_device_idx" ON "device_configuration_history" USING btree ("tenant_id","device_id","occurred_at");--> statement-breakpoint
CREATE UNIQUE INDEX "device_configuration_parameters_key" ON "device_configuration_parameters" USING btree ("tenant_id","device_id");--> statement-breakpoint
-- Template versions and the configuration history are records: a device's history names the
-- version it was sent, so neither may change or disappear afterwards.
CREATE FUNCTION configuration_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER configuration_template_versions_no_update_or_delete BEFORE UPDATE OR DELETE ON configuration_template_versions
  FOR EACH ROW EXECUTE FUNCTION configuration_records_refuse_change();
--> statement-breakpoint
CREATE TRIGGER configuration_template_versions_no_truncate BEFORE TRUNCATE ON configuration_template_versions
  FOR EACH STATEMENT EXECUTE FUNCTION configuration_records_refuse_change();
--> statement-breakpoint
CREATE TRIGGER device_configuration_history_no_update_or_delete BEFORE UPDATE OR DELETE ON device_configuration_history
  FOR EACH ROW EXECUTE FUNCTION configuration_records_refuse_change();
--> statement-breakpoint
CREATE TRIGGER device_configuration_history_no_truncate BEFORE TRUNCATE ON device_configuration_history
  FOR EACH STATEMENT EXECUTE FUNCTION configuration_records_refuse_change();
--> statement-breakpoint
REVOKE UPDATE, DELETE, TRUNCATE ON configuration_template_versions, device_configuration_history FROM PUBLIC;
