CREATE TABLE "configuration_drift_policies" (
	"tenant_id" text PRIMARY KEY NOT NULL,
	"enabled" boolean NOT NULL,
	"action" text NOT NULL,
	"interval_minutes" integer NOT NULL,
	"updated_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
