-- Every API key acts for a principal. Keys made before principals existed each stand for themselves,
-- which is what the four-eyes checks compared until now.
ALTER TABLE "api_keys" ADD COLUMN "principal" text;--> statement-breakpoint
UPDATE "api_keys" SET "principal" = 'api-key:' || "id";--> statement-breakpoint
ALTER TABLE "api_keys" ALTER COLUMN "principal" SET NOT NULL;
