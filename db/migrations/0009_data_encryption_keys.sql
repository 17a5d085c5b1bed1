CREATE TABLE "data_encryption_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"purpose" text NOT NULL,
	"wrapped_key" "bytea" NOT NULL,
	"wrapping_key_location" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "data_encryption_keys_tenant_purpose" ON "data_encryption_keys" USING btree ("tenant_id","purpose");