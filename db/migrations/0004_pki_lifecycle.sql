CREATE TABLE "certificate_revocation_lists" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"ca_certificate_id" uuid NOT NULL,
	"crl_number" integer NOT NULL,
	"this_update" timestamp with time zone NOT NULL,
	"next_update" timestamp with time zone NOT NULL,
	"revoked_count" integer NOT NULL,
	"der" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "certificates_live_root_key";--> statement-breakpoint
DROP INDEX "certificates_live_intermediate_key";--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "retired_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "renewal_of_certificate_id" uuid;--> statement-breakpoint
CREATE UNIQUE INDEX "certificate_revocation_lists_number_key" ON "certificate_revocation_lists" USING btree ("ca_certificate_id","crl_number");--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_ocsp_key" ON "certificates" USING btree ("issuer_certificate_id") WHERE certificate_type = 'ocsp' and revoked_at is null;--> statement-breakpoint
CREATE INDEX "certificates_issuer_idx" ON "certificates" USING btree ("issuer_certificate_id");--> statement-breakpoint
CREATE INDEX "certificates_live_expiry_idx" ON "certificates" USING btree ("tenant_id","expires_at") WHERE revoked_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_root_key" ON "certificates" USING btree ("tenant_id") WHERE certificate_type = 'root' and revoked_at is null and retired_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_live_intermediate_key" ON "certificates" USING btree ("tenant_id","site") WHERE certificate_type = 'intermediate' and revoked_at is null and retired_at is null;