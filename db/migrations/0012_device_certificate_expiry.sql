ALTER TABLE "devices" ADD COLUMN "certificate_expires_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "devices_tenant_certificate_expiry_idx" ON "devices" USING btree ("tenant_id","certificate_expires_at");--> statement-breakpoint
-- Devices that already hold a certificate get its expiry.
UPDATE "devices" SET "certificate_expires_at" = "certificates"."expires_at"
  FROM "certificates" WHERE "certificates"."id" = "devices"."active_certificate_id";
--> statement-breakpoint
-- The inventory's vendor and model filters ignore case; keyset pages stay in device id order.
CREATE INDEX "devices_tenant_vendor_idx" ON "devices" USING btree ("tenant_id", lower("manufacturer"), "device_id");--> statement-breakpoint
CREATE INDEX "devices_tenant_model_idx" ON "devices" USING btree ("tenant_id", lower("model"), "device_id");
